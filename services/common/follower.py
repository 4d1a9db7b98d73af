"""Follow a whole topic (every partition, from the beginning, no consumer group) and hand each message
to a callback; `caught_up` is set once everything that existed at start-up has been read. With
`start="end"` it follows only what is written from now on (live feeds), resuming where it was after a
reconnect. A message the callback finds unreadable (it raises UnreadableMessage) goes to the dead-letter
topic; the rest go on."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.messages import UnreadableMessage
from services.common.background import BackgroundLoop
from services.common.dead_letters import DeadLetters
from services.common.kafka import KeptConsumer, consume_with_reconnect, log_ends
from services.common.settings import Settings

log = logging.getLogger("salespulse.follower")

PROMPT_WAIT_MS = 20
"""The fetch wait of a feed on the way from a 202 to a screen. The embedded broker answers an empty fetch only
at the end of its wait, even when data arrives meanwhile, so the wait is both a feed's latency and how often it
polls a quiet topic (each poll costs the broker: at 20 ms, a fifth of a core for five feeds on an idle stack)."""
BACKGROUND_WAIT_MS = 250
"""The fetch wait of a feed off that way: configuration (the gateway that writes a change applies it at once),
the notifier's view of everyone's progress for the digest."""


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str, *, timeout: float = 30.0) -> list[TopicPartition]:
    """Every partition of `topic`, waiting for its metadata; a clear error when the topic doesn't exist."""
    deadline = time.monotonic() + timeout
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} does not exist; create it with `salespulse topics`")
        await consumer._client.force_metadata_update()  # noqa: SLF001
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await asyncio.sleep(0.2)
    return [TopicPartition(topic, p) for p in sorted(partitions)]


class TopicFollower(BackgroundLoop):
    def __init__(
        self,
        settings: Settings,
        topic: str,
        handle: Callable[[bytes], None],
        *,
        name: str,
        dead_letters: DeadLetters | None = None,
        start: Literal["beginning", "end"] = "beginning",
        fetch_wait_ms: int = PROMPT_WAIT_MS,
    ) -> None:
        self._settings = settings
        self._start = start
        self._fetch_wait_ms = fetch_wait_ms
        self._positions: dict[TopicPartition, int] = {}
        self.topic = topic
        self._handle = handle
        self._name = name
        self._dead_letters = dead_letters
        self.caught_up = asyncio.Event()
        self.last_message_ms = 0
        self.loop_name = name
        self._consumer: AIOKafkaConsumer | None = None
        # Where a sync asks the topic's ends: the connection above mostly holds the follower's fetch, which on a
        # quiet topic waits out its whole fetch wait (250 ms for configuration), and every batch of deals (its
        # roster sync) waited with it.
        self._lister = KeptConsumer(settings)
        self._advanced = asyncio.Event()
        self._synced_ms = 0

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read per partition (what has been handled is below it)."""
        return dict(self._positions)

    async def sync(self, written_before_ms: int, timeout: float = 5.0) -> bool:
        """Wait until every message written to the topic before `written_before_ms` (wall clock) has been handled:
        read your writes across processes, for a reader that must not act on something older than what caused
        it. One end-offsets request unless an earlier sync already covers that time; False after `timeout`."""
        if written_before_ms <= self._synced_ms:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self.caught_up.wait()
                asked_ms = int(time.time() * 1000)
                consumer = self._consumer
                if consumer is None:
                    return False
                ends = await (await self._lister.get()).end_offsets(list(consumer.assignment()))
                while any(self._positions.get(tp, 0) < end for tp, end in ends.items()):
                    self._advanced.clear()
                    await self._advanced.wait()
        except TimeoutError:
            return False
        except Exception as exc:  # noqa: BLE001  (the broker went away: the caller goes on as before it asked)
            log.warning("%s: could not sync with the topic's end (%s: %s)", self._name, type(exc).__name__, exc)
            await self._lister.close()  # the next sync connects afresh
            return False
        self._synced_ms = max(self._synced_ms, asked_ms)
        return True

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await self._lister.close()

    async def _run(self) -> None:
        await consume_with_reconnect(self._new_consumer, self._follow, name=self._name)

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=self._fetch_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        tps = await topic_partitions(consumer, self.topic)
        # Exact ends (ListOffsets on the embedded broker can fall short by the tail of the last record batch);
        # asked before the assignment below, which log_ends changes.
        ends = await log_ends(consumer, tps) if self._start == "beginning" else {}
        consumer.assign(tps)
        positions = self._positions
        self._consumer = consumer
        if self._start == "beginning":
            await consumer.seek_to_beginning(*tps)
            pending = {tp for tp in tps if ends[tp] > 0}
        else:
            fresh = [tp for tp in tps if tp not in positions]
            if fresh:
                await consumer.seek_to_end(*fresh)
            for tp in tps:
                if tp in positions:
                    consumer.seek(tp, positions[tp])
                else:
                    positions[tp] = await consumer.position(tp)
            ends, pending = {}, set()
        handle = self._handle
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    positions[tp] = message.offset + 1
                    if not message.value:
                        continue
                    try:
                        handle(message.value)
                    except UnreadableMessage as exc:
                        if self._dead_letters is None:  # another reader in this process sets it aside
                            log.warning("%s: skipped an unreadable record at %s/%s@%s (%s)", self._name,
                                        message.topic, message.partition, message.offset, exc)
                            continue
                        await self._dead_letters.put_record(self._name, message, str(exc))
                if messages:
                    self.last_message_ms = int(time.time() * 1000)
                    self._advanced.set()
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not pending and not self.caught_up.is_set():
                log.info("%s caught up", self._name)
                self.caught_up.set()
