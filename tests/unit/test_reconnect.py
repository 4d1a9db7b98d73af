"""`consume_with_reconnect` ends when its task is cancelled, even when the consumer's stop swallows the
cancellation: aiokafka's `close()` awaits its own fetch and metadata tasks under
`contextlib.suppress(CancelledError)`, so a cancel that lands there is lost to the caller's task."""

from __future__ import annotations

import asyncio
import contextlib

from services.common.backoff import Backoff
from services.common.kafka import consume_with_reconnect


class _Consumer:
    """Stands in for an AIOKafkaConsumer: starts at once; its stop waits like aiokafka's close and, like it,
    swallows a cancellation that lands meanwhile."""

    def __init__(self, stopping: asyncio.Event) -> None:
        self.stopping = stopping

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


async def test_a_cancel_swallowed_by_the_consumers_stop_still_ends_the_loop() -> None:
    stopping = asyncio.Event()
    uses = 0

    async def use(consumer: object) -> None:
        nonlocal uses
        uses += 1
        if uses == 1:
            raise ConnectionError("broker away")  # the first consumer fails: it is stopped and made anew
        await asyncio.Event().wait()  # the next one consumes for ever

    task = asyncio.create_task(consume_with_reconnect(
        lambda: _Consumer(stopping), use, name="test consumer", backoff=Backoff(first=0.001, most=0.001)
    ))
    async with asyncio.timeout(10):
        await stopping.wait()  # the failed consumer is being stopped
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=10)
    assert task in done, "the cancelled loop went on with a new consumer"
    assert task.cancelled()
    assert uses == 1
