"""A rep's progress in one plan-period: attainment, tier, payout, pace and forecast (CONTRACT §4, §6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from services.scoring.domain.payouts import cents, payout
from services.scoring.domain.plans import (
    TierLike,
    TierRef,
    current_tier,
    exact,
    gate_open,
    next_tier,
    tiers_reached,
)

__all__ = ["MIN_ELAPSED", "MONEY_METRICS", "Progress", "compute_progress", "reported", "reported_ratio"]

MIN_ELAPSED = 0.01
"""Pace and forecast stay null until this fraction of the period has gone: early ratios are noise."""

MONEY_METRICS: frozenset[str] = frozenset({"revenue", "avg_deal_size"})
"""KPIs measured in money, reported in cents; every other KPI is a count or a rate."""

_RATIO = Decimal("0.000001")


def reported_ratio(number: Decimal) -> float:
    """An attainment, pace or rate as a JSON number rounded to 6 decimal places."""
    return float(number.quantize(_RATIO, rounding=ROUND_HALF_UP))


def reported(metric: str, number: Decimal) -> float:
    """A KPI value as a JSON number: money rounded to cents, counts and rates to 6 decimal places."""
    return float(cents(number)) if metric in MONEY_METRICS else reported_ratio(number)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a rep stands in one plan for one period."""

    plan_id: str
    period_key: str
    metric: str
    value: Decimal
    """The plan metric's value for the rep in the period (a null KPI counts as 0)."""
    quota: Decimal
    """The rep's quota: the plan's, or the rep's override."""
    attainment: Decimal
    """value / quota."""
    tier: TierRef | None
    """The highest tier reached; None below the first threshold."""
    next_tier: TierRef | None
    """The lowest tier not yet reached; None at the top."""
    gap_to_next: Decimal | None
    """next_tier.threshold × quota − value; None at the top."""
    payout: Decimal
    """Marginal payout in cents, after the gate and the cap."""
    rewards: tuple[str, ...]
    """Non-null rewards of the tiers reached, lowest tier first."""
    pace: Decimal | None
    """value / (quota × elapsed); None before 1 % of the period."""
    forecast_attainment: Decimal | None
    """attainment / elapsed; None before 1 % of the period."""
    tiers_reached: tuple[str, ...]
    """tier_ids of every tier reached, lowest first: what tier crossings compare against."""

    def to_dict(self) -> dict[str, object]:
        """The progress entry of `GET /v1/reps/{rep_id}/progress` (CONTRACT §6)."""
        return {
            "plan_id": self.plan_id,
            "period_key": self.period_key,
            "metric": self.metric,
            "value": reported(self.metric, self.value),
            "quota": reported(self.metric, self.quota),
            "attainment": reported_ratio(self.attainment),
            "tier": None if self.tier is None else self.tier.to_dict(),
            "next_tier": None if self.next_tier is None else self.next_tier.to_dict(),
            "gap_to_next": None if self.gap_to_next is None else reported(self.metric, self.gap_to_next),
            "payout": float(self.payout),
            "rewards": list(self.rewards),
            "pace": None if self.pace is None else reported_ratio(self.pace),
            "forecast_attainment": (
                None if self.forecast_attainment is None else reported_ratio(self.forecast_attainment)
            ),
        }


def compute_progress(
    *,
    plan_id: str,
    period_key: str,
    metric: str,
    value: Decimal | None,
    quota: Decimal,
    tiers: Sequence[TierLike],
    cap: Decimal | None,
    gate_value: Decimal | None,
    gate_min: float | Decimal | None,
    elapsed: float,
) -> Progress:
    """Progress of a rep with `value` against `quota` when `elapsed` (0–1) of the period has gone.

    `gate_min` None means the plan has no gate; otherwise a null `gate_value` keeps the gate closed.
    """
    amount = Decimal(0) if value is None else value
    attainment = amount / quota
    reached = tiers_reached(attainment, tiers)
    current = current_tier(attainment, tiers)
    upcoming = next_tier(attainment, tiers)
    is_open = gate_min is None or gate_open(gate_value, gate_min)
    earned = payout(amount, quota, [(t.threshold, t.rate) for t in tiers], cap=cap, gate_open=is_open)
    # A period already over counts as fully elapsed, never more.
    fraction = exact(min(elapsed, 1.0))
    on_track = elapsed >= MIN_ELAPSED
    return Progress(
        plan_id=plan_id,
        period_key=period_key,
        metric=metric,
        value=amount,
        quota=quota,
        attainment=attainment,
        tier=None if current is None else TierRef.of(current),
        next_tier=None if upcoming is None else TierRef.of(upcoming),
        gap_to_next=None if upcoming is None else exact(upcoming.threshold) * quota - amount,
        payout=earned,
        rewards=tuple(tier.reward for tier in reached if tier.reward is not None),
        pace=amount / (quota * fraction) if on_track else None,
        forecast_attainment=attainment / fraction if on_track else None,
        tiers_reached=tuple(tier.tier_id for tier in reached),
    )
