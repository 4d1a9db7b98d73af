"""Plan, board, rep and team documents: what parses, and the reason given for what doesn't."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.config import Board, Plan, Rep, Team, is_kpi_name

CONTRACT_PLAN: dict[str, Any] = {
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
        {
            "tier_id": "target",
            "name": "Target",
            "threshold": 1.0,
            "rate": 0.08,
            "reward": "Shout-out at all-hands",
        },
        {
            "tier_id": "accel",
            "name": "Accelerator",
            "threshold": 1.25,
            "rate": 0.12,
            "reward": "1 extra day of PTO",
        },
    ],
    "payout_cap": None,
    "gate": {"metric": "retention_rate", "min": 0.8},
}

CONTRACT_BOARD: dict[str, Any] = {
    "board_id": "floor",
    "title": "Revenue this month",
    "metric": "revenue",
    "period": "month",
    "scope": {"teams": []},
    "size": 10,
    "plan_id": None,
}

WINDOW = {"starts_at": "2026-11-01T00:00:00+00:00", "ends_at": "2026-11-08T00:00:00+00:00"}


def plan_with(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(CONTRACT_PLAN)
    document.update(changes)
    return document


def tier(tier_id: str, threshold: float, rate: float = 0.05) -> dict[str, Any]:
    return {"tier_id": tier_id, "name": tier_id.title(), "threshold": threshold, "rate": rate, "reward": None}


def reasons(document: dict[str, Any], model: type[Plan] | type[Board] = Plan) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(json.dumps(document))
    return [(error["loc"], error["msg"]) for error in caught.value.errors()]


def test_the_contract_example_plan_parses_with_exact_money() -> None:
    plan = Plan.model_validate_json(json.dumps(CONTRACT_PLAN))

    assert plan.quota == Decimal(100000)
    assert plan.quota_overrides == {"rep-7": Decimal(120000)}
    assert [t.rate for t in plan.tiers] == [Decimal("0.05"), Decimal("0.08"), Decimal("0.12")]
    assert plan.gate is not None and plan.gate.metric == "retention_rate"
    assert plan.currency == "USD"


def test_a_plan_reads_back_as_the_json_it_was_written_as() -> None:
    plan = Plan.model_validate(CONTRACT_PLAN)

    defaults = {"currency": "USD", "credit_roles": ["primary", "overlay"]}
    assert json.loads(plan.model_dump_json()) == {**CONTRACT_PLAN, **defaults}


def test_a_plan_counts_the_credit_roles_it_names_each_once_and_at_least_one() -> None:
    plan = Plan.model_validate({**CONTRACT_PLAN, "credit_roles": ["overlay", "primary", "overlay"]})
    assert plan.credit_roles == ["primary", "overlay"]
    assert Plan.model_validate({**CONTRACT_PLAN, "credit_roles": ["primary"]}).credit_roles == ["primary"]
    assert reasons(plan_with(credit_roles=[])) == [
        (("credit_roles",), "credit_roles must name at least one of primary, overlay")
    ]
    [(loc, _)] = reasons(plan_with(credit_roles=["owner"]))
    assert loc == ("credit_roles", 0)


def test_a_plan_without_tiers_is_rejected() -> None:
    assert reasons(plan_with(tiers=[])) == [(("tiers",), "a plan needs at least one tier")]


def test_tier_thresholds_must_be_strictly_ascending() -> None:
    [(loc, message)] = reasons(plan_with(tiers=[tier("base", 0.0), tier("target", 1.0), tier("accel", 1.0)]))

    assert loc == ("tiers",)
    assert message.startswith("tier thresholds must be strictly ascending: 'accel' (1.0) does not come after")


def test_descending_thresholds_are_rejected() -> None:
    [(loc, message)] = reasons(plan_with(tiers=[tier("target", 1.0), tier("base", 0.5)]))

    assert loc == ("tiers",)
    assert "strictly ascending" in message


def test_the_first_threshold_must_not_be_negative() -> None:
    assert reasons(plan_with(tiers=[tier("base", -0.5), tier("target", 1.0)])) == [
        (("tiers",), "the first tier's threshold must not be negative, got -0.5")
    ]


def test_tier_ids_must_be_unique_within_a_plan() -> None:
    assert reasons(plan_with(tiers=[tier("base", 0.0), tier("base", 1.0)])) == [
        (("tiers",), "duplicate tier_id 'base'")
    ]


@pytest.mark.parametrize("quota", [0, -100])
def test_quota_must_be_positive(quota: int) -> None:
    assert reasons(plan_with(quota=quota)) == [(("quota",), f"quota must be greater than 0, got {quota}")]


def test_a_quota_override_must_be_positive() -> None:
    assert reasons(plan_with(quota_overrides={"rep-7": 0})) == [
        (("quota_overrides",), "quota override for 'rep-7' must be greater than 0, got 0")
    ]


def test_an_unknown_metric_is_rejected() -> None:
    [(loc, message)] = reasons(plan_with(metric="revenu"))

    assert loc == ("metric",)
    assert message.startswith("unknown metric 'revenu': expected one of")


def test_an_activity_kind_is_a_metric_but_a_malformed_kind_is_not() -> None:
    assert Plan.model_validate(plan_with(metric="activities.call")).metric == "activities.call"
    [(loc, message)] = reasons(plan_with(metric="activities.Call"))

    assert loc == ("metric",)
    assert message.startswith("unknown metric 'activities.Call'")


def test_an_unknown_period_is_rejected() -> None:
    [(loc, message)] = reasons(plan_with(period="day"))

    assert loc == ("period",)
    assert message == "Input should be 'week', 'month', 'quarter' or 'year'"


def test_effective_to_must_not_be_before_effective_from() -> None:
    assert reasons(plan_with(effective_from="2026-04-01", effective_to="2026-03-31")) == [
        (("effective_to",), "effective_to 2026-03-31 is before effective_from 2026-04-01")
    ]


def test_a_plan_may_be_effective_for_a_single_day() -> None:
    plan = Plan.model_validate(plan_with(effective_from="2026-04-01", effective_to="2026-04-01"))

    assert plan.effective_to == plan.effective_from


def test_a_gate_on_an_unknown_metric_is_rejected() -> None:
    [(loc, message)] = reasons(plan_with(gate={"metric": "nps", "min": 0.8}))

    assert loc == ("gate", "metric")
    assert message.startswith("unknown metric 'nps'")


def test_a_tier_rate_must_not_be_negative() -> None:
    assert reasons(plan_with(tiers=[tier("base", 0.0, rate=-0.01)])) == [
        (("tiers", 0, "rate"), "rate must not be negative, got -0.01")
    ]


def test_a_payout_cap_must_not_be_negative() -> None:
    assert reasons(plan_with(payout_cap=-1)) == [(("payout_cap",), "payout_cap must not be negative, got -1")]


def test_unknown_plan_fields_are_rejected() -> None:
    [(loc, message)] = reasons(plan_with(quotas=5))

    assert loc == ("quotas",)
    assert message == "Extra inputs are not permitted"


def test_every_reason_is_reported_at_once() -> None:
    errors = reasons(plan_with(quota=0, metric="nope", tiers=[]))

    assert {loc for loc, _ in errors} == {("quota",), ("metric",), ("tiers",)}


def test_the_contract_example_board_parses_as_a_leaderboard() -> None:
    board = Board.model_validate_json(json.dumps(CONTRACT_BOARD))

    assert board.period == "month"
    assert board.window is None
    assert not board.is_contest


def test_a_board_with_a_window_instead_of_a_period_is_a_contest() -> None:
    document = {**CONTRACT_BOARD, "period": None, "window": WINDOW}

    board = Board.model_validate_json(json.dumps(document))

    assert board.is_contest
    assert board.window is not None and board.window.ends_at > board.window.starts_at


@pytest.mark.parametrize(
    "document",
    [
        {**CONTRACT_BOARD, "window": WINDOW},
        {key: value for key, value in CONTRACT_BOARD.items() if key != "period"},
    ],
    ids=["both", "neither"],
)
def test_a_board_has_exactly_one_of_period_or_window(document: dict[str, Any]) -> None:
    [(_, message)] = reasons(document, Board)

    assert message == "a board needs exactly one of period (a leaderboard) or window (a contest)"


def test_a_board_period_may_be_a_day() -> None:
    assert Board.model_validate({**CONTRACT_BOARD, "period": "day"}).period == "day"


def test_a_contest_window_must_end_after_it_starts() -> None:
    window = {"starts_at": WINDOW["ends_at"], "ends_at": WINDOW["starts_at"]}

    [(loc, message)] = reasons({**CONTRACT_BOARD, "period": None, "window": window}, Board)

    assert loc == ("window",)
    assert message == "window.ends_at must be after window.starts_at"


def test_a_contest_window_needs_offsets() -> None:
    window = {"starts_at": "2026-11-01T00:00:00", "ends_at": "2026-11-08T00:00:00"}

    errors = reasons({**CONTRACT_BOARD, "period": None, "window": window}, Board)

    assert {loc for loc, _ in errors} == {("window", "starts_at"), ("window", "ends_at")}


@pytest.mark.parametrize("size", [0, 101])
def test_board_size_is_between_1_and_100(size: int) -> None:
    [(loc, _)] = reasons({**CONTRACT_BOARD, "size": size}, Board)

    assert loc == ("size",)


def test_board_size_defaults_to_10() -> None:
    document = {key: value for key, value in CONTRACT_BOARD.items() if key != "size"}

    assert Board.model_validate(document).size == 10


def test_a_rep_timezone_must_be_an_iana_name() -> None:
    assert Rep(rep_id="rep-1", name="Ada", timezone="Europe/Paris").timezone == "Europe/Paris"
    with pytest.raises(ValidationError, match="unknown IANA timezone 'Mars/Olympus'"):
        Rep(rep_id="rep-1", name="Ada", timezone="Mars/Olympus")


def test_a_rep_has_no_team_email_or_timezone_by_default() -> None:
    rep = Rep(rep_id="rep-1", name="Ada")

    assert (rep.team_id, rep.email, rep.timezone) == (None, None, None)


@pytest.mark.parametrize("rep_id", ["", "x" * 129, "rep\n1", "rep\x001"])
def test_ids_are_1_to_128_characters_without_control_characters(rep_id: str) -> None:
    with pytest.raises(ValidationError):
        Rep(rep_id=rep_id, name="Ada")


def test_a_128_character_id_is_accepted() -> None:
    assert Team(team_id="t" * 128, name="East").team_id == "t" * 128


def test_the_kpi_names_are_those_of_the_contract() -> None:
    assert all(is_kpi_name(name) for name in ["revenue", "win_rate", "retention_rate", "activities.demo"])
    assert not any(is_kpi_name(name) for name in ["activities.", "activities.1call", "Revenue", "quota"])
