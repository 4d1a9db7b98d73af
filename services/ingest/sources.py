"""Events per source and business day (the console's "events today" and "last event per source"), counted by
the relay as it publishes, off the request path and at most one write a second.

Each pass tallies the events it publishes for the first time (a republication after `salespulse replay` is
not counted again: `before`, the newest sequence ever published, says which are new). Tallies wait in memory
and are written to `source_days` within a relay pass's own transaction once FLUSH_EVERY has passed, together
with the `sources` cursor: the newest sequence number they account for. A relay that dies with a tally in
memory loses nothing: the next one recounts, from the ledger, the events published after that cursor (at most a
second's worth, plus what a crash interrupted)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, case, select
from sqlalchemy.dialects import postgresql, sqlite

from services.common import db
from services.common.db import Transactions
from services.common.models import LedgerEntry, RelayCursor, SourceDay, cursor_seq
from services.common.settings import Settings
from services.ingest.ledger import LedgerRecord

__all__ = ["FLUSH_EVERY", "NO_SOURCE", "SOURCES_CURSOR", "SourceCounts"]

NO_SOURCE = "api"
"""How events sent without a `source` are counted."""
SOURCES_CURSOR = "sources"
"""The relay_cursor row: the newest ledger sequence number `source_days` accounts for."""
FLUSH_EVERY = 1.0
"""Seconds between writes of the tallies."""

Tally = dict[tuple[str, str], list[Any]]
"""(source, business day) → [events, newest accepted_at, its event id]."""


def tally(rows: Iterable[LedgerRecord], settings: Settings, into: Tally | None = None) -> Tally:
    """Add `rows` to a tally. Days and times are on the services' clock (services/common/clock.py), like every
    "today" the gateway answers; the ledger stamps acceptance with the machine's."""
    zone = settings.zone
    shift = settings.clock.offset()
    counts: Tally = {} if into is None else into
    days: dict[datetime, tuple[datetime, str]] = {}  # a group commit stamps all its rows alike
    for row in rows:
        # Events are stored as compact JSON: only a body that names a source is parsed.
        source = orjson.loads(row.body).get("source") if '"source"' in row.body else None
        stamped = days.get(row.accepted_at)
        if stamped is None:
            shifted = db.as_utc(row.accepted_at) + shift
            stamped = days[row.accepted_at] = (shifted, shifted.astimezone(zone).date().isoformat())
        accepted_at, day = stamped
        key = (str(source or NO_SOURCE)[:64], day)
        seen = counts.get(key)
        if seen is None:
            counts[key] = [1, accepted_at, row.body]
        else:
            seen[0] += 1
            if accepted_at >= seen[1]:
                seen[1], seen[2] = accepted_at, row.body
    return counts


def _merge(into: Tally, more: Tally) -> Tally:
    for key, (count, accepted_at, body) in more.items():
        seen = into.get(key)
        if seen is None:
            into[key] = [count, accepted_at, body]
        else:
            seen[0] += count
            if accepted_at >= seen[1]:
                seen[1], seen[2] = accepted_at, body
    return into


def _write(connection: Connection, counts: Tally, upto: int) -> None:
    """Add `counts` to source_days and move the sources cursor to `upto`, in the caller's transaction."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    if counts:
        statement = dialect.insert(SourceDay).values([
            {"source": source, "day": day, "events": count, "last_accepted_at": accepted_at,
             "last_event_id": str(orjson.loads(body).get("event_id", ""))}
            for (source, day), (count, accepted_at, body) in counts.items()
        ])
        newer = statement.excluded.last_accepted_at >= SourceDay.last_accepted_at
        connection.execute(statement.on_conflict_do_update(
            index_elements=[SourceDay.source, SourceDay.day],
            set_={
                "events": SourceDay.events + statement.excluded.events,
                "last_accepted_at": case((newer, statement.excluded.last_accepted_at),
                                         else_=SourceDay.last_accepted_at),
                "last_event_id": case((newer, statement.excluded.last_event_id), else_=SourceDay.last_event_id),
            },
        ))
    cursor = dialect.insert(RelayCursor).values(name=SOURCES_CURSOR, seq=upto)
    connection.execute(cursor.on_conflict_do_update(  # never backwards
        index_elements=[RelayCursor.name],
        set_={"seq": case((cursor.excluded.seq > RelayCursor.seq, cursor.excluded.seq), else_=RelayCursor.seq)},
    ))


class SourceCounts:
    """One relay's tallies not written yet."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pending: Tally = {}
        self._written = time.monotonic()
        self._checked = False
        self._upto = 0  # the newest sequence number the pending tallies account for
        self._pass_upto = 0

    def in_pass(self, connection: Connection, rows: list[LedgerRecord], before: int) -> Tally | None:
        """Within a relay pass's transaction, after `ProgressLog.record` said `before`: tally the rows published for
        the first time, and write every tally when due (None then). Hand the result to `committed`."""
        if not self._checked:
            self._recount_lost(connection, before)
            self._checked = True
        fresh = tally((r for r in rows if r.seq > before), self._settings)
        self._pass_upto = max(before, rows[-1].seq) if rows else before
        if time.monotonic() - self._written >= FLUSH_EVERY:
            _write(connection, _merge(self._copy(), fresh), self._pass_upto)
            return None
        return fresh

    def committed(self, fresh: Tally | None) -> None:
        """The pass's transaction committed: its tally waits for the next write (or everything was written)."""
        if fresh is None:
            self._pending = {}
            self._written = time.monotonic()
        else:
            _merge(self._pending, fresh)
        self._upto = max(self._upto, self._pass_upto)

    async def write_if_due(self, transactions: Transactions, *, now: bool = False) -> None:
        """A quiet relay (no pass to ride on) writes what waits once due, or at once with `now` (stopping)."""
        if not self._pending or not (now or time.monotonic() - self._written >= FLUSH_EVERY):
            return
        counts, upto = self._copy(), self._upto
        await transactions.run(lambda connection: _write(connection, counts, upto))
        self.committed(None)

    def forget(self) -> None:
        """This relay stepped down: the one that takes over recounts what was not written, from the ledger."""
        self._pending = {}
        self._checked = False

    def _copy(self) -> Tally:
        return {key: list(value) for key, value in self._pending.items()}

    def _recount_lost(self, connection: Connection, published: int) -> None:
        """Events published after the sources cursor by a relay that died before writing its tallies: counted
        again from the ledger. A database from before the console starts counting from here."""
        counted = connection.execute(cursor_seq(SOURCES_CURSOR)).scalar()
        if counted is None:
            _write(connection, {}, published)
            return
        if counted >= published:
            return
        lost = connection.execute(
            select(LedgerEntry.seq, LedgerEntry.type, LedgerEntry.key, LedgerEntry.body, LedgerEntry.accepted_at)
            .where(LedgerEntry.seq > counted, LedgerEntry.seq <= published).order_by(LedgerEntry.seq)
        )
        _write(connection, tally((LedgerRecord(*r) for r in lost), self._settings), published)
