"""One token bucket for everything that limits a rate: API keys and client addresses (services/common/ratelimit.py)
and what each WebSocket screen may send (services/api/hub.py). The generic cell rate algorithm keeps one number
per identity, so a hundred thousand identities cost little."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Bucket", "Clock"]

Clock = Callable[[], float]
"""Monotonic seconds."""


class Bucket:
    """The generic cell rate algorithm: one number per identity (the theoretical arrival time, TAT).

    An identity may spend `cost` at time `now` when `TAT + cost/rate - burst/rate <= now`; spending moves TAT by
    `cost/rate`. Refused attempts change nothing, so a client that retries too early does not push its own
    window further out. An identity whose TAT is in the past holds a full bucket and is forgotten.
    """

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic, max_entries: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs a rate above 0 and a burst of at least 1")
        self.interval = 1.0 / rate
        self.burst = burst
        self.tolerance = burst * self.interval
        self._clock = clock
        self._max_entries = max_entries
        self._tat: dict[str, float] = {}

    def wait(self, identity: str, cost: float = 1.0) -> float:
        """Seconds until `identity` may spend `cost` (0.0 when it may now); spends nothing."""
        now = self._clock()
        tat = max(self._tat.get(identity, now), now)
        return max(0.0, tat + cost * self.interval - self.tolerance - now)

    def acquire(self, identity: str, cost: float = 1.0) -> float:
        """Spend `cost` and return 0.0, or spend nothing and return the seconds to wait."""
        now = self._clock()
        tat = max(self._tat.get(identity, now), now)
        new_tat = tat + cost * self.interval
        if new_tat - self.tolerance > now:
            return new_tat - self.tolerance - now
        if identity not in self._tat and len(self._tat) >= self._max_entries:
            self._forget_full(now)
        self._tat[identity] = new_tat
        return 0.0

    def forget(self, identity: str) -> None:
        """Drop an identity that is gone (a closed connection); it would start with a full bucket anyway."""
        self._tat.pop(identity, None)

    def _forget_full(self, now: float) -> None:
        """Drop identities with a full bucket; if a flood of live ones remains, start afresh (fail open)."""
        self._tat = {identity: tat for identity, tat in self._tat.items() if tat > now}
        if len(self._tat) >= self._max_entries:
            self._tat.clear()
