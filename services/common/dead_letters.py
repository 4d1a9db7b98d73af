"""Unreadable records are set aside, not stalled on: a reader that cannot decode a record with its topic's model
(schemas/messages.py) moves it to the `dead-letter` topic as it was, with where it came from and why in its
headers, counts it in `salespulse_dead_letters_total{reader}`, logs one line, and goes on."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter

from services.common.kafka import start_producer
from services.common.settings import Settings
from services.common.topics import DEAD_LETTER, topic_name

__all__ = ["DeadLetters"]

log = logging.getLogger("salespulse.dead_letters")


class DeadLetters:
    """One per process; its producer starts with the first dead letter (most processes never meet one)."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self._settings = settings
        self._topic = topic_name(settings, DEAD_LETTER)
        self._producer: AIOKafkaProducer | None = None
        self.counted = Counter(
            "salespulse_dead_letters_total",
            "Unreadable records moved to the dead-letter topic, by reader",
            ["reader"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    async def put_record(self, reader: str, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Set aside a record a consumer read (see `put`)."""
        await self.put(reader=reader, topic=record.topic, partition=record.partition, offset=record.offset,
                       key=record.key, value=record.value or b"", reason=reason)

    async def put(
        self, *, reader: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes, reason: str
    ) -> None:
        """Set one record aside. Never raises: a dead letter that cannot be written is still counted and logged,
        and the reader goes on. The count moves once the write is done (or has failed), so whoever sees it
        can read the record on the dead-letter topic."""
        source = f"{topic}/{partition}@{offset}"
        log.error("%s: unreadable record at %s (%s); moved to %s", reader, source, reason, self._topic)
        headers = [
            ("salespulse-reader", reader.encode()),
            ("salespulse-source", source.encode()),
            ("salespulse-reason", reason[:1000].encode()),
        ]
        try:
            if self._producer is None:
                self._producer = await start_producer(self._settings)
            await self._producer.send_and_wait(self._topic, value, key=key or b"", headers=headers)
        except Exception as exc:  # noqa: BLE001  (broker away: the count and the log line remain)
            log.error("%s: could not write the dead letter from %s: %s: %s", reader, source, type(exc).__name__, exc)
        finally:
            self.counted.labels(reader).inc()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
