"""The ledger: append-only SQL record of every accepted event, written by one group-commit writer."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import NamedTuple, cast

import orjson
from sqlalchemy import String, Table, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.events import ActivityEvent, DealEvent, canonical_json
from services.common import db
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


_EVENT_ID, _TYPE, _BODY_HASH = attrgetter("event_id"), attrgetter("type"), attrgetter("body_hash")  # read in C


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
        database_url: str,
        metrics: IngestMetrics | None = None,
        max_rows: int = 20_000,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics or IngestMetrics()
        # PostgreSQL through the sessions; SQLite on a thread and connection of the ledger's own.
        self._sqlite = None if db.is_postgres(database_url) else _SqliteLedger(database_url)
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
        accepted_by_type = Counter(map(_TYPE, fresh))
        duplicates_by_type = Counter(map(_TYPE, rows)) - accepted_by_type if len(fresh) < len(rows) else Counter()
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

    async def stop(self) -> None:
        await super().stop()
        if self._sqlite is not None:
            await self._sqlite.close()

    async def _commit(self, group: list[_Submission]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ids = [row.event_id for sub in group for row in sub.rows]
        now = datetime.now(UTC)
        append = self._append_postgres if self._sqlite is None else self._sqlite.append
        first_seq, to_insert, outcomes = await append(group, ids, now)
        self._metrics.ledger_commit.observe(loop.time() - started)
        self._metrics.ledger_batch.observe(len(to_insert))
        for sub, outcome in outcomes:
            if isinstance(outcome, BaseException):
                sub.done.set_exception(outcome)
            else:
                sub.done.set_result(outcome)
        commit = Commit(first_seq, to_insert, now)
        for hook in self.on_commit:
            hook(commit)

    async def _append_postgres(self, group: list[_Submission], ids: list[str], now: datetime) -> _Appended:
        async with self._sessions() as session, session.begin():
            # One writer at a time across processes keeps sequence numbers gapless and in commit order.
            await session.execute(select(func.pg_advisory_xact_lock(7461002)))
            known: dict[str, str] = dict((await session.execute(_KNOWN_POSTGRES, {"ids": ids})).all())
            to_insert, outcomes = _decide(group, known)
            first_seq = 0
            if to_insert:
                first_seq = ((await session.execute(select(func.max(LEDGER.c.seq)))).scalar() or 0) + 1
                await _copy_postgres(session, to_insert, first_seq, now)
        return first_seq, to_insert, outcomes


_Outcome = tuple[_Submission, BaseException | tuple[list[LedgerRow], int]]
_Appended = tuple[int, list[LedgerRow], list[_Outcome]]
"""What a group commit appended: the first sequence number (0 when nothing), the rows, each submission's outcome."""


def _decide(group: list[_Submission], known: dict[str, str]) -> tuple[list[LedgerRow], list[_Outcome]]:
    """Given the body hashes of the group's event ids already in the ledger (`known`, updated here), the rows to
    insert and each submission's outcome: a conflict fails its whole submission; repeats are duplicates."""
    to_insert: list[LedgerRow] = []
    outcomes: list[_Outcome] = []
    for sub in group:
        ids = list(map(_EVENT_ID, sub.rows))
        if known.keys().isdisjoint(ids):  # all new (the usual case): no row to look at one by one
            known.update(zip(ids, map(_BODY_HASH, sub.rows), strict=True))
            to_insert += sub.rows
            outcomes.append((sub, (sub.rows, 0)))
            continue
        conflicts = [r.event_id for r in sub.rows if r.event_id in known and known[r.event_id] != r.body_hash]
        if conflicts:
            outcomes.append((sub, EventConflict(conflicts)))
            continue
        fresh = [r for r in sub.rows if r.event_id not in known]
        for r in fresh:
            known[r.event_id] = r.body_hash
        to_insert += fresh
        outcomes.append((sub, (fresh, len(sub.rows) - len(fresh))))
    return to_insert, outcomes


class _SqliteLedger:
    """The ledger's group commits on SQLite, each run whole on one thread with a connection of its own: one
    hand-off from the event loop per commit. Through the async driver a commit took some twenty-five (every
    cursor, execute, fetch and close is a trip to aiosqlite's thread and back), and those trips, not SQLite,
    were most of ingest's CPU on a stream of small requests. BEGIN IMMEDIATE takes the write lock before the
    sequence numbers are read, so ingest processes sharing the file wait for each other instead of numbering
    the same seq twice."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._thread: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None  # opened, used and closed on that thread only

    async def append(self, group: list[_Submission], ids: list[str], now: datetime) -> _Appended:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._append, group, ids, now)

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, self._drop)  # after a commit under way
            thread.shutdown(wait=False)

    def _append(self, group: list[_Submission], ids: list[str], now: datetime) -> _Appended:
        try:
            if self._connection is None:
                self._connection = db.sqlite_connect(self._url)
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                known = dict(connection.execute(_KNOWN_SQLITE, (orjson.dumps(ids).decode(),)).fetchall())
                to_insert, outcomes = _decide(group, known)
                first_seq = 0
                if to_insert:
                    first_seq = (connection.execute(_MAX_SEQ_SQLITE).fetchone()[0] or 0) + 1
                    accepted = sqlite_stamp(now)
                    connection.executemany(_SQLITE_INSERT, [
                        (seq, r.event_id, r.type, r.key, r.body, r.body_hash, sqlite_stamp(r.occurred_at), accepted)
                        for seq, r in enumerate(to_insert, first_seq)
                    ])
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._drop()  # the next commit opens a fresh connection
            # As the sessions raise it (OperationalError for a locked or unreachable file): callers answer 503.
            raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
        return first_seq, to_insert, outcomes

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None


def _dedupe_within(rows: list[LedgerRow]) -> list[LedgerRow]:
    """Drop repeats of one event inside a request; a repeat with another body is a conflict."""
    if len(set(map(_EVENT_ID, rows))) == len(rows):  # no repeats (the usual case)
        return rows
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
_KNOWN_SQLITE = (  # the ids as one JSON array
    f"SELECT event_id, body_hash FROM {LEDGER.name} WHERE event_id IN (SELECT value FROM json_each(?))"
)
_MAX_SEQ_SQLITE = f"SELECT max(seq) FROM {LEDGER.name}"

_COLUMNS = ("seq", "event_id", "type", "key", "body", "body_hash", "occurred_at", "accepted_at")
_QUOTED = ", ".join(f'"{c}"' for c in _COLUMNS)
_SQLITE_INSERT = f"INSERT INTO {LEDGER.name} ({_QUOTED}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def sqlite_stamp(moment: datetime) -> str:
    """What SQLAlchemy's SQLite `DateTime` stores for `moment`: its wall-clock fields, microseconds included
    (tests/unit/test_ledger_sqlite.py holds the two to the same text)."""
    return moment.isoformat(" ", "microseconds")[:26]  # the offset of an aware moment follows; years have 4 digits


async def _copy_postgres(session: AsyncSession, rows: list[LedgerRow], first_seq: int, accepted_at: datetime) -> None:
    """`rows` numbered from `first_seq`, by COPY in the session's transaction (asyncpg's binary copy): no
    statement per row and no parameter processing; the rows reach the server as one stream."""
    records = [(seq, r.event_id, r.type, r.key, r.body, r.body_hash, r.occurred_at, accepted_at)
               for seq, r in enumerate(rows, first_seq)]
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None  # an open connection's asyncpg connection
    await driver.copy_records_to_table(LEDGER.name, records=records, columns=_COLUMNS)
