"""Producers are idempotent where the broker grants it, found by asking, never assumed: the embedded broker
advertises InitProducerId in its API versions yet refuses it, so an assumed idempotent producer could not send."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.common.kafka import broker_supports_idempotence, make_producer, start_producer
from services.common.settings import Settings
from tests.support.stack import free_port

pytestmark = pytest.mark.integration


async def test_the_embedded_broker_is_found_to_refuse_idempotence_and_producers_still_deliver(broker: str) -> None:
    settings = Settings(kafka_bootstrap=broker)
    assert await broker_supports_idempotence(settings) is False
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    producer = await start_producer(settings)
    try:
        await producer.send_and_wait(topic, b"kept", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert [m.value for messages in got.values() for m in messages] == [b"kept"]

    # What assuming would have cost: an idempotent producer cannot send to this broker at all.
    assumed = make_producer(settings, idempotent=True)
    try:
        with pytest.raises(KafkaError):
            await assumed.start()
            await asyncio.wait_for(assumed.send_and_wait(topic, b"lost"), 20)
    finally:
        await assumed.stop()


async def test_an_operator_can_set_idempotence_and_an_unreachable_broker_is_not_taken_for_a_refusal() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    assert await broker_supports_idempotence(Settings(kafka_bootstrap=nowhere, kafka_idempotence="on")) is True
    assert await broker_supports_idempotence(Settings(kafka_bootstrap=nowhere, kafka_idempotence="off")) is False
    with pytest.raises(KafkaError):
        await broker_supports_idempotence(Settings(kafka_bootstrap=nowhere))
    with pytest.raises(KafkaError):  # asked again, not remembered as "no"
        await broker_supports_idempotence(Settings(kafka_bootstrap=nowhere))
