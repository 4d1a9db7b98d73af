"""A worker upgraded onto rep states stored before minute days (their per-minute totals inside the state) adopts
those minutes into days once: a contest over them counts them, new events add to them, and a restart of the
worker restoring the same stored state counts nothing twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.topics import partition_for
from services.scoring.domain.rep_state import epoch_minute
from tests.support.scoring_stack import sqlite_url, start_api, start_scoring, start_without_scoring
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.integration

REP = "lee-legacy"
WINDOW_START = datetime(2026, 11, 20, 10, tzinfo=UTC)
WINDOW = {"starts_at": "2026-11-20T10:00:00Z", "ends_at": "2026-11-20T12:00:00Z"}


def legacy_state() -> dict[str, Any]:
    """The stored form of a rep state as workers before minute days wrote it: `minutes` inside (3 activities
    in the window, 1 before it), no days, no minute outbox."""
    at = epoch_minute
    return {
        "rep_id": REP,
        "version": 4,
        "minutes": {
            str(at(WINDOW_START + timedelta(minutes=5))): {"activities": 2, "activities_by_kind": {"call": 2}},
            str(at(WINDOW_START + timedelta(minutes=30))): {"activities": 1, "activities_by_kind": {"email": 1}},
            str(at(WINDOW_START - timedelta(hours=3))): {"activities": 1, "activities_by_kind": {"call": 1}},
        },
    }


async def store_legacy_state(stack: Stack, partitions: int) -> None:
    """Put the legacy value in the rep table's changelog, as the older worker left it."""
    topic = f"{stack.topic_prefix}scoring-rep-state-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(legacy_state()), key=REP.encode(),
                                     partition=partition_for(REP, partitions))
    finally:
        await producer.stop()


def contest_value(stack: Stack) -> float | None:
    response = httpx.get(f"{stack.api}/v1/boards/legacy-blitz/standings", headers=stack.headers, timeout=10)
    if response.status_code != 200:
        return None
    return next((e["value"] for e in response.json()["entries"] if e["rep_id"] == REP), None)


def post_call(stack: Stack, event_id: str, at: datetime) -> None:
    event = {"event_id": event_id, "type": "activity", "occurred_at": at.isoformat(), "rep_id": REP, "kind": "call"}
    response = httpx.post(f"{stack.ingest}/v1/events", json=[event], headers=stack.headers, timeout=30)
    assert response.status_code == 202, response.text


def test_minutes_stored_inside_a_rep_state_are_adopted_into_days_once(stack_factory: Any, tmp_path: Any) -> None:
    stack = start_without_scoring(stack_factory(sqlite_url(tmp_path)))
    asyncio.run(store_legacy_state(stack, partitions=4))  # tests/support/stack.py: the services' default
    start_scoring(stack, "scoring")
    start_api(stack)
    body = {"title": "Legacy blitz", "metric": "activities", "window": WINDOW, "size": 10}
    httpx.put(f"{stack.api}/v1/boards/legacy-blitz", json=body, headers=stack.headers, timeout=30).raise_for_status()
    wait_until(lambda: contest_value(stack) == 3, timeout=60, what="the adopted minutes in the contest")

    # Killed before the rep's next write: the replacement restores the legacy form again, and adopts nothing twice.
    stack.kill("scoring")
    start_scoring(stack, "scoring-2")
    post_call(stack, "after-first-restart", WINDOW_START + timedelta(minutes=50))
    wait_until(lambda: contest_value(stack) == 4, timeout=90, what="a new call added to the adopted day")

    # Stored in the new form now (days, no minutes inside): another replacement counts nothing twice either.
    stack.kill("scoring-2")
    start_scoring(stack, "scoring-3")
    post_call(stack, "after-second-restart", WINDOW_START + timedelta(minutes=55))
    wait_until(lambda: contest_value(stack) == 5, timeout=90, what="the contest after the second restart")
