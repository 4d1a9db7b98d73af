"""The relay keeps its cursor between passes instead of reading it from the database each time, and still honours
a `replay` (the cursor moved back from outside, as `salespulse replay` and `up` onto an empty broker do): whether
the relay is idle when it happens, or publishing (its next move's compare-and-set loses, and it reads the cursor;
which of the two a run meets depends on timing, and the test asserts what both must give).

Real parts: the ledger in SQLite and PostgreSQL (migrated), the ledger writer handing commits to the relay as in
ingest, the embedded broker."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from schemas.events import ActivityEvent
from services.common import db
from services.common.broker import ensure_topics
from services.common.db import Transactions
from services.common.kafka import log_ends
from services.common.models import LedgerEntry, RelayProgress, relay_cursor
from services.common.settings import Settings
from services.ingest.ledger import LedgerWriter, ledger_row
from services.ingest.metrics import RelayMetrics
from services.ingest.relay import ProgressLog, Relay, reset_relay_cursor
from tests.support.stack import until

pytestmark = pytest.mark.integration


def activity(n: int) -> ActivityEvent:
    return ActivityEvent(event_id=f"a{n}", type="activity", occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
                         rep_id=f"rep{n % 3}", kind="call")


async def topic_seqs(settings: Settings, relay: Relay) -> list[int]:
    """The ledger sequence numbers on the relay's topics, every record, in no particular order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in relay.topics.values() for p in range(settings.partitions)]
        ends = await log_ends(consumer, tps)
        have = [tp for tp in tps if ends[tp] > 0]
        consumer.assign(have)
        for tp in have:
            consumer.seek(tp, 0)
        seqs: list[int] = []
        behind = set(have)
        while behind:
            for tp, messages in (await consumer.getmany(*behind, timeout_ms=200)).items():
                seqs.extend(orjson.loads(m.value)["seq"] for m in messages)
                if messages[-1].offset + 1 >= ends[tp]:
                    behind.discard(tp)
        return seqs
    finally:
        await consumer.stop()


@dataclass
class Running:
    sessions: db.Sessions
    writer: LedgerWriter
    relay: Relay
    metrics: RelayMetrics


@asynccontextmanager
async def relay_on_ledger(settings: Settings, *, idle_wait: float = 0.2) -> AsyncIterator[Running]:
    """The ledger writer handing its commits to a relay, as in ingest; both stopped on the way out."""
    await ensure_topics(settings)
    sessions = db.sessionmaker(db.create_engine(settings.db_url))
    writer = LedgerWriter(sessions, database_url=settings.db_url)
    metrics = RelayMetrics()
    relay = Relay(settings, sessions, metrics, idle_wait=idle_wait)
    writer.on_commit.append(relay.offer)
    writer.start()
    relay.start()
    try:
        yield Running(sessions, writer, relay, metrics)
    finally:
        await relay.stop()
        await writer.stop()


def test_the_relay_honours_a_replay_whether_idle_or_publishing(broker: str, database_url: str) -> None:
    settings = Settings(database_url=database_url, kafka_bootstrap=broker, topic_prefix=f"rc{uuid.uuid4().hex[:6]}.")
    db.migrate(settings.db_url)

    async def scenario() -> None:
        async with relay_on_ledger(settings) as running:
            sessions, writer, relay, metrics = running.sessions, running.writer, running.relay, running.metrics

            async def cursor() -> int:
                async with sessions() as session:
                    return await relay_cursor(session)

            async def seen() -> Counter[int]:
                return Counter(await topic_seqs(settings, relay))

            await writer.append([ledger_row(activity(n)) for n in range(5)])
            await until(lambda: relay.published_seq == 5, what="the first 5 events out")
            assert await cursor() == 5
            assert await seen() == Counter(range(1, 6))
            assert metrics.relay_backlog._value.get() == 0  # what /metrics shows

            # Idle relay, cursor moved back from outside: it reads the cursor again once it has been quiet.
            await reset_relay_cursor(settings, 2)
            want = Counter({1: 1, 2: 1, 3: 2, 4: 2, 5: 2})

            async def replayed() -> bool:
                return await seen() == want and await cursor() == 5

            await until(replayed, what="3–5 republished, 1–2 not, the cursor back at 5")

            # A replay, then a new event at once: either the relay's next move loses the compare-and-set (the
            # event went out from its remembered cursor) and it starts over from the cursor the replay set, or
            # its idle wait ran out first and it read that cursor; either way 1–6 all go out after the replay.
            before = await seen()
            await reset_relay_cursor(settings, 0)
            await writer.append([ledger_row(activity(5))])

            async def at_the_end() -> bool:
                return await cursor() == 6

            await until(at_the_end, what="the cursor at the ledger's end")
            after = await seen()
            assert set(after) == set(range(1, 7))
            assert all(after[seq] > before[seq] for seq in range(1, 7)), (before, after)

    asyncio.run(scenario())


def test_relay_progress_grows_with_time_not_with_passes(broker: str, database_url: str) -> None:
    """`relay_progress` (behind `GET /v1/events/{id}`'s `published_at`) keeps at most one row per second: forty
    commits relayed one by one leave a row or two per second they took, and every event's recorded publication
    time is at or after its acceptance and no later than the relay's last pass."""
    settings = Settings(database_url=database_url, kafka_bootstrap=broker, topic_prefix=f"rp{uuid.uuid4().hex[:6]}.")
    db.migrate(settings.db_url)

    async def scenario() -> tuple[int, float, list[tuple[datetime, datetime]]]:
        async with relay_on_ledger(settings) as running:
            sessions, writer, relay = running.sessions, running.writer, running.relay
            started = time.monotonic()
            for n in range(40):  # one commit, and so one relay pass, at a time
                await writer.append([ledger_row(activity(100 + n))])
                await until(lambda n=n: relay.published_seq == n + 1, what=f"event {n + 1} out")
            seconds = time.monotonic() - started
            async with sessions() as session:
                rows = (await session.execute(select(func.count()).select_from(RelayProgress))).scalar_one()
                times = (await session.execute(
                    select(LedgerEntry.accepted_at,
                           select(func.min(RelayProgress.published_at))
                           .where(RelayProgress.seq_end >= LedgerEntry.seq).scalar_subquery())
                )).all()
            return rows, seconds, [(db.as_utc(accepted), db.as_utc(published)) for accepted, published in times]

    rows, seconds, times = asyncio.run(scenario())
    assert rows <= math.ceil(seconds) + 1, (rows, seconds)  # one per pass would be 40
    assert len(times) == 40 and all(accepted <= published for accepted, published in times), times


def passes(metrics: RelayMetrics) -> int:
    """How many passes published something (the count of the relay's publish histogram, as /metrics shows it)."""
    return int(metrics.registry.get_sample_value("salespulse_ingest_relay_publish_seconds_count") or 0)


def test_commits_that_follow_a_pass_closely_go_out_together_and_the_first_at_once(
    broker: str, database_url: str
) -> None:
    """The relay's linger: the first commit after a quiet spell is published at once; commits that come while the
    linger since that pass runs wait for its end and go out together, in one pass (fewer, larger record batches
    on the topics). Commits are spaced so that a relay without a linger makes a pass for each; the relay's idle
    wait is longer than the test, so no idle look at the ledger takes a commit early."""
    linger = 8.0
    settings = Settings(database_url=database_url, kafka_bootstrap=broker, topic_prefix=f"rl{uuid.uuid4().hex[:6]}.",
                        relay_linger_seconds=linger)
    db.migrate(settings.db_url)

    async def scenario() -> None:
        async with relay_on_ledger(settings, idle_wait=600) as running:
            writer, relay, metrics = running.writer, running.relay, running.metrics
            await writer.append([ledger_row(activity(1))])
            # At once: well within the linger, which a first commit after a quiet spell does not wait out.
            await until(lambda: relay.published_seq == 1, timeout=linger / 2, what="the first commit out at once")
            assert passes(metrics) == 1
            for n in range(2, 5):
                await asyncio.sleep(0.1)  # the input: commits 100 ms apart, each a pass without the linger
                await writer.append([ledger_row(activity(n))])
            assert relay.published_seq == 1, "a commit within the linger went out on its own"
            await until(lambda: relay.published_seq == 4, timeout=linger * 4, what="the lingering commits out")
            assert passes(metrics) == 2, "the three commits within the linger took more than one pass"
            assert Counter(await topic_seqs(settings, relay)) == Counter(range(1, 5))

    asyncio.run(scenario())


def test_the_progress_log_reads_the_table_again_when_another_relay_wrote_it(database_url: str) -> None:
    """A relay knows the newest relay_progress row after reading it once; when another relay (the lock changed
    hands behind it) moved that row, its next move matches nothing, and it reads the row again instead of
    losing the other's progress or answering from what it remembered."""
    settings = Settings(database_url=database_url, topic_prefix=f"pl{uuid.uuid4().hex[:6]}.")
    db.migrate(settings.db_url)

    async def scenario() -> tuple[list[int], list[tuple[int, datetime]]]:
        engine = db.create_engine(settings.db_url)
        sessions = db.sessionmaker(engine)
        transactions = Transactions(engine)
        first, second = ProgressLog(), ProgressLog()
        befores = []
        try:
            for log, last in ((first, 10), (second, 20), (first, 30), (first, 30)):
                befores.append(await transactions.run(partial(log.record, last=last)))
            async with sessions() as session:
                rows = (await session.execute(select(RelayProgress.seq_end, RelayProgress.published_at))).all()
            return befores, [(seq, db.as_utc(at)) for seq, at in rows]
        finally:
            await transactions.close()
            await engine.dispose()

    befores, rows = asyncio.run(scenario())
    # 20 came from the other relay: the first one's move to 30 says so, and a republication of 30 changes nothing.
    assert befores == [0, 10, 20, 30], befores
    assert [seq for seq, _ in rows] == [30], rows  # within a second: one row, moved forward each time
