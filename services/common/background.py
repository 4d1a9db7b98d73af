"""A component's long-running loop as one named asyncio task: `start()` runs its `_run()`, `stop()` cancels it
and waits until it has unwound. The ledger writer, the relay, topic followers, the notifier's snapshot
consumer and the gateway's board pusher are such components."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

__all__ = ["BackgroundLoop", "cancel_and_wait", "raise_if_cancelled", "wait_set"]

log = logging.getLogger(__name__)

RECANCEL_SECONDS = 2.0
"""How long a cancelled task may take to unwind before it is cancelled again (see `cancel_and_wait`)."""


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


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, recancel_after: float = RECANCEL_SECONDS) -> None:
    """Cancel `tasks` and wait until every one has finished unwinding; their outcomes are consumed (a stop is not
    a crash). A task still unwinding after `recancel_after` seconds is cancelled again, and again, until it ends.

    One cancel is not always enough: when a cancel lands inside a database call, SQLAlchemy invalidates the
    connection and awaits a *graceful* close under `asyncio.shield` (aiosqlite, asyncpg). The first cancel is
    spent by then; if the close never answers (aiosqlite's worker thread already gone), the task waits for ever
    and so does whoever stops it — a test's teardown hung 300 s on the notifier's delivery worker like this.
    A second cancel interrupts the shielded wait, and SQLAlchemy then force-closes the connection."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=recancel_after)
        for task in pending:
            log.warning("task %s still unwinding %.1f s after it was cancelled; cancelling it again",
                        task.get_name(), recancel_after)
            task.cancel()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r as it was stopped", task.get_name(), task.exception())


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
        task = self.task
        await cancel_and_wait([task])
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # it crashed before it was stopped: say so

    async def _run(self) -> None:
        raise NotImplementedError
