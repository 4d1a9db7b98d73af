"""Reading rep snapshots: as a consumer group for crossings (several notifiers split the reps by partition),
and the whole topic for the coaching digest (which needs every rep's latest progress)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from schemas.messages import PlanProgressEntry, RepProgress, UnreadableMessage, decode
from services.common.background import BackgroundLoop
from services.common.dead_letters import DeadLetters
from services.common.follower import BACKGROUND_WAIT_MS, TopicFollower
from services.common.kafka import consume_with_reconnect
from services.common.settings import Settings
from services.common.topics import REP_SNAPSHOTS, topic_name

log = logging.getLogger("salespulse.notifier.consumer")

__all__ = ["ProgressFeed", "SnapshotConsumer", "group_id"]


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}notifier"


class SnapshotConsumer(BackgroundLoop):
    """Hands each fetched batch of rep snapshots to `handle` and commits the offsets only after it returned
    (the crossings are in SQL by then). A batch handed over twice — after a crash, a rebalance or a
    restart — is harmless: the SQL record decides what is new."""

    loop_name = "notifier-snapshots"

    def __init__(
        self,
        settings: Settings,
        handle: Callable[[list[RepProgress]], Awaitable[object]],
        dead_letters: DeadLetters,
    ) -> None:
        self._settings = settings
        self._handle = handle
        self._dead_letters = dead_letters
        self.running = asyncio.Event()
        """Set once the consumer has started (joined the group)."""
        self.assigned = asyncio.Event()
        """Set once this process owns at least one partition (a replica beyond the partition count never does)."""
        self.batches = 0

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
        await consume_with_reconnect(
            self._consumer, self._consume, name="snapshot consumer", on_pause=self.running.clear
        )

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """Fold every batch of snapshots and commit it; for ever (a failure starts over from the commits)."""
        self.running.set()
        while True:
            batches = await consumer.getmany(timeout_ms=250, max_records=2000)
            if consumer.assignment():
                self.assigned.set()
            snapshots = [s for messages in batches.values() for m in messages if (s := await self._read(m))]
            if snapshots:
                await self._handle(snapshots)
                self.batches += 1
            if batches:
                await consumer.commit()

    async def _read(self, message: ConsumerRecord[bytes, bytes]) -> RepProgress | None:
        """The snapshot in a record; None for a tombstone or an unreadable record (dead-lettered)."""
        if not message.value:
            return None
        try:
            return decode(RepProgress, message.value)
        except UnreadableMessage as exc:
            await self._dead_letters.put_record("notifier snapshots", message, str(exc))
            return None


class ProgressFeed:
    """The latest `progress` and streak days of every rep (highest version wins), from the whole rep-snapshots
    topic."""

    def __init__(self, settings: Settings, dead_letters: DeadLetters | None = None) -> None:
        self.progress: dict[str, list[PlanProgressEntry]] = {}
        self.streaks: dict[str, dict[str, list[tuple[str, str]]]] = {}
        """Each rep's qualifying days per streak (docs/achievements.md, Streaks), for the digest's streaks at risk."""
        self._versions: dict[str, int] = {}
        self._follower = TopicFollower(
            settings,
            topic_name(settings, REP_SNAPSHOTS),
            self._apply,
            name="notifier progress feed",
            dead_letters=dead_letters,
            fetch_wait_ms=BACKGROUND_WAIT_MS,
        )
        self.caught_up = self._follower.caught_up

    def _apply(self, raw: bytes) -> None:
        snapshot = decode(RepProgress, raw)
        if self._versions.get(snapshot.rep_id, -1) > snapshot.version:
            return
        self._versions[snapshot.rep_id] = snapshot.version
        self.progress[snapshot.rep_id] = snapshot.progress
        self.streaks[snapshot.rep_id] = snapshot.streaks

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
