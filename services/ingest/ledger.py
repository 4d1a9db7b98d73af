"""The ledger: append-only SQL record of every accepted event, written by one group-commit writer."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple, cast

import orjson
from sqlalchemy import String, Table, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.events import ActivityEvent, DealEvent, canonical_json
from services.common.background import BackgroundLoop
from services.common.db import Sessions
from services.common.intake import EventConflict
from services.common.models import LedgerEntry
from services.ingest.metrics import IngestMetrics

__all__ = ["Commit", "EventConflict", "LedgerWriter", "ledger_row"]  # EventConflict: services/common/intake.py

log = logging.getLogger("salespulse.ingest.ledger")
LEDGER = cast(Table, LedgerEntry.__table__)


class LedgerRow(NamedTuple):
    """An event as the ledger stores it (a tuple: a frozen dataclass cost more to build than the row's hash)."""

    event_id: str
    type: str
    key: str
    body: str
    body_hash: str
    occurred_at: datetime


def ledger_row(event: DealEvent | ActivityEvent) -> LedgerRow:
    key = event.deal_id if isinstance(event, DealEvent) else event.rep_id
    body = canonical_json(event)
    return LedgerRow(
        event_id=event.event_id,
        type=event.type,
        key=key,
        body=body.decode(),
        body_hash=hashlib.sha256(body).hexdigest(),  # == schemas.events.body_hash(event), computed once
        occurred_at=event.occurred_at,
    )


class LedgerRecord(NamedTuple):
    """A committed ledger row as the relay publishes it."""

    seq: int
    type: str
    key: str
    body: str
    accepted_at: datetime


class Commit(NamedTuple):
    """What one group commit appended: `rows` numbered from `first_seq`, accepted at `accepted_at`."""

    first_seq: int
    rows: list[LedgerRow]
    accepted_at: datetime

    def records(self) -> list[LedgerRecord]:
        """The rows as the relay publishes them (built only by a hook that publishes: the external relay's
        waker needs none)."""
        at = self.accepted_at
        return [LedgerRecord(seq, r.type, r.key, r.body, at) for seq, r in enumerate(self.rows, self.first_seq)]


@dataclass
class _Submission:
    rows: list[LedgerRow]
    done: asyncio.Future[tuple[list[LedgerRow], int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class AppendResult:
    accepted: int
    duplicates: int
    accepted_by_type: dict[str, int]
    duplicates_by_type: dict[str, int]


class LedgerWriter(BackgroundLoop):
    """Appends events in group commits: concurrent requests share one transaction, so throughput
    grows with load and sequence numbers are assigned in commit order (what the relay relies on)."""

    loop_name = "ledger-writer"

    def __init__(
        self,
        sessions: Sessions,
        *,
        postgres: bool,
        metrics: IngestMetrics | None = None,
        max_rows: int = 20_000,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics or IngestMetrics()
        self._postgres = postgres
        self._max_rows = max_rows
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue()
        # Run after each commit with what it appended, in sequence order (the relay's hand-off).
        self.on_commit: list[Callable[[Commit], None]] = []


    async def append(self, rows: list[LedgerRow]) -> AppendResult:
        """Durably append `rows` (all or nothing). Raises EventConflict, or the database's error."""
        unique = _dedupe_within(rows)
        sub = _Submission(unique)
        await self._queue.put(sub)
        fresh, _ = await sub.done
        accepted_by_type = Counter(row.type for row in fresh)
        duplicates_by_type = Counter(row.type for row in rows) - accepted_by_type
        return AppendResult(
            accepted=len(fresh),
            duplicates=len(rows) - len(fresh),
            accepted_by_type=dict(accepted_by_type),
            duplicates_by_type=dict(duplicates_by_type),
        )

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            group = [first]
            size = len(first.rows)
            while size < self._max_rows and not self._queue.empty():
                sub = self._queue.get_nowait()
                group.append(sub)
                size += len(sub.rows)
            try:
                await self._commit(group)
            except Exception as exc:  # noqa: BLE001  (the database is down or refused: fail this group, keep serving)
                log.warning("ledger commit failed: %s", exc)
                for sub in group:
                    if not sub.done.done():
                        sub.done.set_exception(exc)

    async def _commit(self, group: list[_Submission]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ids = [row.event_id for sub in group for row in sub.rows]
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            if self._postgres:
                # One writer at a time across processes keeps sequence numbers gapless and in commit order.
                await session.execute(select(func.pg_advisory_xact_lock(7461002)))
                result = await session.execute(_KNOWN_POSTGRES, {"ids": ids})
            else:
                result = await session.execute(_KNOWN_SQLITE, {"ids": orjson.dumps(ids).decode()})
            known: dict[str, str] = dict(result.all())
            to_insert: list[LedgerRow] = []
            outcomes: list[tuple[_Submission, BaseException | tuple[list[LedgerRow], int]]] = []
            for sub in group:
                conflicts = [r.event_id for r in sub.rows if r.event_id in known and known[r.event_id] != r.body_hash]
                if conflicts:
                    outcomes.append((sub, EventConflict(conflicts)))
                    continue
                fresh = [r for r in sub.rows if r.event_id not in known]
                for r in fresh:
                    known[r.event_id] = r.body_hash
                to_insert += fresh
                outcomes.append((sub, (fresh, len(sub.rows) - len(fresh))))
            commit = Commit(0, to_insert, now)
            if to_insert:
                base = (await session.execute(select(func.max(LEDGER.c.seq)))).scalar() or 0
                commit = Commit(base + 1, to_insert, now)
                await (_copy_postgres if self._postgres else _insert_sqlite)(session, to_insert, base + 1, now)
        self._metrics.ledger_commit.observe(loop.time() - started)
        self._metrics.ledger_batch.observe(len(to_insert))
        for sub, outcome in outcomes:
            if isinstance(outcome, BaseException):
                sub.done.set_exception(outcome)
            else:
                sub.done.set_result(outcome)
        for hook in self.on_commit:
            hook(commit)


def _dedupe_within(rows: list[LedgerRow]) -> list[LedgerRow]:
    """Drop repeats of one event inside a request; a repeat with another body is a conflict."""
    seen: dict[str, str] = {}
    out: list[LedgerRow] = []
    conflicts: list[str] = []
    for row in rows:
        prior = seen.get(row.event_id)
        if prior is None:
            seen[row.event_id] = row.body_hash
            out.append(row)
        elif prior != row.body_hash:
            conflicts.append(row.event_id)
    if conflicts:
        raise EventConflict(conflicts)
    return out


# The stored body hash of each of `ids` already in the ledger, the ids as one parameter: an IN list of a thousand
# binds cost SQLAlchemy more than the query (compiling the expanded list, a cast per bind on PostgreSQL).
_KNOWN_POSTGRES = select(LedgerEntry.event_id, LedgerEntry.body_hash).where(
    LedgerEntry.event_id == any_(bindparam("ids", type_=postgresql.ARRAY(String)))
)
_KNOWN_SQLITE = select(LedgerEntry.event_id, LedgerEntry.body_hash).where(  # ids as a JSON array
    LedgerEntry.event_id.in_(select(func.json_each(bindparam("ids", type_=String)).table_valued("value").c.value))
)

_COLUMNS = ("seq", "event_id", "type", "key", "body", "body_hash", "occurred_at", "accepted_at")
_QUOTED = ", ".join(f'"{c}"' for c in _COLUMNS)
_SQLITE_INSERT = f"INSERT INTO {LEDGER.name} ({_QUOTED}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def sqlite_stamp(moment: datetime) -> str:
    """What SQLAlchemy's SQLite `DateTime` stores for `moment`: its wall-clock fields, microseconds included
    (tests/unit/test_ledger_sqlite.py holds the two to the same text)."""
    return moment.isoformat(" ", "microseconds")[:26]  # the offset of an aware moment follows; years have 4 digits


async def _insert_sqlite(session: AsyncSession, rows: list[LedgerRow], first_seq: int, accepted_at: datetime) -> None:
    """`rows` numbered from `first_seq`, in one executemany through the driver: SQLAlchemy's per-row, per-column
    bind processing cost more than the insert itself on SQLite (a sixth of ingest's time on NDJSON batches).
    Timestamps are stored as its `DateTime` stores them, so every reader of the ledger reads them back unchanged."""
    accepted = sqlite_stamp(accepted_at)
    params = [(seq, r.event_id, r.type, r.key, r.body, r.body_hash, sqlite_stamp(r.occurred_at), accepted)
              for seq, r in enumerate(rows, first_seq)]
    connection = await session.connection()
    await connection.exec_driver_sql(_SQLITE_INSERT, params)


async def _copy_postgres(session: AsyncSession, rows: list[LedgerRow], first_seq: int, accepted_at: datetime) -> None:
    """`rows` numbered from `first_seq`, by COPY in the session's transaction (asyncpg's binary copy): no
    statement per row and no parameter processing; the rows reach the server as one stream."""
    records = [(seq, r.event_id, r.type, r.key, r.body, r.body_hash, r.occurred_at, accepted_at)
               for seq, r in enumerate(rows, first_seq)]
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None  # an open connection's asyncpg connection
    await driver.copy_records_to_table(LEDGER.name, records=records, columns=_COLUMNS)
