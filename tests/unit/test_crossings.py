"""Tier crossings: each tier above 0 is reached once per plan-period, lowest first, and its first time kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.config import Plan
from services.scoring.domain.crossings import TiersReached, utc_iso
from services.scoring.domain.progress import compute_progress

AT = datetime(2026, 3, 15, 12, tzinfo=UTC)
TIERS = [("base", 0.0), ("target", 1.0), ("accel", 1.25), ("club", 1.5)]


def test_several_tiers_crossed_at_once_come_lowest_first_whatever_the_plan_order() -> None:
    reached = TiersReached()
    shuffled = [("club", 1.5), ("target", 1.0), ("base", 0.0), ("accel", 1.25)]
    assert reached.record("ae", "FY2026-Q1", shuffled, Decimal("1.6"), AT) == ["target", "accel", "club"]


def test_a_tier_is_crossed_once_however_often_attainment_drops_below_it_and_rises_again() -> None:
    reached = TiersReached()
    crossings = [
        reached.record("ae", "FY2026-Q1", TIERS, Decimal(level), AT + timedelta(hours=hour))
        for hour, level in enumerate(["0.5", "1.0", "0.7", "1.1", "0.9", "1.3", "1.0", "1.3"])
    ]
    assert crossings == [[], ["target"], [], [], [], ["accel"], [], []]


def test_a_tier_with_threshold_zero_is_never_a_crossing() -> None:
    reached = TiersReached()
    assert reached.record("ae", "FY2026-Q1", [("base", 0.0), ("floor", 0)], Decimal("0.0"), AT) == []
    assert reached.record("ae", "FY2026-Q1", [("base", 0.0), ("floor", 0)], Decimal("3"), AT) == []
    assert reached.reached_for("ae", "FY2026-Q1") == {}
    assert not reached


def test_the_first_reached_time_is_kept() -> None:
    reached = TiersReached()
    reached.record("ae", "FY2026-Q1", TIERS, Decimal("1.0"), AT)
    reached.record("ae", "FY2026-Q1", TIERS, Decimal("0.2"), AT + timedelta(days=1))
    reached.record("ae", "FY2026-Q1", TIERS, Decimal("1.3"), AT + timedelta(days=2))
    assert reached.reached_for("ae", "FY2026-Q1") == {
        "target": "2026-03-15T12:00:00Z",
        "accel": "2026-03-17T12:00:00Z",
    }


def test_a_threshold_is_reached_exactly_at_its_decimal_value() -> None:
    reached = TiersReached()
    assert reached.record("ae", "FY2026-Q1", [("stretch", 1.1)], Decimal("1.0999999"), AT) == []
    assert reached.record("ae", "FY2026-Q1", [("stretch", 1.1)], Decimal("1.1"), AT) == ["stretch"]
    # 1.15 as a binary float is a hair below 1.15; as written it reaches the 1.15 tier.
    assert TiersReached().record("ae", "FY2026-Q1", [("stretch", 1.15)], 1.15, AT) == ["stretch"]


def test_each_plan_and_period_reaches_its_tiers_independently() -> None:
    reached = TiersReached()
    assert reached.record("ae", "FY2026-Q1", TIERS, 1, AT) == ["target"]
    assert reached.record("ae", "FY2026-Q2", TIERS, 1, AT) == ["target"]
    assert reached.record("sdr", "FY2026-Q1", TIERS, 1, AT) == ["target"]
    assert reached.has_reached("ae", "FY2026-Q2", "target") and not reached.has_reached("ae", "FY2026-Q2", "accel")


def test_reached_for_is_a_copy() -> None:
    reached = TiersReached()
    reached.record("ae", "FY2026-Q1", TIERS, 1, AT)
    reached.reached_for("ae", "FY2026-Q1").clear()
    assert reached.reached_for("ae", "FY2026-Q1") == {"target": "2026-03-15T12:00:00Z"}


def test_crossings_follow_the_tiers_reached_of_progress() -> None:
    plan = Plan.model_validate(
        {
            "plan_id": "ae-revenue", "name": "AE", "metric": "revenue", "period": "quarter",
            "effective_from": "2026-01-01", "participants": {"teams": [], "reps": []}, "quota": 100000,
            "tiers": [
                {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05},
                {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.08},
                {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25, "rate": 0.12},
            ],
        }
    )  # fmt: skip
    progress = compute_progress(
        plan_id=plan.plan_id, period_key="FY2026-Q1", metric=plan.metric, value=Decimal("130000"),
        quota=plan.quota, tiers=plan.tiers, cap=None, gate_value=None, gate_min=None, elapsed=0.5,
    )  # fmt: skip
    tiers = [(tier.tier_id, tier.threshold) for tier in plan.tiers]
    crossed = TiersReached().record(plan.plan_id, progress.period_key, tiers, progress.attainment, AT)
    assert crossed == [tier_id for tier_id in progress.tiers_reached if tier_id != "base"] == ["target", "accel"]


def test_pruning_forgets_the_plan_periods_not_kept() -> None:
    reached = TiersReached()
    for plan_id, key in [("ae", "FY2025-Q4"), ("ae", "FY2026-Q1"), ("old", "FY2025-Q1")]:
        reached.record(plan_id, key, TIERS, 2, AT)
    assert reached.prune(lambda plan_id, key: key >= "FY2026") == 2
    assert reached.to_dict() == {
        "ae": {"FY2026-Q1": {"target": "2026-03-15T12:00:00Z", "accel": "2026-03-15T12:00:00Z",
                             "club": "2026-03-15T12:00:00Z"}}
    }  # fmt: skip
    assert reached.record("ae", "FY2025-Q4", TIERS, 1, AT) == ["target"]  # forgotten: only for periods long over


def test_tiers_reached_round_trip_through_json() -> None:
    reached = TiersReached()
    reached.record("ae", "FY2026-Q1", TIERS, Decimal("1.3"), AT)
    reached.record("sdr", "2026-03", [("target", 1)], 1, AT + timedelta(microseconds=250))
    restored = TiersReached.from_dict(json.loads(json.dumps(reached.to_dict())))
    assert restored == reached
    assert restored.reached_for("sdr", "2026-03") == {"target": "2026-03-15T12:00:00.000250Z"}
    assert restored.record("ae", "FY2026-Q1", TIERS, Decimal("1.3"), AT) == []


def test_from_dict_rejects_something_that_is_not_tiers_reached() -> None:
    with pytest.raises(ValueError, match="not stored tiers reached"):
        TiersReached.from_dict({"ae": ["target"]})


def test_first_reached_times_are_utc_with_a_z() -> None:
    assert utc_iso(datetime(2026, 3, 15, 13, 30, tzinfo=timezone(timedelta(hours=1)))) == "2026-03-15T12:30:00Z"
    with pytest.raises(ValueError, match="no UTC offset"):
        utc_iso(datetime(2026, 3, 15, 12))


thresholds = st.lists(st.decimals(min_value=0, max_value=3, places=2).map(float), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    levels=st.lists(st.decimals(min_value=0, max_value=4, places=3), max_size=20),
    thresholds=thresholds,
    restarts=st.sets(st.integers(min_value=0, max_value=19)),
)
def test_every_tier_up_to_the_best_attainment_is_crossed_exactly_once_in_ascending_order(
    levels: list[Decimal], thresholds: list[float], restarts: set[int]
) -> None:
    tiers = [(f"t{i}", threshold) for i, threshold in enumerate(thresholds)]
    reached = TiersReached()
    emitted: list[str] = []
    for step, level in enumerate(levels):
        if step in restarts:  # a restart restores the state from storage
            reached = TiersReached.from_dict(json.loads(json.dumps(reached.to_dict())))
        crossed = reached.record("ae", "FY2026-Q1", tiers, level, AT + timedelta(minutes=step))
        by_id = dict(tiers)
        assert [Decimal(repr(by_id[t])) for t in crossed] == sorted(Decimal(repr(by_id[t])) for t in crossed)
        emitted += crossed
    best = max(levels, default=Decimal(0))
    expected = {tier_id for tier_id, threshold in tiers if 0 < Decimal(repr(threshold)) <= best}
    assert sorted(emitted) == sorted(expected)  # each once
    assert set(reached.reached_for("ae", "FY2026-Q1")) == expected
