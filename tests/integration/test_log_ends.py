"""`log_ends`: the exact end of each partition, or an error; never the end ListOffsets lists on the embedded broker,
which falls short of a last record batch that holds several records.

Real broker (Tansu)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.broker import ensure_topics
from services.common.kafka import EndsUnknown, log_ends
from services.common.settings import Settings
from services.scoring.publisher import Publisher

pytestmark = pytest.mark.integration


def test_log_ends_are_exact_or_an_error_never_the_listed_end(broker: str) -> None:
    settings = Settings(kafka_bootstrap=broker, topic_prefix=f"t{time.time_ns()}.", partitions=2)
    topic = f"{settings.topic_prefix}credits"
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]

    async def scenario() -> tuple[dict[TopicPartition, int], dict[TopicPartition, int], str]:
        await ensure_topics(settings)
        publisher = Publisher(settings)
        try:
            await publisher.publish(topic, [(b"rep-1", b"%d" % n) for n in range(5)])  # one batch, one partition
        finally:
            await publisher.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            listed = dict(await consumer.end_offsets(tps))
            exact = await log_ends(consumer, tps)
            with pytest.raises(EndsUnknown) as raised:
                await log_ends(consumer, tps, timeout=0)  # no time to ask a fetch
            return listed, exact, str(raised.value)
        finally:
            await consumer.stop()

    listed, exact, error = asyncio.run(scenario())
    assert sorted(exact.values()) == [0, 5], exact  # the five records, in one partition
    full = next(tp for tp in tps if exact[tp])
    assert listed[full] <= exact[full], listed  # on Tansu 1: the batch's base offset + 1
    assert error.startswith("no fetch answered within 0 s for ") and f"{topic}[{full.partition}]" in error
