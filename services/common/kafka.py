"""The one Kafka producer configuration every service uses, and the one reconnect loop of our consumers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.common.backoff import Backoff
from services.common.settings import Settings

log = logging.getLogger(__name__)


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


async def log_ends(
    consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition], timeout: float = 5.0
) -> dict[TopicPartition, int]:
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


async def consume_with_reconnect(
    make: Callable[[], AIOKafkaConsumer],
    use: Callable[[AIOKafkaConsumer], Awaitable[None]],
    *,
    name: str,
    on_pause: Callable[[], None] | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Start a consumer from `make()` and hand it to `use` until `use` returns. When anything fails (the broker
    or the database is away), log it, call `on_pause`, back off and start over with a fresh consumer: a group
    consumer resumes from its committed offsets, an assigned one from wherever `use` keeps its positions. The
    consumer is stopped on every way out, cancellation included."""
    backoff = backoff or Backoff()
    while True:
        consumer = make()
        try:
            await consumer.start()
            backoff.reset()
            await use(consumer)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (broker or database away: start over)
            if on_pause is not None:
                on_pause()
            wait = backoff.next()
            log.warning("%s paused (%s: %s); retrying in %.1f s", name, type(exc).__name__, exc, wait)
            await asyncio.sleep(wait)
        finally:
            try:
                await consumer.stop()
            except Exception as exc:  # noqa: BLE001  (a consumer that never started, or a broker gone)
                log.debug("%s: stopping its consumer: %r", name, exc)
