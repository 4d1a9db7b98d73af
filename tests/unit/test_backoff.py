"""The one back-off: exponential from `first`, capped at `most`, reset after a success, with optional jitter; and
the retry decisions of our HTTP clients built on it."""

from __future__ import annotations

import random

import httpx
import pytest

from services.common.backoff import Backoff, retry_after_seconds
from services.common.http_retry import HttpRetries, OutOfRetries


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


def test_http_retries_keep_an_answer_wait_at_least_retry_after_note_now_and_then_and_give_up() -> None:
    now = [100.0]
    retries = HttpRetries(Backoff(first=0.5, most=4.0), give_up_after=30.0, note_every=10.0, clock=lambda: now[0])
    busy = httpx.Response(503, headers={"Retry-After": "3"}, json={"detail": "starting"})
    assert retries.after(httpx.Response(202)) is None
    assert retries.after(httpx.Response(422, json={"detail": "bad"})) is None  # an answer to keep, not retry
    first = retries.after(busy)
    assert first is not None and (first.wait, first.note) == (3.0, True) and first.reason == "503 starting"
    now[0] += 5
    refused = retries.after(httpx.ConnectError("refused"))
    assert refused is not None and (refused.wait, refused.note) == (1.0, False)
    now[0] += 6
    assert (later := retries.after(busy)) is not None and later.note  # 11 s after the first note
    now[0] += 20
    with pytest.raises(OutOfRetries, match=r"no answer after 31 s \(503 starting\)"):
        retries.after(busy)
