"""The board pusher's rate limit (CONTRACT.md §6: a board's standings at most once per 250 ms) holds between
the moments standings are published, also when building a push takes a while (the gateway reading a board's
reps under load): the next push is counted from when the slow one went out, not from when it began. A round
that published nothing opens no window."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from services.api.gateway import Gateway
from services.api.routes.live import LivePusher

INTERVAL = 0.25


class SlowFirstPush(LivePusher):
    """The pusher with its board reads replaced by a wait: the first push takes `slow` seconds, later ones none;
    each records when it ran and says so through `pushed`. Rounds publish standings, but for the first
    `silent` (as when the periodic refresh finds nothing changed)."""

    def __init__(self, slow: float, interval: float = INTERVAL, silent: int = 0) -> None:
        super().__init__(gw=cast(Gateway, None), interval=interval)  # push_boards, its only user, is replaced
        self.slow = slow
        self.silent = silent
        self.published: list[float] = []
        self.pushed = asyncio.Event()

    async def push_boards(self, dirty: dict[str, Any]) -> bool:
        if not self.published:
            await asyncio.sleep(self.slow)
        self.published.append(asyncio.get_running_loop().time())
        self.pushed.set()
        return len(self.published) > self.silent

    def change(self) -> None:
        self.dirty["r1"] = 0
        self.wake.set()

    async def next_push(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self.pushed.wait()
        self.pushed.clear()


def test_a_push_that_took_a_while_still_holds_the_next_one_back_a_whole_interval() -> None:
    async def scenario() -> list[float]:
        pusher = SlowFirstPush(slow=0.15)
        pusher.start()
        try:
            pusher.change()
            await pusher.next_push(5)  # the slow first push went out
            pusher.change()  # a change right after it
            await pusher.next_push(5)
        finally:
            await pusher.stop()
        return pusher.published

    first, second = asyncio.run(scenario())
    assert second - first >= INTERVAL - 0.01, second - first  # the timer's own resolution, not a window of slack


def test_a_change_after_a_quiet_spell_is_pushed_at_once() -> None:
    """Leading edge: with a long interval, the first change is not held to the interval's end."""
    interval = 10.0

    async def scenario() -> float:
        pusher = SlowFirstPush(slow=0.0, interval=interval)
        pusher.start()
        try:
            changed = asyncio.get_running_loop().time()
            pusher.change()
            await pusher.next_push(interval)
        finally:
            await pusher.stop()
        return pusher.published[0] - changed

    assert asyncio.run(scenario()) < interval / 2


def test_a_round_that_published_nothing_holds_back_no_change() -> None:
    """A round that sent no standings (the periodic refresh with nothing new, a change no board shows) is not a
    push: a change right after it still meets a quiet board and goes out at once, not at the interval's end."""
    interval = 10.0

    async def scenario() -> tuple[float, float]:
        pusher = SlowFirstPush(slow=0.0, interval=interval, silent=1)
        pusher.start()
        try:
            pusher.change()
            await pusher.next_push(interval / 2)  # the round that published nothing
            changed = asyncio.get_running_loop().time()
            pusher.change()
            await pusher.next_push(interval / 2)  # times out while the silent round holds a window open
        finally:
            await pusher.stop()
        return changed, pusher.published[1]

    changed, pushed = asyncio.run(scenario())
    assert pushed - changed < interval / 2
