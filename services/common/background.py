"""A component's long-running loop as one named asyncio task: `start()` runs its `_run()`, `stop()` cancels it
and waits until it has unwound. The ledger writer, the relay, topic followers, the notifier's snapshot
consumer and the gateway's board pusher are such components."""

from __future__ import annotations

import asyncio

__all__ = ["BackgroundLoop", "raise_if_cancelled", "wait_set"]


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set or `timeout` seconds pass (None: no limit); whether it is set.

    Every loop that sleeps on an event uses this rather than `asyncio.wait_for(event.wait(), timeout)`: on
    Python 3.11, `wait_for` returns normally when its task is cancelled just as the event is set, so the
    cancellation is lost and a loop being stopped goes on forever (a test's teardown hung on the notifier's
    delivery loop). `asyncio.timeout` tells its own expiry from a cancellation from outside."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop but the request got lost on the way.

    aiokafka's `close()` awaits its own tasks under `contextlib.suppress(CancelledError)`: a cancel that lands
    while a loop stops a consumer or producer to start over (the broker was away) is swallowed, and the loop
    would go on with a new one for ever — a test's teardown hung on it. Such loops call this before each round;
    the task's count of pending cancel requests (Python 3.11) still says it was asked."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class BackgroundLoop:
    """Subclasses define `_run()` and may set `loop_name` (the task's name in logs and debuggers)."""

    loop_name = "background loop"
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=self.loop_name)

    async def stop(self) -> None:
        """Cancel the loop and wait for it to finish unwinding (a stop is not a crash)."""
        if self.task is None:
            return
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        raise NotImplementedError
