"""Test support: read what actually reached the broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


def read_topic(bootstrap: str, topic: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every message currently on `topic` (all partitions, from the beginning), decoded as JSON, with its
    partition under the key `_partition`, in partition order."""

    async def main() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            partitions = consumer.partitions_for_topic(topic)
            while not partitions and time.monotonic() < deadline:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                partitions = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[dict[str, Any]] = []
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
                    out.extend({**orjson.loads(m.value), "_partition": tp.partition} for m in messages if m.value)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(main())
