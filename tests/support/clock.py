"""The clock of the test stacks: pinned, so that no test depends on the day it runs.

Every service of a test stack reads "now" from `SALESPULSE_CLOCK_AT` (services/common/clock.py); a test
computes what it expects from the same Clock object, never from a second reading of the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.clock import Clock

__all__ = ["NOVEMBER_CLOCK", "TEST_CLOCK", "TEST_NOW", "clock_env", "now_stamp"]

TEST_NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)
"""Where the test stacks' clock starts: a Wednesday, mid-month, mid-quarter, and hours from any day boundary
in the zones the tests use (07:00 in New York, 04:00 in Los Angeles, 17:30 in Kolkata, 21:00 in Tokyo), so
a run of several hours stays in the same periods. It lies after every fixed date the tests post."""

TEST_CLOCK = Clock(TEST_NOW, ticking=True)
"""TEST_NOW at the moment this test process started, ticking in real time from there; processes started
with `clock_env(TEST_CLOCK)` read the very same time."""


NOVEMBER_CLOCK = Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC), ticking=True)
"""For tests whose fixtures name November 2026 (crossings on 2026-11-20, period "2026-11"): late in that
month, so its crossings are young enough to be pushed (SALESPULSE_NOTIFY_MAX_AGE), ticking like TEST_CLOCK."""


def clock_env(clock: Clock) -> dict[str, str]:
    """The settings that make a service's clock read exactly like `clock`."""
    if clock.pinned_at is None:
        return {}
    env = {"SALESPULSE_CLOCK_AT": clock.pinned_at.isoformat(), "SALESPULSE_CLOCK_TICKING": str(clock.ticking).lower()}
    if clock.ticking:
        env["SALESPULSE_CLOCK_ANCHOR"] = repr(clock.anchor)
    return env


def now_stamp(clock: Clock = TEST_CLOCK) -> str:
    """`clock`'s now as an event timestamp (RFC 3339, UTC, whole seconds): what a test's event "now" carries."""
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
