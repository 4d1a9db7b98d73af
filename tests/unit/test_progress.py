"""A rep's progress in a plan-period, and the plan rules behind it: tiers, dating, quotas, participants."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from schemas.config import Participants, Plan, Tier
from services.scoring.domain.plans import (
    applies_to_period,
    current_tier,
    gate_open,
    is_participant,
    next_tier,
    quota_for,
    tiers_reached,
)
from services.scoring.domain.progress import Progress, compute_progress

PLAN = Plan.model_validate(
    {
        "plan_id": "ae-revenue",
        "name": "AE revenue accelerator",
        "metric": "revenue",
        "period": "quarter",
        "effective_from": "2026-01-01",
        "effective_to": None,
        "participants": {"teams": ["east"], "reps": []},
        "quota": 100000,
        "quota_overrides": {"rep-7": 120000},
        "tiers": [
            {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05, "reward": None},
            {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.08, "reward": "Shout-out"},
            {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25, "rate": 0.12, "reward": "PTO day"},
        ],
        "payout_cap": None,
        "gate": {"metric": "retention_rate", "min": 0.8},
    }
)
GATED_TIERS = [
    Tier(tier_id="target", name="Target", threshold=1.0, rate=Decimal("0.08"), reward="Shout-out"),
    Tier(tier_id="stretch", name="Stretch", threshold=1.1, rate=Decimal("0.10"), reward=None),
]


def progress(value: Decimal | None, **overrides: Any) -> Progress:
    arguments: dict[str, Any] = {
        "plan_id": PLAN.plan_id,
        "period_key": "FY2026-Q1",
        "metric": PLAN.metric,
        "value": value,
        "quota": PLAN.quota,
        "tiers": PLAN.tiers,
        "cap": PLAN.payout_cap,
        "gate_value": Decimal("0.9"),
        "gate_min": 0.8,
        "elapsed": 0.5,
    }
    arguments.update(overrides)
    return compute_progress(**arguments)


def test_attainment_is_value_over_quota() -> None:
    assert progress(Decimal(80000)).attainment == Decimal("0.8")


def test_the_current_tier_is_the_highest_reached_and_the_next_is_the_one_above() -> None:
    entry = progress(Decimal(110000)).to_dict()

    assert entry["tier"] == {"tier_id": "target", "name": "Target", "threshold": 1.0}
    assert entry["next_tier"] == {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25}
    assert entry["gap_to_next"] == 15000.0


def test_reaching_a_threshold_exactly_reaches_the_tier() -> None:
    assert progress(Decimal(125000)).tiers_reached == ("base", "target", "accel")
    assert current_tier(Decimal("1.1"), GATED_TIERS) == GATED_TIERS[1]


def test_below_the_first_threshold_there_is_no_tier_and_the_first_is_next() -> None:
    entry = progress(Decimal(50000), tiers=GATED_TIERS).to_dict()

    assert entry["tier"] is None
    assert entry["next_tier"] == {"tier_id": "target", "name": "Target", "threshold": 1.0}
    assert entry["gap_to_next"] == 50000.0
    assert entry["payout"] == 0.0
    assert entry["rewards"] == []


def test_at_the_top_tier_there_is_no_next_tier_and_no_gap() -> None:
    entry = progress(Decimal(200000)).to_dict()

    assert entry["tier"] == {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25}
    assert entry["next_tier"] is None
    assert entry["gap_to_next"] is None


def test_rewards_list_the_rewards_of_every_tier_reached_lowest_first() -> None:
    assert progress(Decimal(130000)).rewards == ("Shout-out", "PTO day")
    assert progress(Decimal(100000)).rewards == ("Shout-out",)
    assert progress(Decimal(99999)).rewards == ()


def test_a_null_value_counts_as_zero() -> None:
    entry = progress(None)

    assert entry.value == Decimal(0)
    assert entry.tier is not None and entry.tier.tier_id == "base"
    assert entry.payout == Decimal("0.00")


def test_pace_and_forecast_compare_the_value_with_the_share_of_the_period_gone() -> None:
    entry = progress(Decimal(30000), elapsed=0.25)

    assert entry.pace == Decimal("1.2")
    assert entry.forecast_attainment == Decimal("1.2")


def test_pace_and_forecast_are_null_before_one_percent_of_the_period() -> None:
    entry = progress(Decimal(30000), elapsed=0.009).to_dict()

    assert entry["pace"] is None
    assert entry["forecast_attainment"] is None


def test_pace_and_forecast_start_at_one_percent_of_the_period() -> None:
    entry = progress(Decimal(1000), elapsed=0.01)

    assert entry.pace == Decimal(1)
    assert entry.forecast_attainment == Decimal(1)


def test_a_finished_period_forecasts_its_attainment() -> None:
    entry = progress(Decimal(90000), elapsed=1.0)

    assert entry.forecast_attainment == entry.attainment == Decimal("0.9")


def test_a_closed_gate_lowers_the_payout_but_not_the_tier() -> None:
    open_gate = progress(Decimal(130000))
    closed_gate = progress(Decimal(130000), gate_value=Decimal("0.7"))

    assert (open_gate.payout, closed_gate.payout) == (Decimal("7600.00"), Decimal("7400.00"))
    assert closed_gate.tier == open_gate.tier
    assert closed_gate.tiers_reached == open_gate.tiers_reached


def test_a_null_gate_metric_keeps_the_gate_closed() -> None:
    assert progress(Decimal(130000), gate_value=None).payout == Decimal("7400.00")
    assert not gate_open(None, 0.8)


def test_a_gate_exactly_at_its_minimum_is_open() -> None:
    assert gate_open(Decimal("0.8"), 0.8)
    assert not gate_open(Decimal("0.7999"), 0.8)


def test_a_plan_without_a_gate_always_pays_accelerators() -> None:
    assert progress(Decimal(130000), gate_value=None, gate_min=None).payout == Decimal("7600.00")


def test_the_payout_cap_applies_to_progress() -> None:
    assert progress(Decimal(130000), cap=Decimal(5000)).payout == Decimal("5000.00")


def test_the_progress_entry_has_the_contract_shape() -> None:
    entry = progress(Decimal("110000.004"), elapsed=1 / 3).to_dict()

    assert list(entry) == [
        "plan_id", "period_key", "metric", "value", "quota", "attainment", "tier", "next_tier",
        "gap_to_next", "payout", "rewards", "pace", "forecast_attainment",
    ]  # fmt: skip
    assert entry["value"] == 110000.0
    assert entry["quota"] == 100000.0
    assert entry["attainment"] == 1.1
    assert entry["payout"] == 5800.0
    assert entry["pace"] == 3.3
    assert entry["forecast_attainment"] == 3.3


def test_count_metrics_are_reported_to_six_places_not_cents() -> None:
    entry = progress(Decimal(1) / Decimal(3), metric="deals_won", quota=Decimal(10)).to_dict()

    assert entry["value"] == 0.333333


@pytest.mark.parametrize(
    ("period_start", "applies"),
    [
        (date(2025, 10, 1), False),  # the quarter before the plan starts
        (date(2026, 1, 1), True),  # starts on effective_from
        (date(2026, 4, 1), True),
        (date(2026, 6, 30), True),  # effective_to is inclusive
        (date(2026, 7, 1), False),  # the quarter after the plan ends
    ],
)
def test_a_plan_applies_to_periods_starting_within_its_effective_dates(period_start: date, applies: bool) -> None:
    assert applies_to_period(date(2026, 1, 1), date(2026, 6, 30), period_start) is applies


def test_a_plan_starting_mid_quarter_applies_from_the_next_quarter() -> None:
    effective_from = date(2026, 2, 15)

    assert not applies_to_period(effective_from, None, date(2026, 1, 1))
    assert applies_to_period(effective_from, None, date(2026, 4, 1))


def test_a_plan_ending_mid_quarter_still_covers_the_quarter_it_ends_in() -> None:
    assert applies_to_period(date(2026, 1, 1), date(2026, 5, 15), date(2026, 4, 1))


def test_a_plan_without_effective_to_never_ends() -> None:
    assert applies_to_period(date(2026, 1, 1), None, date(2099, 1, 1))


def test_a_quota_override_replaces_the_plan_quota_for_that_rep_only() -> None:
    assert quota_for("rep-7", PLAN.quota, PLAN.quota_overrides) == Decimal(120000)
    assert quota_for("rep-8", PLAN.quota, PLAN.quota_overrides) == Decimal(100000)


def test_attainment_and_tier_use_the_overridden_quota() -> None:
    entry = progress(Decimal(110000), quota=quota_for("rep-7", PLAN.quota, PLAN.quota_overrides))

    assert entry.attainment < 1
    assert entry.tier is not None and entry.tier.tier_id == "base"
    assert entry.gap_to_next == Decimal(10000)


def test_a_plan_covers_the_members_of_its_teams() -> None:
    assert is_participant("rep-1", "east", PLAN.participants)
    assert not is_participant("rep-2", "west", PLAN.participants)
    assert not is_participant("rep-3", None, PLAN.participants)


def test_a_plan_covers_the_reps_it_lists_whatever_their_team() -> None:
    participants = Participants(teams=["east"], reps=["rep-9"])

    assert is_participant("rep-9", "west", participants)
    assert is_participant("rep-9", None, participants)
    assert not is_participant("rep-10", "west", participants)


def test_a_plan_without_participants_covers_every_rep() -> None:
    assert is_participant("anyone", None, Participants())


def test_tier_helpers_agree_on_an_unsorted_table() -> None:
    tiers = list(reversed(PLAN.tiers))

    assert [t.tier_id for t in tiers_reached(Decimal("1.1"), tiers)] == ["base", "target"]
    assert next_tier(Decimal("1.1"), tiers) == PLAN.tiers[2]
