"""The one Kafka producer configuration every service uses."""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.common.settings import Settings


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """Acks from every in-sync replica (a leader failover must not drop what the relay counted as published);
    no idempotence (Tansu rejects InitProducerId; duplicates are recognised by sequence number downstream);
    small linger for latency."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap,
        "enable_idempotence": False,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "request_timeout_ms": 15000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def log_ends(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition], timeout: float = 5.0) -> dict[
    TopicPartition, int
]:
    """The exact end offset of each partition.

    ListOffsets(latest) on the embedded broker (Tansu) answers the base offset of the partition's last record
    batch + 1, short of the log end when that batch holds several records (see services/scoring/publisher.py).
    A fetch response's high watermark is exact: fetch once from just before the listed end."""
    wanted = list(tps)
    listed: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
    ends = dict(listed)
    probe = [tp for tp in wanted if listed[tp] > 0]
    if not probe:
        return ends
    consumer.assign(probe)  # a fresh assignment: no high watermark from an earlier probe
    for tp in probe:
        consumer.seek(tp, listed[tp] - 1)
    pending = set(probe)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        await consumer.getmany(*pending, timeout_ms=200, max_records=1)
        for tp in list(pending):
            high = consumer.highwater(tp)
            if high is not None:
                ends[tp] = max(ends[tp], high)
                pending.discard(tp)
    return ends
