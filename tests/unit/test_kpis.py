"""KPI totals (CONTRACT §3): sums, rates recomputed from sums, rounding in reports, storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.credits import Credit
from services.scoring.domain.kpis import KPI_NAMES, KpiTotals, is_kpi_name

AT = datetime(2026, 11, 29, 12, tzinfo=UTC)


def totals(**sums: str | int) -> KpiTotals:
    return KpiTotals(**{name: Decimal(value) for name, value in sums.items()})  # type: ignore[arg-type]


def test_every_kpi_is_reported_even_when_nothing_happened() -> None:
    report = KpiTotals().report()
    assert list(report) == list(KPI_NAMES)
    assert report == {
        "revenue": 0.0,
        "deals_won": 0.0,
        "deals_lost": 0.0,
        "win_rate": None,
        "avg_deal_size": None,
        "renewals_won": 0.0,
        "renewals_lost": 0.0,
        "retention_rate": None,
        "activities": 0,
    }


@pytest.mark.parametrize("rate", ["win_rate", "avg_deal_size", "retention_rate"])
def test_rates_are_null_at_zero_over_zero(rate: str) -> None:
    assert KpiTotals().value(rate) is None


def test_rates_are_computed_from_the_sums() -> None:
    kpis = totals(revenue="3000.00", deals_won=3, deals_lost=1, renewals_won=1, renewals_lost=3)
    assert kpis.value("win_rate") == Decimal("0.75")
    assert kpis.value("avg_deal_size") == Decimal(1000)
    assert kpis.value("retention_rate") == Decimal("0.25")


def test_a_rep_with_only_losses_has_a_zero_win_rate_not_null() -> None:
    assert totals(deals_lost=2).value("win_rate") == 0
    assert totals(deals_lost=2).value("avg_deal_size") is None


def test_team_rates_are_recomputed_from_the_summed_totals_never_averaged() -> None:
    ana = totals(revenue="1000.00", deals_won=1, renewals_won=1)
    ben = totals(revenue="3000.00", deals_won=3, deals_lost=4, renewals_lost=3)
    team = KpiTotals().merged([ana, ben])
    # The average of the reps' win rates would be (1.0 + 3/7) / 2 ≈ 0.714; the team's is 4/8.
    assert team.value("win_rate") == Decimal("0.5")
    assert team.value("avg_deal_size") == Decimal(1000)
    assert team.value("retention_rate") == Decimal("0.25")
    assert team == ana + ben


def test_merging_leaves_the_members_untouched() -> None:
    ana = totals(revenue="10.00", deals_won=1)
    ana.add_activity("call")
    before = ana.copy()
    team = ana + ana
    team.add_activity("call")
    assert ana == before
    assert team.activities_by_kind == {"call": 3}


def test_report_rounds_money_to_cents_and_counts_and_rates_to_six_decimals() -> None:
    kpis = totals(revenue="100.00", deals_won="0.333333333333", deals_lost="0.666666666667")
    report = kpis.report()
    assert report["revenue"] == 100.0
    assert report["deals_won"] == 0.333333
    assert report["deals_lost"] == 0.666667
    assert report["win_rate"] == 0.333333
    assert report["avg_deal_size"] == 300.0  # 100 / 0.333333333333 = 300.0000000003


def test_money_rounds_half_up_to_the_cent() -> None:
    assert totals(revenue="0.01", deals_won=2).report()["avg_deal_size"] == 0.01  # 0.005
    assert totals(revenue="100.00", deals_won=3).report()["avg_deal_size"] == 33.33


def test_report_never_shows_negative_zero() -> None:
    kpis = totals(revenue="-0.001")
    assert str(kpis.report()["revenue"]) == "0.0"


def test_report_is_json_serialisable_and_includes_each_activity_kind() -> None:
    kpis = KpiTotals()
    kpis.add_activity("call", 2)
    kpis.add_activity("demo")
    report = kpis.report()
    assert report["activities"] == 3
    assert report["activities.call"] == 2 and report["activities.demo"] == 1
    assert json.loads(json.dumps(report)) == report


def test_value_reads_any_kpi_including_activity_kinds() -> None:
    kpis = KpiTotals()
    kpis.add_activity("meeting", 4)
    assert kpis.value("activities") == 4
    assert kpis.value("activities.meeting") == 4
    assert kpis.value("activities.email") == 0


@pytest.mark.parametrize("metric", ["quota", "activities.", "activities.Call", "Revenue", "win rate"])
def test_value_of_an_unknown_kpi_is_an_error(metric: str) -> None:
    with pytest.raises(ValueError, match="unknown KPI"):
        KpiTotals().value(metric)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        *[(name, True) for name in KPI_NAMES],
        ("activities.call", True),
        ("activities.demo_booked2", True),
        ("activities." + "a" * 32, True),
        ("activities." + "a" * 33, False),
        ("activities.2call", False),
        ("activities.call\n", False),
        ("activities.Call", False),
        ("activities", True),
        ("activities.", False),
        ("payout", False),
    ],
)
def test_is_kpi_name_accepts_contract_kpis_and_valid_activity_kinds(name: str, valid: bool) -> None:
    assert is_kpi_name(name) is valid


def test_credits_add_signed_deltas() -> None:
    kpis = KpiTotals()
    kpis.apply_credit(Credit("ana", AT, revenue=Decimal("500.00"), deals_won=Decimal(1)))
    kpis.apply_credit(Credit("ana", AT, revenue=Decimal("-500.00"), deals_won=Decimal(-1)))
    assert kpis.is_zero()


def test_an_invalid_activity_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="activity kind"):
        KpiTotals().add_activity("Phone Call")


def test_activity_kinds_that_cancel_out_leave_no_trace() -> None:
    kpis = KpiTotals()
    kpis.add_activity("call")
    kpis.add_activity("call", -1)
    assert kpis.is_zero() and kpis.to_dict() == {}


money = st.integers(min_value=-(10**10), max_value=10**10).map(lambda cents: Decimal(cents).scaleb(-2))
shares = st.integers(min_value=-(10**6), max_value=10**6).map(lambda n: Decimal(n).scaleb(-4))
kpi_totals = st.builds(
    KpiTotals,
    money,
    shares,
    shares,
    shares,
    shares,
    st.integers(min_value=0, max_value=10**6),
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), st.integers(1, 1000), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(original=kpi_totals)
def test_storage_round_trips_exactly(original: KpiTotals) -> None:
    stored = json.loads(json.dumps(original.to_dict()))
    restored = KpiTotals.from_dict(stored)
    assert restored == original
    assert restored.to_dict() == original.to_dict()


@settings(max_examples=100, deadline=None)
@given(members=st.lists(kpi_totals, max_size=5))
def test_a_team_is_the_sum_of_its_members(members: list[KpiTotals]) -> None:
    team = KpiTotals().merged(members)
    assert team.revenue == sum((m.revenue for m in members), Decimal(0))
    assert team.deals_won == sum((m.deals_won for m in members), Decimal(0))
    assert team.activities == sum(m.activities for m in members)
    won, lost = team.deals_won, team.deals_lost
    win_rate = team.value("win_rate")
    if won + lost == 0:
        assert win_rate is None
    else:
        assert win_rate is not None and abs(win_rate - won / (won + lost)) < Decimal("1e-20")


def test_storage_is_compact() -> None:
    assert KpiTotals().to_dict() == {}
    assert totals(revenue="12.50", deals_won=1).to_dict() == {"revenue": "12.50", "deals_won": "1"}
