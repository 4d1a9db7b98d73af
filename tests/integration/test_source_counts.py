"""Per-source counts kept by the relay (services/ingest/sources.py) on a real SQLite database migrated to head:
written at most once a second, nothing counted twice when the ledger is republished, and a tally lost with its
relay (killed before writing it) recounted from the ledger by the next one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, select

from services.common import db
from services.common.db import Transactions
from services.common.models import LedgerEntry, SourceDay
from services.common.settings import Settings
from services.ingest import sources
from services.ingest.ledger import LedgerRecord
from services.ingest.relay import ProgressLog
from services.ingest.sources import SourceCounts, Tally

pytestmark = pytest.mark.integration

# 23:30 UTC on 31 December is already New Year's Day in Berlin: the business day, not UTC's.
PINNED = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)


def settings_for(tmp_path: Path) -> Settings:
    ACCEPTED[:] = [datetime.now(UTC)]  # when the test starts, as the clock below is anchored
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'counts.db'}", timezone="Europe/Berlin",
                    clock_at=PINNED, clock_ticking=True)  # ticking: a later acceptance is later on this clock too


ACCEPTED: list[datetime] = []  # the machine time the records below are stamped from


def record(seq: int, source: str | None) -> LedgerRecord:
    body: dict[str, Any] = {"event_id": f"e{seq}", "type": "activity", "rep_id": "ana", "kind": "call"}
    if source:
        body["source"] = source
    # Accepted now (the pinned clock maps the machine's acceptance times to its own), in sequence order: stamped
    # as each record was built, a later event could look older than one recounted from the ledger.
    return LedgerRecord(seq, "activity", "ana", orjson.dumps(body).decode(), ACCEPTED[0] + timedelta(milliseconds=seq))


async def publish(sessions: Any, counts: SourceCounts, rows: list[LedgerRecord], *, store: bool = True) -> None:
    """What a relay pass does: the rows in the ledger (first time only), then the progress row and the counts in
    one transaction (a new relay's progress log each time: it reads the newest row from the table)."""
    async with sessions() as session, session.begin():
        if store:
            for r in rows:
                session.add(LedgerEntry(seq=r.seq, event_id=f"e{r.seq}", type=r.type, key=r.key, body=r.body,
                                        body_hash="h", occurred_at=r.accepted_at, accepted_at=r.accepted_at))

    def account(connection: Connection) -> Tally | None:
        return counts.in_pass(connection, rows, ProgressLog().record(connection, rows[-1].seq))

    transactions = Transactions(db.engine_of(sessions))
    try:
        counts.committed(await transactions.run(account))
    finally:
        await transactions.close()


async def write_now(sessions: Any, counts: SourceCounts) -> None:
    """What a relay does as it stops: write every tally that waits."""
    transactions = Transactions(db.engine_of(sessions))
    try:
        await counts.write_if_due(transactions, now=True)
    finally:
        await transactions.close()


async def stored(sessions: Any) -> dict[tuple[str, str], tuple[int, str]]:
    async with sessions() as session:
        rows = (await session.execute(select(SourceDay))).scalars().all()
    return {(r.source, r.day): (r.events, r.last_event_id) for r in rows}


def test_counts_are_written_once_due_never_twice_and_recounted_after_a_lost_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path)
    db.migrate(settings.db_url)

    async def scenario() -> None:
        engine = db.create_engine(settings.db_url)
        sessions = db.sessionmaker(engine)
        try:
            monkeypatch.setattr(sources, "FLUSH_EVERY", 3600.0)  # nothing is due until the test says so
            first = SourceCounts(settings)
            await publish(sessions, first, [record(1, "csv"), record(2, "csv"), record(3, None)])
            assert await stored(sessions) == {}  # waiting in memory, not written per pass
            await write_now(sessions, first)
            day = "2027-01-01"
            assert await stored(sessions) == {("csv", day): (2, "e2"), ("api", day): (1, "e3")}

            # A republication (salespulse replay) of 1-3 is not counted again.
            await publish(sessions, first, [record(1, "csv"), record(2, "csv"), record(3, None)], store=False)
            await write_now(sessions, first)
            assert await stored(sessions) == {("csv", day): (2, "e2"), ("api", day): (1, "e3")}

            # A relay publishes 4-6 and dies before writing them: the next one recounts them from the ledger.
            await publish(sessions, first, [record(4, "hubspot"), record(5, "csv"), record(6, "hubspot")])
            del first
            second = SourceCounts(settings)
            await publish(sessions, second, [record(7, "csv")])
            await write_now(sessions, second)
            assert await stored(sessions) == {
                ("csv", day): (4, "e7"), ("api", day): (1, "e3"), ("hubspot", day): (2, "e6"),
            }

            # Due: a pass writes on its own.
            monkeypatch.setattr(sources, "FLUSH_EVERY", 0.0)
            await publish(sessions, second, [record(8, None)])
            assert (await stored(sessions))[("api", day)] == (2, "e8")
        finally:
            await engine.dispose()

    asyncio.run(scenario())
