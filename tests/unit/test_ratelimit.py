"""The rate limiter on its own, on a clock the test moves: bursts, refills, costs, and the 429 it answers."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.common.buckets import Bucket
from services.common.problems import Problem
from services.common.ratelimit import Limit, RateLimits


class StepClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def granted(bucket: Bucket, identity: str, times: int, cost: float = 1.0) -> int:
    return sum(1 for _ in range(times) if bucket.acquire(identity, cost) == 0.0)


def test_a_full_bucket_grants_its_burst_at_once_then_one_per_interval() -> None:
    clock = StepClock()
    bucket = Bucket(rate=2.0, burst=5, clock=clock)
    assert granted(bucket, "k", 8) == 5
    assert bucket.acquire("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.acquire("k") == 0.0
    assert bucket.acquire("k") == pytest.approx(0.5)


def test_refused_attempts_do_not_push_the_window_further_out() -> None:
    clock = StepClock()
    bucket = Bucket(rate=1.0, burst=1, clock=clock)
    assert bucket.acquire("k") == 0.0
    for step in range(9):
        clock.now += 0.1
        assert bucket.acquire("k") == pytest.approx(1.0 - 0.1 * (step + 1))
    clock.now += 0.1
    assert bucket.acquire("k") == 0.0


def test_identities_have_their_own_buckets() -> None:
    clock = StepClock()
    bucket = Bucket(rate=1.0, burst=2, clock=clock)
    assert granted(bucket, "a", 3) == 2
    assert granted(bucket, "b", 3) == 2


def test_a_cost_spends_several_units_and_waits_for_all_of_them() -> None:
    clock = StepClock()
    bucket = Bucket(rate=10.0, burst=20, clock=clock)
    assert granted(bucket, "k", 2, cost=8) == 2
    assert bucket.acquire("k", cost=8) == pytest.approx(0.4)  # 4 units left, 4 more come in 0.4 s
    assert bucket.wait("k", cost=4) == 0.0
    assert bucket.wait("k", cost=4) == 0.0  # waiting spends nothing
    clock.now += 0.4
    assert bucket.acquire("k", cost=8) == 0.0


def test_identities_with_a_full_bucket_are_forgotten_so_memory_stays_bounded() -> None:
    clock = StepClock()
    bucket = Bucket(rate=1.0, burst=1, clock=clock, max_entries=3)
    for n in range(50):
        assert bucket.acquire(f"client-{n}") == 0.0
        clock.now += 0.5
        assert len(bucket._tat) <= 3


def limits(clock: StepClock, registry: CollectorRegistry, rate: float = 1.0, burst: int = 2) -> RateLimits:
    limit = Limit("ingest_requests", "SALESPULSE_RATE_INGEST_REQUESTS", rate, burst, "requests", "API key",
                  "send events in batches")
    return RateLimits({"requests": limit}, registry, clock=clock)


def test_over_the_limit_is_a_429_naming_the_limit_its_setting_and_when_to_retry() -> None:
    clock, registry = StepClock(), CollectorRegistry()
    guard = limits(clock, registry, rate=0.25, burst=2)
    guard.check("requests", "key-1")
    guard.check("requests", "key-1")
    with pytest.raises(Problem) as refused:
        guard.check("requests", "key-1")
    problem = refused.value
    assert problem.status == 429
    assert problem.headers == {"Retry-After": "4"}
    assert "SALESPULSE_RATE_INGEST_REQUESTS" in problem.detail and "per API key" in problem.detail
    assert "send events in batches" in problem.detail
    assert registry.get_sample_value("salespulse_rate_limited_total", {"limit": "ingest_requests"}) == 1.0
    guard.check("requests", "key-2")  # another key is not affected


def test_retry_after_is_a_whole_second_at_least() -> None:
    clock, registry = StepClock(), CollectorRegistry()
    guard = limits(clock, registry, rate=100.0, burst=1)
    guard.check("requests", "k")
    with pytest.raises(Problem) as refused:
        guard.check("requests", "k")
    assert refused.value.headers == {"Retry-After": "1"}


def test_a_request_larger_than_the_burst_is_413_since_waiting_would_never_help() -> None:
    clock, registry = StepClock(), CollectorRegistry()
    guard = limits(clock, registry, rate=1.0, burst=5)
    with pytest.raises(Problem) as refused:
        guard.check("requests", "k", cost=6)
    assert refused.value.status == 413 and "SALESPULSE_RATE_INGEST_REQUESTS_BURST" in refused.value.detail
    guard.check("requests", "k", cost=5)


def test_waiting_on_an_exhausted_budget_is_refused_without_spending() -> None:
    clock, registry = StepClock(), CollectorRegistry()
    guard = limits(clock, registry, rate=1.0, burst=1)
    guard.refuse_while_exhausted("requests", "k")
    guard.check("requests", "k")
    with pytest.raises(Problem):
        guard.refuse_while_exhausted("requests", "k")
    clock.now += 1.0
    guard.refuse_while_exhausted("requests", "k")
    guard.check("requests", "k")


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    clock, registry = StepClock(), CollectorRegistry()
    guard = limits(clock, registry, rate=0.0, burst=1)
    for _ in range(1000):
        guard.check("requests", "k")
    assert registry.get_sample_value("salespulse_rate_limited_total", {"limit": "ingest_requests"}) is None


def test_a_bucket_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError):
        Bucket(rate=0.0, burst=1)
    with pytest.raises(ValueError):
        Bucket(rate=1.0, burst=0)
