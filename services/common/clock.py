"""The one clock every service asks what time it is: the system clock in production, a pinned instant when
`SALESPULSE_CLOCK_AT` is set (tests, demos of a past quarter), so a whole stack can run at any moment.

It answers the business's "now": which day, week, month, quarter and year it is, how much of a plan period
has gone by (pace, forecast), which event timestamps are too far ahead, quiet hours, digests and the
notifier's retry and lease times (one time base for everything it schedules), the "as of" of snapshots.
What measures the machine rather than the business keeps the system clock: when the ledger accepted an event
and the event-to-screen latency measured from it, configuration versions, API key records, webhook
signature timestamps (checked by the receiver against its own clock), and durations (monotonic).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["PROCESS_STARTED", "Clock"]

PROCESS_STARTED = time.time()
"""When this process started: where a pinned, ticking clock starts unless an anchor is given."""


class Clock:
    """`now()` as an aware UTC datetime.

    - no pin: the system clock;
    - pinned, frozen (the default for a pin): always exactly the pinned instant;
    - pinned, ticking: the pinned instant at the real moment `anchor` (Unix seconds; default: when this
      process started), moving on in real time from there. Processes given the same pin and anchor agree.
    """

    __slots__ = ("_pinned", "_ticking", "_anchor")

    def __init__(self, pinned: datetime | None = None, *, ticking: bool = False, anchor: float | None = None) -> None:
        if pinned is not None and (pinned.tzinfo is None or pinned.utcoffset() is None):
            raise ValueError(f"a pinned instant needs a UTC offset: {pinned.isoformat()}")
        self._pinned = pinned.astimezone(UTC) if pinned is not None else None
        self._ticking = ticking
        self._anchor = PROCESS_STARTED if anchor is None else anchor

    @property
    def pinned(self) -> bool:
        return self._pinned is not None

    @property
    def pinned_at(self) -> datetime | None:
        """The pinned instant (UTC), or None for the system clock."""
        return self._pinned

    @property
    def ticking(self) -> bool:
        return self._ticking

    @property
    def anchor(self) -> float:
        """The real moment (Unix seconds) at which a ticking clock read its pinned instant."""
        return self._anchor

    @property
    def frozen(self) -> bool:
        """True when the clock never moves (pinned and not ticking)."""
        return self._pinned is not None and not self._ticking

    def time(self) -> float:
        """Now as Unix seconds."""
        if self._pinned is None:
            return time.time()
        offset = time.time() - self._anchor if self._ticking else 0.0
        return self._pinned.timestamp() + offset

    def now(self) -> datetime:
        """Now as an aware datetime in UTC."""
        if self._pinned is None:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self.time(), UTC)

    def now_ms(self) -> int:
        """Now as Unix milliseconds."""
        return int(self.time() * 1000)

    def offset(self) -> timedelta:
        """How far this clock is from the machine's (nothing unless pinned): turns a machine time stamp, such as
        the ledger's acceptance time, into this clock's."""
        return self.now() - datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now()

    def __repr__(self) -> str:
        if self._pinned is None:
            return "Clock(system)"
        mode = f"ticking from anchor {self._anchor:.3f}" if self._ticking else "frozen"
        return f"Clock(pinned at {self._pinned.isoformat()}, {mode})"
