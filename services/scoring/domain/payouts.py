"""Marginal incentive payout: each tier's rate pays on the slice of value inside its band (CONTRACT §4).

Money is exact: thresholds, rates and values are decimals, and only the final amount is rounded to cents.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from services.scoring.domain.plans import exact

__all__ = ["CENT", "Band", "cents", "payout"]

CENT = Decimal("0.01")
ONE = Decimal(1)

Band = tuple[float | Decimal, Decimal]
"""A tier as the payout sees it: (threshold as a fraction of quota, rate)."""


def cents(amount: Decimal) -> Decimal:
    """`amount` rounded to cents, halves away from zero."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def payout(
    value: Decimal,
    quota: Decimal,
    tiers: Sequence[Band],
    *,
    cap: Decimal | None,
    gate_open: bool,
) -> Decimal:
    """The payout on `value` against `quota`, capped at `cap`, in cents.

    Tier i's rate applies to the value in [threshold_i × quota, threshold_{i+1} × quota); the last band is
    open-ended and nothing is paid below the first threshold. While the gate is closed, bands above 100 %
    pay the rate of the highest tier at or below 100 % — or nothing when no tier is at or below 100 %, so a
    closed gate never pays an accelerator.
    """
    bands = sorted(((exact(threshold), rate) for threshold, rate in tiers), key=lambda band: band[0])
    # A plan with no tier at or below 100 % has no "regular" rate for a closed gate to fall back to.
    regular_rate = next((rate for threshold, rate in reversed(bands) if threshold <= ONE), Decimal(0))
    total = Decimal(0)
    for index, (threshold, rate) in enumerate(bands):
        lower = threshold * quota
        if value <= lower:
            break
        upper = bands[index + 1][0] * quota if index + 1 < len(bands) else None
        slice_top = value if upper is None else min(value, upper)
        paid_rate = rate if gate_open or threshold <= ONE else regular_rate
        total += (slice_top - lower) * paid_rate
    if cap is not None:
        total = min(total, cap)
    return cents(total)
