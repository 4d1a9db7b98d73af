"""The one Kafka producer configuration every service uses."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from services.common.settings import Settings


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """No idempotence (Tansu rejects InitProducerId), acks from the leader, small linger for latency."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap,
        "enable_idempotence": False,
        "acks": 1,
        "linger_ms": 2,
        "max_batch_size": 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "request_timeout_ms": 15000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)
