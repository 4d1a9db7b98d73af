"""The connectors' inbox: CRM changes accepted and not yet ledger events, in the service's database.

A webhook's changes are written here (one transaction) before the CRM is answered, so an answer of 200 means
the change will become an event even if the process dies the next instant. Workers claim due rows for a lease
(`not_before`), so several ingest processes on one database share the work; a row is deleted once its events
are in the ledger, tried again later after a CRM error, or kept as `rejected` when the mapping cannot turn it
into an event (an admin fixes the mapping and requeues it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, delete, func, insert, or_, select, update

from services.common.clock import Clock
from services.common.db import Sessions
from services.common.models import ConnectorInboxRow, ConnectorState, LedgerEntry

__all__ = ["Inbox", "InboxItem", "NewItem"]

INBOX = cast(Table, ConnectorInboxRow.__table__)
MAX_ERROR = 500


@dataclass(frozen=True)
class NewItem:
    object_id: str
    action: str
    """fetch, record or delete"""
    changed_at: datetime
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class InboxItem:
    id: int
    connector: str
    object_id: str
    action: str
    payload: dict[str, Any] | None
    changed_at: datetime
    attempts: int


class Inbox:
    def __init__(self, sessions: Sessions, clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    async def add(self, connector: str, items: Iterable[NewItem], *, state: tuple[str, str] | None = None) -> int:
        """Record the changes durably, and with them the connector's position `state` (name, value) when given,
        in one transaction; the count written."""
        now = self.clock.now()
        rows = [
            {
                "connector": connector,
                "object_id": item.object_id[:128],
                "action": item.action,
                "payload": None if item.payload is None else json.dumps(item.payload, default=str),
                "changed_at": item.changed_at,
                "received_at": now,
                "status": "pending",
                "attempts": 0,
            }
            for item in items
        ]
        if rows or state:
            async with self.sessions() as session, session.begin():
                if rows:
                    await session.execute(insert(INBOX), rows)
                if state:
                    await self._put_state(session, connector, *state)
        return len(rows)

    async def claim(self, connector: str, limit: int, lease: float) -> list[InboxItem]:
        """Due pending rows, oldest first, held for `lease` seconds (another process skips them meanwhile)."""
        now = self.clock.now()
        due = and_(
            INBOX.c.connector == connector,
            INBOX.c.status == "pending",
            or_(INBOX.c.not_before.is_(None), INBOX.c.not_before <= now),
        )
        async with self.sessions() as session, session.begin():
            ids = (await session.execute(select(INBOX.c.id).where(due).order_by(INBOX.c.id).limit(limit))).scalars()
            wanted = list(ids)
            if not wanted:
                return []
            claimed = await session.execute(
                update(INBOX)
                .where(and_(INBOX.c.id.in_(wanted), due))
                .values(not_before=now + timedelta(seconds=lease), attempts=INBOX.c.attempts + 1)
                .returning(
                    INBOX.c.id, INBOX.c.object_id, INBOX.c.action, INBOX.c.payload, INBOX.c.changed_at, INBOX.c.attempts
                )
            )
            rows = claimed.all()
        return sorted(
            (
                InboxItem(
                    id=row.id,
                    connector=connector,
                    object_id=row.object_id,
                    action=row.action,
                    payload=None if row.payload is None else json.loads(row.payload),
                    changed_at=_aware(row.changed_at),
                    attempts=row.attempts,
                )
                for row in rows
            ),
            key=lambda item: item.id,
        )

    async def done(self, ids: Iterable[int]) -> None:
        wanted = list(ids)
        if wanted:
            async with self.sessions() as session, session.begin():
                await session.execute(delete(INBOX).where(INBOX.c.id.in_(wanted)))

    async def retry_later(self, ids: Iterable[int], error: str, delay: float) -> None:
        wanted = list(ids)
        if wanted:
            async with self.sessions() as session, session.begin():
                await session.execute(
                    update(INBOX)
                    .where(INBOX.c.id.in_(wanted))
                    .values(not_before=self.clock.now() + timedelta(seconds=delay), last_error=error[:MAX_ERROR])
                )

    async def reject(self, item_id: int, error: str) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(INBOX).where(INBOX.c.id == item_id).values(status="rejected", last_error=error[:MAX_ERROR])
            )

    async def requeue_rejected(self, connector: str) -> int:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(INBOX)
                .where(and_(INBOX.c.connector == connector, INBOX.c.status == "rejected"))
                .values(status="pending", not_before=None, attempts=0)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def counts(self) -> dict[tuple[str, str], int]:
        """(connector, status) -> rows."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(INBOX.c.connector, INBOX.c.status, func.count()).group_by(INBOX.c.connector, INBOX.c.status)
            )
            return {(row[0], row[1]): int(row[2]) for row in rows}

    async def rejected(self, connector: str, limit: int = 50) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(INBOX.c.object_id, INBOX.c.action, INBOX.c.last_error, INBOX.c.received_at)
                .where(and_(INBOX.c.connector == connector, INBOX.c.status == "rejected"))
                .order_by(INBOX.c.id.desc())
                .limit(limit)
            )
            return [
                {"object_id": r.object_id, "action": r.action, "error": r.last_error,
                 "received_at": r.received_at.isoformat() if r.received_at else None}
                for r in rows
            ]

    async def last_owner(self, deal_id: str) -> str | None:
        """The owner of the deal's last snapshot in the ledger (a deletion's snapshot keeps it)."""
        async with self.sessions() as session:
            body = (
                await session.execute(
                    select(LedgerEntry.body)
                    .where(and_(LedgerEntry.key == deal_id, LedgerEntry.type == "deal"))
                    .order_by(LedgerEntry.seq.desc())
                    .limit(1)
                )
            ).scalar()
        if body is None:
            return None
        owner = json.loads(body).get("owner_id")
        return str(owner) if owner else None

    async def get_state(self, connector: str, name: str) -> str | None:
        async with self.sessions() as session:
            return (
                await session.execute(
                    select(ConnectorState.value).where(
                        and_(ConnectorState.connector == connector, ConnectorState.name == name)
                    )
                )
            ).scalar()

    async def set_state(self, connector: str, name: str, value: str) -> None:
        async with self.sessions() as session, session.begin():
            await self._put_state(session, connector, name, value)

    async def _put_state(self, session: Any, connector: str, name: str, value: str) -> None:
        row = await session.get(ConnectorState, (connector, name))
        if row is None:
            session.add(ConnectorState(connector=connector, name=name, value=value, updated_at=self.clock.now()))
        else:
            row.value = value
            row.updated_at = self.clock.now()


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC times."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
