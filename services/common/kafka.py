"""The one Kafka producer configuration every service uses, the one reconnect loop of our consumers, and the
one kept client for questions about partitions (their ends)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.transaction import InitProducerIdRequest

from services.common.background import raise_if_cancelled
from services.common.backoff import Backoff
from services.common.settings import Settings

log = logging.getLogger(__name__)


def make_producer(settings: Settings, *, idempotent: bool = False, **overrides: object) -> AIOKafkaProducer:
    """Acks from every in-sync replica (a leader failover must not drop what the relay counted as published);
    small linger for latency. `idempotent` only where the broker was found to support it (`start_producer`):
    duplicates from a retried send are recognised by sequence number downstream either way."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap,
        "enable_idempotence": idempotent,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "request_timeout_ms": 15000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


_IDEMPOTENCE: dict[str, bool] = {}
"""What each broker (by bootstrap address) answered to InitProducerId, once per process."""


async def broker_supports_idempotence(settings: Settings) -> bool:
    """Ask the broker for a producer id, as an idempotent producer does first. Brokers advertise the request in
    their API versions whether or not they grant it (the embedded Tansu advertises it and answers with an
    error), so the answer is the only proof. Raises when the broker cannot be reached."""
    if settings.kafka_idempotence != "auto":
        return settings.kafka_idempotence == "on"
    known = _IDEMPOTENCE.get(settings.bootstrap)
    if known is not None:
        return known
    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000)
    try:
        await client.bootstrap()
        response = await client.send(client.get_random_node(), InitProducerIdRequest(None, 60_000))
        granted = bool(response.error_code == 0)
    finally:
        await client.close()
    _IDEMPOTENCE[settings.bootstrap] = granted
    log.info("broker at %s: idempotent producers %s", settings.bootstrap, "on" if granted else "off (not supported)")
    return granted


async def start_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """A started producer (`make_producer`), idempotent where the broker supports it (detected, not assumed)."""
    producer = make_producer(settings, idempotent=await broker_supports_idempotence(settings), **overrides)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


class EndsUnknown(TimeoutError):
    """No fetch answered for some partitions in time, so their exact ends are not known (`log_ends`)."""


async def log_ends(
    consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition], timeout: float = 5.0
) -> dict[TopicPartition, int]:
    """The exact end offset of each partition.

    ListOffsets(latest) on the embedded broker (Tansu) answers the base offset of the partition's last record
    batch + 1, short of the log end when that batch holds several records (see services/scoring/publisher.py).
    A fetch response's high watermark is exact: fetch once from just before the listed end.

    Raises `EndsUnknown` when a partition's fetch has not answered within `timeout` seconds. Every caller
    relies on the end being exact (a restore reads up to it; a checkpoint or the readiness chain waits for it),
    so a listed end that may fall short is never given in its place."""
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
    if pending:
        names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
        raise EndsUnknown(
            f"no fetch answered within {timeout:g} s for {names}: their exact ends are unknown (the broker is slow "
            "or away); ask again"
        )
    return ends


class KeptConsumer:
    """A plain consumer (no group), started on first use and kept for later questions about partitions (their
    ends, metadata, a probe fetch). Being its own connection matters: a broker answers one connection's requests
    in order, so a question sent where another consumer's fetch is parked waits that fetch out."""

    def __init__(self, settings: Settings, **overrides: object) -> None:
        self._settings = settings
        self._overrides = overrides
        self._consumer: AIOKafkaConsumer | None = None
        self._starting = asyncio.Lock()  # two first uses at once connect once

    async def get(self) -> AIOKafkaConsumer:
        async with self._starting:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(bootstrap_servers=self._settings.bootstrap, group_id=None,
                                            enable_auto_commit=False, **self._overrides)
                try:
                    await consumer.start()
                except BaseException:
                    await consumer.stop()
                    raise
                self._consumer = consumer
            return self._consumer

    async def close(self) -> None:
        """Stop it (a broken one too); the next `get` connects afresh."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # noqa: BLE001  (the broker is gone already: closing is all that is left)
                log.debug("stopping a kept consumer: %r", exc)


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
    consumer is stopped on every way out, cancellation included, and a cancellation is final even when the
    consumer's stop swallowed it (`raise_if_cancelled`)."""
    backoff = backoff or Backoff()
    while True:
        raise_if_cancelled()
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
