"""`wait_set`, the wait every service loop sleeps in: it answers whether its event was set, and a stop (a
cancellation) is never lost, even one that arrives just as the event is set."""

from __future__ import annotations

import asyncio

from services.common.background import wait_set


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
