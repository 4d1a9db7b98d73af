"""`wait_set`, the wait every service loop sleeps in, and `cancel_and_wait`, how loops are stopped: `wait_set`
answers whether its event was set, and a stop (a cancellation) is never lost, even one that arrives just as the
event is set or one spent on a shielded close."""

from __future__ import annotations

import asyncio

from services.common.background import BackgroundLoop, cancel_and_wait, wait_set


def test_it_answers_whether_the_event_was_set_within_the_time() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_set(event, 0.01)
        asyncio.get_running_loop().call_later(0.01, event.set)
        woken = await wait_set(event, 10)
        already = await wait_set(event, 0)
        return timed_out, woken, already

    assert asyncio.run(scenario()) == (False, True, True)


def test_a_loop_cancelled_just_as_its_event_is_set_stops() -> None:
    """The race that hung a test's teardown: with `asyncio.wait_for(event.wait(), t)` on Python 3.11 the loop
    below goes round again and the cancellation is gone."""

    async def scenario() -> tuple[bool, int]:
        event = asyncio.Event()
        rounds = 0

        async def loop() -> None:
            nonlocal rounds
            while True:
                await wait_set(event, 10)
                event.clear()
                rounds += 1

        task = asyncio.create_task(loop())
        await asyncio.sleep(0.01)  # the loop is waiting
        event.set()
        await asyncio.sleep(0)  # the event's waiter is done; the loop has not resumed yet
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        task.cancel()
        return bool(done) and task.cancelled(), rounds

    stopped, rounds = asyncio.run(scenario())
    assert stopped, "the cancellation was lost: the loop went on"
    assert rounds <= 1


def test_a_task_whose_first_cancel_is_spent_on_a_shielded_close_is_stopped() -> None:
    """What SQLAlchemy does when a cancel lands in a database call: it awaits a graceful close of the connection
    under `asyncio.shield`, and force-closes only if that wait is interrupted. With aiosqlite's thread gone the
    close never answers, so one cancel leaves the task waiting for ever; `cancel_and_wait` cancels again."""

    async def scenario() -> tuple[bool, bool, bool]:
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        started = asyncio.Event()
        force_closed = False

        async def delivery() -> None:
            nonlocal force_closed
            try:
                started.set()
                await asyncio.Event().wait()  # the database call
            except asyncio.CancelledError:
                try:
                    await asyncio.shield(never)  # the graceful close that never answers
                except asyncio.CancelledError:
                    force_closed = True
                    raise

        task = asyncio.create_task(delivery(), name="delivery")
        await started.wait()
        task.cancel()
        _, pending = await asyncio.wait([task], timeout=0.05)
        one_cancel_left_it_running = task in pending
        async with asyncio.timeout(30):  # a deadline against a hang, not a measurement
            await cancel_and_wait([task], recancel_after=0.05)
        never.cancel()
        return one_cancel_left_it_running, force_closed, task.cancelled()

    assert asyncio.run(scenario()) == (True, True, True)


def test_stopping_reports_a_loop_that_had_crashed_but_not_one_that_unwound() -> None:
    class Crashing(BackgroundLoop):
        async def _run(self) -> None:
            raise RuntimeError("the loop's own failure")

    class Waiting(BackgroundLoop):
        async def _run(self) -> None:
            await asyncio.Event().wait()

    async def scenario() -> tuple[str, bool]:
        crashing, waiting = Crashing(), Waiting()
        crashing.start()
        waiting.start()
        await asyncio.wait([crashing.task], timeout=30)  # type: ignore[list-item]
        try:
            await crashing.stop()
            said = "nothing"
        except RuntimeError as exc:
            said = str(exc)
        await waiting.stop()
        return said, waiting.task.cancelled()  # type: ignore[union-attr]

    assert asyncio.run(scenario()) == ("the loop's own failure", True)
