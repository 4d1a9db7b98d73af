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

from services.common.kafka import log_ends
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


def test_published_records_are_all_below_the_end_offset_the_broker_reports(broker: str) -> None:
    """Faust's table restore reads a changelog's end from ListOffsets; the embedded broker answers it with
    the last record batch's base offset + 1, so the worker's publisher ends every changelog send with a
    one-record batch (`last_alone`). Otherwise a restore stops short of the last writes. Other topics are
    sent in whole batches; what reads their end asks for the exact high watermark (`log_ends`)."""
    from services.common.broker import ensure_topics
    from services.common.settings import Settings
    from services.scoring.publisher import Publisher

    settings = Settings(kafka_bootstrap=broker, topic_prefix=f"t{time.time_ns()}.", partitions=1)
    changelog, credits = f"{settings.topic_prefix}credits", f"{settings.topic_prefix}rep-snapshots"

    async def scenario() -> tuple[int, int, int]:
        await ensure_topics(settings)
        publisher = Publisher(settings)
        try:
            for size in (1, 5, 3):
                await publisher.publish(changelog, [(b"rep-1", b"%d" % n) for n in range(size)], last_alone=True)
                await publisher.publish(credits, [(b"rep-1", b"%d" % n) for n in range(size)])
        finally:
            await publisher.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
        await consumer.start()
        try:
            alone, whole = TopicPartition(changelog, 0), TopicPartition(credits, 0)
            listed = await consumer.end_offsets([alone, whole])
            return listed[alone], listed[whole], (await log_ends(consumer, [whole]))[whole]
        finally:
            await consumer.stop()

    listed_alone, listed_whole, exact_whole = asyncio.run(scenario())
    assert listed_alone == 9  # ListOffsets is the log end when the last batch holds one record
    assert exact_whole == 9 and listed_whole <= 9  # the exact end from a fetch, whatever ListOffsets says
