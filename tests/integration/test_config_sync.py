"""Read your writes across processes: a config follower asked to sync with a moment has applied every change
written before it (what the deal agent asks before crediting a batch, so a team set up and its first deals
posted at once roll up to its manager). Real parts: the embedded broker and the config topic."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from services.common.broker import ensure_topics
from services.common.config_feed import ConfigFollower, publish_config
from services.common.follower import TopicFollower
from services.common.kafka import start_producer
from services.common.settings import Settings
from services.common.topics import CONFIG, topic_name

pytestmark = pytest.mark.integration


def test_a_follower_synced_with_a_moment_has_applied_every_change_written_before_it(broker: str) -> None:
    settings = Settings(kafka_bootstrap=broker, topic_prefix=f"cs{uuid.uuid4().hex[:6]}.")

    async def scenario() -> None:
        await ensure_topics(settings)
        follower = ConfigFollower(settings)
        follower.start()
        producer = await start_producer(settings)
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 30)
            assert await follower.sync(int(time.time() * 1000))  # nothing written: one look at the ends
            for n in range(20):
                team = f"t{n}"
                await publish_config(producer, settings, "team", team, {"team_id": team, "name": team},
                                     int(time.time() * 1000))
                assert await follower.sync(int(time.time() * 1000)), "no sync within its timeout"
                assert team in follower.state.teams(), f"{team} written, then synced, not applied"
            # A moment an earlier sync already covers asks the broker nothing.
            assert await follower.sync(0, timeout=0)
        finally:
            await producer.stop()
            await follower.stop()

    asyncio.run(scenario())


def test_a_sync_is_not_held_behind_the_followers_own_long_poll(broker: str) -> None:
    """A follower of a quiet topic nearly always has a fetch parked at the broker for its whole fetch wait, and a
    broker answers one connection's requests in order: a sync that asked the topic's ends on that connection
    waited the fetch out (configuration's 250 ms, on every batch of deals). Here the fetch wait is 20 s and the
    sync's timeout 10 s: a sync queued behind the fetch times out."""
    settings = Settings(kafka_bootstrap=broker, topic_prefix=f"cs{uuid.uuid4().hex[:6]}.")

    async def scenario() -> None:
        await ensure_topics(settings)
        follower = TopicFollower(settings, topic_name(settings, CONFIG), lambda raw: None, name="long poll",
                                 fetch_wait_ms=20_000)
        follower.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 30)
            now_ms = int(time.time() * 1000)
            for n in range(1, 4):  # each a moment no earlier sync covers: each asks the broker
                assert await follower.sync(now_ms + n * 60_000, timeout=10), f"sync {n} waited behind the fetch"
        finally:
            await follower.stop()

    asyncio.run(scenario())
