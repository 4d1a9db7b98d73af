"""Credits: the signed KPI deltas a deal snapshot attributes to each rep at the deal's close instant.

Applying snapshot S after P adds `contribution(S) − contribution(P)` (CONTRACT §1, Credits). A credit is
primary (the deal's split among its owners) or overlay (a specialist's share on top, CONTRACT §1, Overlay
credit); the two are kept apart wherever totals are, so a team's revenue can count the primary credit only.
A roll-up credit is a team member's credit as it counts for their manager (`rolled_up`), kept apart again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from math import lcm
from typing import Final

import msgspec

from services.scoring.domain.deals import DealSnapshot

__all__ = ["CREDIT_MEASURES", "Credit", "allocate", "contribution", "delta", "net", "overlay_part", "rolled_up"]

ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_CENT: Final = Decimal("0.01")
_UTC: Final = UTC

# The additive measures a credit carries, in storage order.
CREDIT_MEASURES: Final = ("revenue", "deals_won", "deals_lost", "renewals_won", "renewals_lost")


class Credit(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """Signed KPI deltas for one rep, attributed to the periods that contain `at` (the close instant);
    `overlay` when the rep is credited as an overlay (on top of the deal's primary credit); `rollup` when it is a
    team member's credit counted for the manager `rep_id` (their team number, not their own).

    Immutable, compared and hashed by value like a frozen dataclass; a msgspec Struct because every deal event
    builds a few of these (a Struct is built ~10x faster than a frozen dataclass: docs/BENCHMARKS.md)."""

    rep_id: str
    at: datetime
    revenue: Decimal = ZERO
    deals_won: Decimal = ZERO
    deals_lost: Decimal = ZERO
    renewals_won: Decimal = ZERO
    renewals_lost: Decimal = ZERO
    overlay: bool = False
    rollup: bool = False
    currency: str | None = None
    """Set on a deal's credit in its own currency (not the reporting one): counted in that currency's sums only
    (KpiTotals.currencies), never in a KPI of the reporting currency (services/scoring/domain/fx.py)."""
    deal_total: Decimal | None = None
    """Set by the deal agent when an achievement is judged on single deals: the rep's whole revenue credit from
    this deal after the event (this credit's role, reporting currency), not a delta; counted in no KPI."""

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"credit time {self.at.isoformat()} has no UTC offset")

    def is_zero(self) -> bool:
        """True when the credit changes nothing."""
        return not (
            self.revenue or self.deals_won or self.deals_lost or self.renewals_won or self.renewals_lost
        )

    def __neg__(self) -> Credit:
        return Credit(
            self.rep_id,
            self.at,
            -self.revenue,
            -self.deals_won,
            -self.deals_lost,
            -self.renewals_won,
            -self.renewals_lost,
            self.overlay,
            self.rollup,
            self.currency,
        )


def _merged_splits(splits: Iterable[tuple[str, Decimal]]) -> list[tuple[str, Decimal]]:
    """Splits with each rep once (a rep listed twice gets the sum), first-appearance order kept."""
    if isinstance(splits, tuple) and len(splits) < 2:  # the usual deal: its owner alone, nothing to merge
        return list(splits)
    merged: dict[str, Decimal] = {}
    for rep_id, share in splits:
        merged[rep_id] = merged.get(rep_id, ZERO) + share
    return list(merged.items())


def allocate(amount: Decimal, splits: Sequence[tuple[str, Decimal]]) -> list[tuple[str, Decimal]]:
    """Split `amount` by share in whole cents so the parts sum exactly to `amount`.

    Largest remainder: each rep gets the floor of its exact cents, and the cents left over go one each
    to the largest remainders, ties to the smaller rep_id. Shares are normalised by their sum, so shares
    that miss 1 by rounding still hand out the whole amount. Returns `(rep_id, part)` in split order,
    each rep once.
    """
    reps = _merged_splits(splits)
    if not reps:
        raise ValueError("cannot allocate an amount without splits")
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {amount!r}")
    if amount != amount.quantize(_CENT):
        raise ValueError(f"amount {amount} has more than 2 decimal places")
    for rep_id, share in reps:
        if share <= 0:
            raise ValueError(f"the share of {rep_id!r} must be > 0, got {share}")
    if len(reps) == 1:
        return [(reps[0][0], amount)]
    sign = -1 if amount < 0 else 1
    cents = int(abs(amount) * 100)
    # Exact integer arithmetic: every share becomes weight / common denominator.
    ratios = [share.as_integer_ratio() for _, share in reps]
    denominator = lcm(*(q for _, q in ratios))
    weights = [p * (denominator // q) for p, q in ratios]
    total = sum(weights)
    floors = [cents * weight // total for weight in weights]
    remainders = [cents * weight % total for weight in weights]  # all over the same `total`
    left = cents - sum(floors)
    ranked = sorted(range(len(reps)), key=lambda i: (-remainders[i], reps[i][0]))
    for i in ranked[:left]:
        floors[i] += 1
    return [(rep_id, Decimal(sign * part).scaleb(-2)) for (rep_id, _), part in zip(reps, floors, strict=True)]


def overlay_part(amount: Decimal, share: Decimal) -> Decimal:
    """An overlay's revenue: `amount × share` rounded to the cent, half to even (each overlay on its own)."""
    return (amount * share).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def contribution(snapshot: DealSnapshot) -> list[Credit]:
    """What a snapshot credits: one primary Credit per split rep in split order, then one overlay Credit per
    overlay rep; open deals credit nothing."""
    if snapshot.stage == "open":
        return []
    at = snapshot.closed_at
    if at is None:  # DealSnapshot already refuses this; kept so the type checker knows
        raise ValueError(f"deal {snapshot.deal_id} is {snapshot.stage} without closed_at")
    renewal = snapshot.kind == "renewal"
    shares = dict(_merged_splits(snapshot.splits))
    overlays = _merged_splits(snapshot.overlays)
    if snapshot.stage == "won":
        parts = [(rep_id, part, shares[rep_id], False) for rep_id, part in allocate(snapshot.amount, snapshot.splits)]
        parts += [(rep_id, overlay_part(snapshot.amount, share), share, True) for rep_id, share in overlays]
        return [
            Credit(rep_id, at, revenue=part, deals_won=share, renewals_won=share if renewal else ZERO, overlay=overlay)
            for rep_id, part, share, overlay in parts
        ]
    roles = [(rep_id, share, False) for rep_id, share in shares.items()]
    roles += [(rep_id, share, True) for rep_id, share in overlays]
    return [
        Credit(rep_id, at, deals_lost=share, renewals_lost=share if renewal else ZERO, overlay=overlay)
        for rep_id, share, overlay in roles
    ]


def rolled_up(credits: Iterable[Credit], managers: Mapping[str, str]) -> list[Credit]:
    """The roll-up credits of `credits`: each credit of a rep in `managers`, counted for that rep's manager (a
    credit in a deal's own currency is not rolled up: a manager plan measures the reporting currency)."""
    return [
        Credit(managers[c.rep_id], c.at, c.revenue, c.deals_won, c.deals_lost, c.renewals_won, c.renewals_lost,
               c.overlay, True)
        for c in credits
        if c.rep_id in managers and c.currency is None
    ]


def delta(previous: DealSnapshot | None, current: DealSnapshot) -> list[Credit]:
    """`contribution(current) − contribution(previous)`, one credit per (rep, instant, role), zeros dropped.

    Ordered by instant, rep_id and role (primary first), so the same pair of snapshots always yields the same list.
    """
    if previous is not None and previous.deal_id != current.deal_id:
        raise ValueError(
            f"cannot diff snapshots of different deals: {previous.deal_id!r}, {current.deal_id!r}"
        )
    return net(contribution(current), () if previous is None else contribution(previous))


_NetKey = tuple[str, datetime, bool, bool, str | None]


def _net_key(credit: Credit) -> _NetKey:
    return (credit.rep_id, credit.at, credit.overlay, credit.rollup, credit.currency)


def _without_deal_total(c: Credit) -> Credit:
    return Credit(c.rep_id, c.at, c.revenue, c.deals_won, c.deals_lost, c.renewals_won, c.renewals_lost, c.overlay,
                  c.rollup, c.currency)


def _summed(plus: list[Credit], minus: list[Credit]) -> list[Credit]:
    """The non-zero sums of `plus` less `minus`, one credit per `_net_key`, in first-seen order."""
    # Aware datetimes hash and compare by instant, so one close time given in two offsets merges;
    # the dict keeps the first key object it saw, which makes the output's `at` deterministic.
    sums: dict[_NetKey, list[Decimal]] = {}
    parts = [(credit, _ONE) for credit in plus]
    parts += [(credit, -_ONE) for credit in minus]
    for credit, sign in parts:
        measures = sums.setdefault(_net_key(credit), [ZERO] * len(CREDIT_MEASURES))
        for i, name in enumerate(CREDIT_MEASURES):
            value = getattr(credit, name)
            if value:
                measures[i] += value if sign > 0 else -value
    credits = [
        Credit(rep_id, at, revenue, won, lost, renewals_won, renewals_lost, overlay, rollup, currency)
        for (rep_id, at, overlay, rollup, currency), (revenue, won, lost, renewals_won, renewals_lost) in sums.items()
    ]
    return [credit for credit in credits if not credit.is_zero()]


def net(plus: Iterable[Credit], minus: Iterable[Credit]) -> list[Credit]:
    """`Σ plus − Σ minus`, one credit per (rep, instant, role, roll-up), zeros dropped; ordered by instant, rep_id,
    role (primary first) and roll-up (own credit first), so the same inputs always yield the same list."""
    plus, minus = list(plus), list(minus)
    if not minus and len({_net_key(credit) for credit in plus}) == len(plus):
        # Nothing taken back and no two credits to merge (a first snapshot's credit): the sum is the credits as
        # they are, without a deal total (counted in no sum).
        credits = [
            credit if credit.deal_total is None else _without_deal_total(credit)
            for credit in plus
            if not credit.is_zero()
        ]
    else:
        credits = _summed(plus, minus)
    credits.sort(
        key=lambda c: (c.at.astimezone(_UTC), c.rep_id, c.overlay, c.rollup, c.currency is not None, c.currency or "")
    )
    return credits
