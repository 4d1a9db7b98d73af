"""The gateway's in-memory read model: the newest snapshot of every rep, rebuilt from the compacted
rep-snapshots topic at start-up and kept current by a consumer that reads every partition."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.settings import Settings
from services.common.topics import REP_SNAPSHOTS, topic_name
from services.scoring.domain.rep_state import RepState

log = logging.getLogger("salespulse.api.read_model")


@dataclass
class RepView:
    """What the gateway knows of one rep: the folded state and when it was produced."""

    state: RepState
    version: int
    updated_ms: int
    accepted_ms: int


Listener = Callable[[RepView], None]


class ReadModel:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.reps: dict[str, RepView] = {}
        self.listeners: list[Listener] = []
        self.caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.topic = topic_name(settings, REP_SNAPSHOTS)
        self.last_message_ms = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="read-model")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer:
            await self._consumer.stop()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone: keep serving what we have, reconnect
                log.warning("read model paused (%s: %s); reconnecting in %.1f s", type(exc).__name__, exc, backoff)
                if self._consumer is not None:
                    try:
                        await self._consumer.stop()
                    except Exception:  # noqa: BLE001
                        pass
                    self._consumer = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=20,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        self._consumer = consumer
        partitions = await _wait_for_partitions(consumer, self.topic)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        targets = await consumer.end_offsets(tps)
        pending = {tp for tp, end in targets.items() if end > 0}
        if not pending:
            self.caught_up.set()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    self._apply(message.value)
                if tp in pending and messages and messages[-1].offset + 1 >= targets[tp]:
                    pending.discard(tp)
            if pending:
                for tp in list(pending):
                    if await consumer.position(tp) >= targets[tp]:
                        pending.discard(tp)
            if not pending and not self.caught_up.is_set():
                log.info("read model caught up: %d reps", len(self.reps))
                self.caught_up.set()

    def _apply(self, raw: bytes | None) -> None:
        if not raw:
            return
        data = orjson.loads(raw)
        rep_id = data["rep_id"]
        known = self.reps.get(rep_id)
        if known is not None and data["version"] < known.version:
            return  # an older snapshot (e.g. republished by a worker that lost the partition)
        view = RepView(
            state=RepState.from_dict(data["state"]),
            version=data["version"],
            updated_ms=data["updated_ms"],
            accepted_ms=data.get("accepted_ms", 0),
        )
        self.reps[rep_id] = view
        self.last_message_ms = int(time.time() * 1000)
        for listener in self.listeners:
            listener(view)


async def _wait_for_partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} does not exist; start the stack with `salespulse up`")
        await consumer._client.force_metadata_update()  # noqa: SLF001
        await asyncio.sleep(0.2)
