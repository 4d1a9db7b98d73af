"""The one back-off: exponential from `first`, capped at `most`, reset after a success, with optional jitter."""

from __future__ import annotations

import random

from services.common.backoff import Backoff, retry_after_seconds


def test_delays_double_up_to_the_cap_and_start_over_after_a_success() -> None:
    backoff = Backoff(first=0.25, most=5.0)
    assert [backoff.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.failures == 7
    backoff.reset()
    assert backoff.next() == 0.25


def test_a_retry_after_longer_than_the_delay_is_honoured() -> None:
    backoff = Backoff(first=0.25, most=5.0)
    assert backoff.next(at_least=3.0) == 3.0
    assert backoff.next(at_least=0.1) == 0.5  # the progression went on underneath


def test_equal_jitter_keeps_half_of_each_step_fixed_and_spreads_the_rest() -> None:
    backoff = Backoff(first=1.0, most=30.0, jitter=0.5, rng=random.Random(7))
    for attempt in range(1, 9):
        step = min(30.0, 2.0 ** (attempt - 1))
        assert step / 2 <= backoff.delay(attempt) <= step
    spread = {round(backoff.delay(3), 6) for _ in range(20)}
    assert len(spread) > 10


def test_retry_after_reads_seconds_and_ignores_dates() -> None:
    assert retry_after_seconds({"retry-after": "12"}) == 12.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({}) == 0.0
