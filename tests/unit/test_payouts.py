"""Marginal payout: the integral of the tier rate over the value, gated and capped, in exact cents."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from schemas.config import Tier
from services.scoring.domain.payouts import Band, cents, payout
from services.scoring.domain.plans import current_tier

CONTRACT_TIERS: list[Band] = [(0.0, Decimal("0.05")), (1.0, Decimal("0.08")), (1.25, Decimal("0.12"))]
QUOTA = Decimal(100000)

rates = st.decimals(min_value=0, max_value=1, places=3)


@st.composite
def tier_tables(draw: st.DrawFn) -> tuple[Decimal, list[Band]]:
    """A quota and tier table whose band edges (threshold × quota) fall on whole units."""
    quota = Decimal(draw(st.integers(min_value=1, max_value=50)) * 4)
    quarters = draw(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=5, unique=True))
    return quota, [(q / 4, draw(rates)) for q in sorted(quarters)]


def rate_at(x: Decimal, quota: Decimal, tiers: list[Band], *, gate_open: bool) -> Decimal:
    """The rate paid on the unit of value at x: the piecewise function the payout integrates."""
    regular = [rate for threshold, rate in tiers if threshold <= 1.0]
    paid = Decimal(0)
    for threshold, rate in tiers:
        if Decimal(str(threshold)) * quota <= x:
            gated = not gate_open and threshold > 1.0
            paid = (regular[-1] if regular else Decimal(0)) if gated else rate
    return paid


def brute_force(value: int, quota: Decimal, tiers: list[Band], *, gate_open: bool) -> Decimal:
    # Band edges are whole units: the rate is constant on each unit, so midpoints give the exact integral.
    half = Decimal("0.5")
    return sum((rate_at(Decimal(x) + half, quota, tiers, gate_open=gate_open) for x in range(value)), Decimal(0))


@given(tier_tables(), st.integers(min_value=0, max_value=800), st.booleans())
def test_payout_is_the_integral_of_the_tier_rate_over_the_value(
    table: tuple[Decimal, list[Band]], value: int, gate_open: bool
) -> None:
    quota, tiers = table

    expected = cents(brute_force(value, quota, tiers, gate_open=gate_open))

    assert payout(Decimal(value), quota, tiers, cap=None, gate_open=gate_open) == expected


@given(
    tier_tables(),
    st.decimals(min_value=0, max_value=1000, places=2),
    st.decimals(min_value=0, max_value=1000, places=2),
    st.booleans(),
)
def test_payout_never_falls_as_the_value_grows(
    table: tuple[Decimal, list[Band]], a: Decimal, b: Decimal, gate_open: bool
) -> None:
    quota, tiers = table
    low, high = sorted([a, b])

    assert payout(low, quota, tiers, cap=None, gate_open=gate_open) <= payout(
        high, quota, tiers, cap=None, gate_open=gate_open
    )


@given(tier_tables(), st.decimals(min_value=0, max_value=1000, places=2))
def test_a_closed_gate_never_pays_more_than_an_open_one_when_rates_accelerate(
    table: tuple[Decimal, list[Band]], value: Decimal
) -> None:
    quota, drawn = table
    # With a rate that falls above quota, the contract's fallback to the rate at quota would pay more.
    tiers = [(threshold, rate) for (threshold, _), rate in zip(drawn, sorted(r for _, r in drawn), strict=True)]

    assert payout(value, quota, tiers, cap=None, gate_open=False) <= payout(
        value, quota, tiers, cap=None, gate_open=True
    )


def test_the_contract_plan_pays_each_band_at_its_own_rate() -> None:
    # 100k at 5 % + 25k at 8 % + 5k at 12 %
    assert payout(Decimal(130000), QUOTA, CONTRACT_TIERS, cap=None, gate_open=True) == Decimal("7600.00")


def test_the_contract_plan_pays_the_base_rate_up_to_quota() -> None:
    assert payout(Decimal(80000), QUOTA, CONTRACT_TIERS, cap=None, gate_open=True) == Decimal("4000.00")


def test_a_value_below_the_first_threshold_earns_nothing() -> None:
    tiers: list[Band] = [(0.5, Decimal("0.10")), (1.0, Decimal("0.20"))]

    assert payout(Decimal(49999), QUOTA, tiers, cap=None, gate_open=True) == Decimal("0.00")
    assert payout(Decimal(60000), QUOTA, tiers, cap=None, gate_open=True) == Decimal("1000.00")


def test_the_cap_limits_the_payout() -> None:
    assert payout(Decimal(130000), QUOTA, CONTRACT_TIERS, cap=Decimal(6000), gate_open=True) == Decimal("6000.00")


def test_a_cap_above_the_payout_changes_nothing() -> None:
    assert payout(Decimal(130000), QUOTA, CONTRACT_TIERS, cap=Decimal(9000), gate_open=True) == Decimal("7600.00")


def test_a_closed_gate_pays_accelerator_bands_at_the_rate_at_quota() -> None:
    # the 1.25 band falls back to the 1.0 tier's 8 %: 5000 + 2000 + 5000 × 8 %
    assert payout(Decimal(130000), QUOTA, CONTRACT_TIERS, cap=None, gate_open=False) == Decimal("7400.00")


def test_a_closed_gate_leaves_bands_up_to_quota_alone() -> None:
    assert payout(Decimal(100000), QUOTA, CONTRACT_TIERS, cap=None, gate_open=False) == Decimal("5000.00")


def test_a_closed_gate_pays_nothing_above_quota_when_no_tier_is_at_or_below_quota() -> None:
    tiers: list[Band] = [(1.1, Decimal("0.10"))]

    assert payout(Decimal(150000), QUOTA, tiers, cap=None, gate_open=False) == Decimal("0.00")
    assert payout(Decimal(150000), QUOTA, tiers, cap=None, gate_open=True) == Decimal("4000.00")


def test_a_closed_gate_does_not_change_the_tier_reached() -> None:
    tiers = [Tier(tier_id=str(t), name=str(t), threshold=t, rate=r) for t, r in CONTRACT_TIERS]

    tier = current_tier(Decimal(130000) / QUOTA, tiers)

    assert tier is not None and tier.threshold == 1.25
    assert payout(Decimal(130000), QUOTA, CONTRACT_TIERS, cap=None, gate_open=False) < payout(
        Decimal(130000), QUOTA, CONTRACT_TIERS, cap=None, gate_open=True
    )


def test_money_is_exact_and_rounded_half_up_to_cents() -> None:
    tiers: list[Band] = [(0.0, Decimal("0.1"))]

    assert payout(Decimal("0.05"), Decimal(1), tiers, cap=None, gate_open=True) == Decimal("0.01")  # 0.005
    assert payout(Decimal("0.1") + Decimal("0.2"), Decimal(1), tiers, cap=None, gate_open=True) == Decimal("0.03")


def test_thresholds_are_exact_decimals_not_binary_floats() -> None:
    # 1.1 × 100 is exactly 110 — a binary-float threshold would start the band a hair late.
    tiers: list[Band] = [(0.0, Decimal(0)), (1.1, Decimal(1))]

    assert payout(Decimal(111), Decimal(100), tiers, cap=None, gate_open=True) == Decimal("1.00")
