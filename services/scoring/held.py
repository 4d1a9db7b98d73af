"""The admin list of held deals (services/scoring/domain/fx.py): won deals whose currency has no rate on or before
their close date, kept in SQL by the worker that owns each deal so the gateway can list them.

Written before the deal states of the same batch or reconcile (and so before its events are acknowledged): a
crash redoes the batch and writes the same rows again; once the states are stored, what they say is already in
the list."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo

import orjson
from sqlalchemy import delete, select

from services.common import db
from services.common.backoff import Backoff
from services.common.db import Sessions
from services.common.models import HeldDeal
from services.scoring.domain.deals import DealSnapshot
from services.scoring.history import through_outages

__all__ = ["HeldList"]


class HeldList:
    def __init__(self, db_url: str, zone: tzinfo, backoff: Backoff | None = None) -> None:
        self._url = db_url
        self._zone = zone
        self._sessions: Sessions | None = None
        self._backoff = backoff or Backoff(first=0.2, most=5.0, jitter=0.5)

    async def write(self, changes: Mapping[str, DealSnapshot | None]) -> None:
        """For each deal, the snapshot now held (a row) or None (no longer held: no row)."""
        if changes:
            await through_outages(lambda: self._write(changes), self._backoff, "The held-deals list")

    async def _write(self, changes: Mapping[str, DealSnapshot | None]) -> None:
        if self._sessions is None:
            self._sessions = db.sessionmaker(db.create_engine(self._url))
        now = datetime.now(UTC)
        ids = sorted(changes)
        async with self._sessions() as session, session.begin():
            known: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found = await session.execute(select(HeldDeal.deal_id).where(HeldDeal.deal_id.in_(chunk)))
                known.update(found.scalars())
            gone = [deal_id for deal_id in ids if changes[deal_id] is None and deal_id in known]
            for start in range(0, len(gone), 500):
                await session.execute(delete(HeldDeal).where(HeldDeal.deal_id.in_(gone[start : start + 500])))
            for deal_id in ids:
                snapshot = changes[deal_id]
                if snapshot is None:
                    continue
                assert snapshot.closed_at is not None and snapshot.currency is not None
                fields = {
                    "currency": snapshot.currency,
                    "amount": str(snapshot.amount),
                    "closed_on": snapshot.closed_at.astimezone(self._zone).date().isoformat(),
                    "rep_ids": orjson.dumps(snapshot.rep_ids()).decode(),
                    "event_id": snapshot.event_id,
                }
                if deal_id in known:
                    row = await session.get(HeldDeal, deal_id)
                    assert row is not None
                    for name, value in fields.items():
                        setattr(row, name, value)
                else:
                    session.add(HeldDeal(deal_id=deal_id, held_since=now, **fields))
