"""Scoring stays exact through crashes and scaling: a worker killed from outside while events flow is replaced
and the KPIs end exactly as if nothing happened; two workers give what one gives; a replacement republishes
every rep's snapshot, and a gateway started late gets all. (A worker killed at each step of a batch:
test_scoring_crash_points.py.)

The feed and the independent expectation are the replay test's (CONTRACT §1–3, not services.scoring).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support.crm_feed import STACK_ENV, crm_feed, expected_kpis, post_feed, wait_for_kpis
from tests.support.kafka import read_topic
from tests.support.metrics import metric, owned_partitions, scrape
from tests.support.scoring_stack import sqlite_url, start_api, start_scoring, start_without_scoring
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.integration


def test_a_worker_killed_while_events_flow_is_replaced_and_the_replacement_republishes_every_rep(
    stack_factory: Any, tmp_path: Any
) -> None:
    feed = crm_feed()
    expected = expected_kpis(feed.events)
    stack = stack_factory(sqlite_url(tmp_path), **STACK_ENV).start()
    deal_events = len({event["event_id"] for event in feed.events if event["type"] == "deal"})
    # The feed goes in at a steady pace (1,000 events every 0.25 s), so the worker is killed while it scores.
    posting = threading.Thread(target=post_feed, args=(stack, feed.batches(1000)), kwargs={"pause": 0.25})
    posting.start()
    try:
        scored = wait_until(
            lambda: _over(metric(scrape(stack), "salespulse_scoring_events_total", agent="deal-state"), 4000),
            timeout=60,
            what="scoring well into the feed",
        )
        stack.kill("scoring")  # SIGKILL
        assert posting.is_alive() and scored < deal_events, "the kill must come while events flow"
        start_scoring(stack, "scoring-2")
    finally:
        posting.join()
    wait_for_kpis(stack, expected, timeout=120)

    # Replace the worker once more while nothing flows: the new one republishes every rep's snapshot at the
    # version the gateway already has, and a gateway started after it gets everything.
    before = read_snapshots(stack)
    restart_ms = int(time.time() * 1000)
    stack.kill("scoring-2")
    start_scoring(stack, "scoring-3")

    def republished() -> bool:
        # A snapshot published after the restart, at least as new as the newest before it: the replacement
        # restored every rep's whole state and republished it.
        latest = read_snapshots(stack)
        return all(
            any(updated >= restart_ms and version >= max(v for v, _ in before[rep]) for version, updated in latest[rep])
            for rep in expected.reps
        )

    wait_until(republished, timeout=60, interval=0.5, what="every rep's snapshot republished by the replacement")
    api = start_api(stack, "api-2")
    wait_for_kpis(stack, expected, api=api, timeout=60)


def _over(value: float, threshold: float) -> float | None:
    return value if value > threshold else None


def test_two_workers_share_the_partitions_and_give_what_one_gives(stack_factory: Any, tmp_path: Any) -> None:
    feed = crm_feed()
    expected = expected_kpis(feed.events)
    stack = start_without_scoring(stack_factory(sqlite_url(tmp_path), **STACK_ENV))
    start_scoring(stack, "scoring")
    start_scoring(stack, "scoring-b")
    # 4 partitions each of events.deals, credits and events.activities, split between the two.
    wait_until(
        lambda: owned_partitions(stack, "scoring") == 6 and owned_partitions(stack, "scoring-b") == 6,
        timeout=60,
        interval=0.5,
        what="the two workers to split the 12 source partitions",
    )
    api = start_api(stack)
    post_feed(stack, feed.batches(2500))
    wait_for_kpis(stack, expected, api=api, timeout=120)
    for label in ("scoring", "scoring-b"):
        samples = scrape(stack, label)
        assert metric(samples, "salespulse_scoring_events_total", agent="deal-state") > 0, label
        assert metric(samples, "salespulse_scoring_events_total", agent="rep-kpis") > 0, label
    deal_events = sum(
        metric(scrape(stack, label), "salespulse_scoring_events_total", agent="deal-state")
        for label in ("scoring", "scoring-b")
    )
    assert deal_events == len({event["event_id"] for event in feed.events if event["type"] == "deal"})


# --- reading rep-snapshots directly -------------------------------------------------------------------


def read_snapshots(stack: Stack) -> dict[str, list[tuple[int, int]]]:
    """Every (version, updated_ms) on the rep-snapshots topic, by rep (a rep's snapshots are on one partition,
    in offset order)."""
    found: dict[str, list[tuple[int, int]]] = {}
    for data in read_topic(stack.bootstrap, f"{stack.topic_prefix}rep-snapshots", timeout=30):
        found.setdefault(data["rep_id"], []).append((data["version"], data["updated_ms"]))
    return found


def test_the_worker_reads_a_changelogs_exact_end_whatever_listoffsets_says(broker: str) -> None:
    """Faust's table restore reads a changelog up to the end its consumer reports. ListOffsets on the embedded
    broker answers the last record batch's base offset + 1 (short when that batch holds several records), and
    the publisher sends whole batches, so the worker's consumer thread asks a fetch for changelogs' exact ends
    (`_PromptConsumerThread._highwaters`); other topics keep ListOffsets. Otherwise a restore stops short of the
    last writes (a restarted worker came back with some reps a few writes behind)."""
    from types import SimpleNamespace

    from yarl import URL

    from services.common.broker import ensure_topics
    from services.common.settings import Settings
    from services.scoring.faust_internals import _PromptConsumerThread
    from services.scoring.publisher import Publisher

    settings = Settings(kafka_bootstrap=broker, topic_prefix=f"t{time.time_ns()}.", partitions=1)
    changelog, other = f"{settings.topic_prefix}credits", f"{settings.topic_prefix}rep-snapshots"

    async def scenario() -> tuple[dict[Any, int], dict[Any, int]]:
        await ensure_topics(settings)
        publisher = Publisher(settings)
        try:
            for size in (1, 5, 3):
                for topic in (changelog, other):
                    await publisher.publish(topic, [(b"rep-1", b"%d" % n) for n in range(size)])
        finally:
            await publisher.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
        await consumer.start()
        # The worker's consumer thread, with only what `_highwaters` reads of the Faust app around it.
        thread: Any = object.__new__(_PromptConsumerThread)
        thread.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={changelog}),
                                     conf=SimpleNamespace(broker_client_id="test", broker_credentials=None,
                                                          ssl_context=None, broker_request_timeout=90.0))
        thread.transport = SimpleNamespace(url=[URL(f"kafka://{broker}")], default_port=9092)
        thread.consumer = SimpleNamespace(in_transaction=False)
        thread._consumer = consumer
        try:
            tps = [TopicPartition(changelog, 0), TopicPartition(other, 0)]
            return dict(await consumer.end_offsets(tps)), dict(await thread._highwaters(tps))
        finally:
            if thread._probe is not None:
                await thread._probe.stop()
            await consumer.stop()

    listed, worker = asyncio.run(scenario())
    changelog_tp, other_tp = TopicPartition(changelog, 0), TopicPartition(other, 0)
    assert worker[changelog_tp] == 9, worker  # exact: 1 + 5 + 3 records, in whole batches
    assert listed[changelog_tp] <= 9 and worker[other_tp] == listed[other_tp], (listed, worker)
