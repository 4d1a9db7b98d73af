"""Test support: read what actually reached the broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.kafka import log_ends

__all__ = ["read_topic", "read_topic_raw"]

Record = tuple[int, bytes, dict[str, bytes]]


def _records(bootstrap: str, topic: str, timeout: float) -> list[Record]:
    """Every record currently on `topic` (all partitions, from the beginning, to the end as of now) as
    (partition, value, headers), tombstones left out, in partition and offset order."""

    async def main() -> list[Record]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            partitions = consumer.partitions_for_topic(topic)
            while not partitions and time.monotonic() < deadline:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
            if not tps:
                return []
            ends = await log_ends(consumer, tps)  # exact: ListOffsets on the embedded broker can fall short
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: dict[int, list[Record]] = {tp.partition: [] for tp in tps}

            async def behind() -> bool:
                for tp in tps:
                    if await consumer.position(tp) < ends[tp]:
                        return True
                return False

            while await behind():
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read {topic} to its end within {timeout} s")
                batches = await consumer.getmany(timeout_ms=500)
                for tp, messages in batches.items():
                    out[tp.partition] += [(tp.partition, m.value, dict(m.headers)) for m in messages if m.value]
            return [record for partition in sorted(out) for record in out[partition]]
        finally:
            await consumer.stop()

    return asyncio.run(main())


def read_topic(bootstrap: str, topic: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every message currently on `topic`, decoded as JSON, with its partition under the key `_partition`, in
    partition order."""
    return [{**orjson.loads(value), "_partition": partition} for partition, value, _ in _records(bootstrap, topic,
                                                                                                   timeout)]


def read_topic_raw(bootstrap: str, topic: str, *, timeout: float = 10.0) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every record currently on `topic` as (value, headers), in partition order."""
    return [(value, headers) for _, value, headers in _records(bootstrap, topic, timeout)]
