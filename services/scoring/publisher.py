"""Sending a batch's output: records grouped by partition into whole record batches, and one wait for all.

The agents send credits, snapshots and table changelog records through this instead of Faust's per-message
send: one `send_batch` per partition costs a fraction of a Faust send per record, and the agent knows the
broker holds everything when `publish` returns (CONTRACT: nothing accepted is ever lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer

from services.common.kafka import start_producer
from services.common.settings import Settings
from services.common.topics import partition_for

__all__ = ["Publisher"]

Record = tuple[bytes, bytes | None]
"""(key, value) of one message (None: a tombstone); the partition is Kafka's default one for the key, or for
what `partition_key` makes of it."""

class Publisher:
    """One aiokafka producer for a scoring worker; `publish` returns once the broker acknowledged every record."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._partitions = settings.partitions
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None

    async def start(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._producer is None:
                self._producer = await start_producer(self._settings, linger_ms=0)
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def partition(self, key: bytes) -> int:
        return partition_for(key.decode(), self._partitions)  # cached there

    async def publish(
        self, topic: str, records: Iterable[Record], *, partition_key: Callable[[bytes], bytes] | None = None,
    ) -> int:
        """Send `records` to `topic` and wait until the broker has all of them; returns how many were sent.

        `partition_key` maps a record's key to the key its partition is chosen by (a rep's minute day goes
        where the rep goes). Records of one key keep their order (one partition, batches sent in order, one in
        flight)."""
        by_partition: dict[int, list[Record]] = {}
        partition = self.partition
        for record in records:
            key = record[0] if partition_key is None else partition_key(record[0])
            by_partition.setdefault(partition(key), []).append(record)
        if not by_partition:
            return 0
        producer = await self.start()
        sends = [self._send_partition(producer, topic, p, recs) for p, recs in by_partition.items()]
        await asyncio.gather(*sends)
        return sum(len(recs) for recs in by_partition.values())

    @staticmethod
    async def _send_partition(producer: AIOKafkaProducer, topic: str, partition: int, records: list[Record]) -> None:
        # Whole record batches, also on changelogs. The embedded broker (Tansu 0.6) answers ListOffsets(latest)
        # with the base offset of the partition's last record batch + 1, not the log end; whatever reads an end
        # asks a fetch for the exact high watermark instead (`log_ends`: the checkpoint, the readiness chain, and
        # Faust's table restore through faust_internals `_PromptConsumerThread._highwaters`). Ending every send
        # with a one-record batch, as changelogs once did, doubled the batches, and every batch a partition holds
        # costs the embedded broker on each fetch (services/cli/renewal.py).
        pending = []
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes for {topic} exceeds the batch size")
        if batch.record_count():
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
