"""One back-off for everything that tries again: reconnect loops (topic followers, the relay, the notifier's
worker), clients of our own HTTP services (the CSV importer, the demo feeder) and the notifier's persisted
delivery retries. Exponential from `first`, capped at `most`, optionally with jitter so many retriers that
failed together do not come back together."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["RETRY_STATUSES", "Backoff", "retry_after_seconds"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP answers of our own services worth trying again: over a rate limit (429), starting or restarting."""


@dataclass
class Backoff:
    """Delays between tries: `first`, then doubling up to `most`; `reset()` after a success.

    `jitter` is the share of each delay drawn at random: 0 for fixed delays, 0.5 for "equal jitter" (half the
    step fixed, half random)."""

    first: float = 0.2
    most: float = 5.0
    jitter: float = 0.0
    rng: random.Random | None = None
    _failures: int = field(default=0, init=False)

    def delay(self, attempt: int) -> float:
        """The delay before try `attempt + 1`, after `attempt` failures (1 = after the first), stateless: for
        retries whose count is kept elsewhere (a delivery's attempts in SQL)."""
        step = min(self.most, self.first * 2.0 ** max(0, attempt - 1))
        if not self.jitter:
            return step
        fixed = step * (1 - self.jitter)
        spread = self.rng.uniform(0, step - fixed) if self.rng is not None else random.uniform(0, step - fixed)
        return fixed + spread

    def next(self, at_least: float = 0.0) -> float:
        """The delay before the next try, counting one more failure; at least `at_least` (a Retry-After)."""
        self._failures += 1
        return max(self.delay(self._failures), at_least)

    def reset(self) -> None:
        """A try succeeded: the next failure waits `first` again."""
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures since the last reset."""
        return self._failures

    async def sleep(self, at_least: float = 0.0) -> float:
        """Wait the next delay; returns how long."""
        wait = self.next(at_least)
        await asyncio.sleep(wait)
        return wait


def retry_after_seconds(headers: Mapping[str, str]) -> float:
    """The seconds an HTTP answer's Retry-After asks for (the delta-seconds form), else 0."""
    value = headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else 0.0
