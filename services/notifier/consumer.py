"""Reading rep snapshots: as a consumer group for crossings (several notifiers split the reps by partition),
and the whole topic for the coaching digest (which needs every rep's latest progress)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from services.common.follower import TopicFollower
from services.common.settings import Settings
from services.common.topics import REP_SNAPSHOTS, topic_name

log = logging.getLogger("salespulse.notifier.consumer")

__all__ = ["ProgressFeed", "SnapshotConsumer", "group_id"]


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}notifier"


class SnapshotConsumer:
    """Hands each fetched batch of rep snapshots to `handle` and commits the offsets only after it returned
    (the crossings are in SQL by then). A batch handed over twice — after a crash, a rebalance or a
    restart — is harmless: the SQL record decides what is new."""

    def __init__(self, settings: Settings, handle: Callable[[list[bytes]], Awaitable[None]]) -> None:
        self._settings = settings
        self._handle = handle
        self._task: asyncio.Task[None] | None = None
        self.running = asyncio.Event()
        """Set once the consumer has started (joined the group)."""
        self.assigned = asyncio.Event()
        """Set once this process owns at least one partition (a replica beyond the partition count never does)."""
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifier-snapshots")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def _consumer(self) -> AIOKafkaConsumer:
        s = self._settings
        return AIOKafkaConsumer(
            topic_name(s, REP_SNAPSHOTS),
            bootstrap_servers=s.bootstrap,
            group_id=group_id(s),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(s.broker_heartbeat_interval * 1000),
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                self.running.set()
                backoff = 0.2
                while True:
                    batches = await consumer.getmany(timeout_ms=250, max_records=2000)
                    if consumer.assignment():
                        self.assigned.set()
                    values = [m.value for messages in batches.values() for m in messages if m.value]
                    if values:
                        await self._handle(values)
                        self.batches += 1
                    if batches:
                        await consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: start over from the committed offsets
                self.running.clear()
                log.warning("snapshot consumer paused (%s: %s); retrying in %.1f s", type(exc).__name__, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    await consumer.stop()
                except Exception:  # noqa: BLE001
                    pass


class ProgressFeed:
    """The latest `progress` of every rep (highest version wins), from the whole rep-snapshots topic."""

    def __init__(self, settings: Settings) -> None:
        self.progress: dict[str, list[dict[str, Any]]] = {}
        self._versions: dict[str, int] = {}
        self._follower = TopicFollower(
            settings, topic_name(settings, REP_SNAPSHOTS), self._apply, name="notifier progress feed"
        )
        self.caught_up = self._follower.caught_up

    def _apply(self, raw: bytes) -> None:
        try:
            data = orjson.loads(raw)
            rep_id, version = data["rep_id"], int(data.get("version", 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        if self._versions.get(rep_id, -1) > version:
            return
        self._versions[rep_id] = version
        self.progress[rep_id] = list(data.get("progress") or [])

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
