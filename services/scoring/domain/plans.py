"""Incentive-plan rules as pure functions: which tier a rep has reached, who a plan covers, and when.

Thresholds are compared as exact decimals, so 1.1 × quota reaches the 1.1 tier (binary floats would not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol, TypeVar

__all__ = [
    "ParticipantsLike",
    "TierLike",
    "TierRef",
    "applies_to_period",
    "current_tier",
    "exact",
    "gate_open",
    "is_participant",
    "next_tier",
    "quota_for",
    "tiers_reached",
]


class TierLike(Protocol):
    """What the rules read from a tier; `schemas.config.Tier` is one."""

    @property
    def tier_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    @property
    def rate(self) -> Decimal: ...

    @property
    def reward(self) -> str | None: ...


class ParticipantsLike(Protocol):
    """What the rules read from a plan's participants; `schemas.config.Participants` is one."""

    @property
    def teams(self) -> Sequence[str]: ...

    @property
    def reps(self) -> Sequence[str]: ...

    @property
    def managers(self) -> Sequence[str]: ...


T = TypeVar("T", bound=TierLike)


@dataclass(frozen=True, slots=True)
class TierRef:
    """A tier as the API shows it: `{tier_id, name, threshold}`."""

    tier_id: str
    name: str
    threshold: float

    @classmethod
    def of(cls, tier: TierLike) -> TierRef:
        """The reference to `tier`."""
        return cls(tier_id=tier.tier_id, name=tier.name, threshold=float(tier.threshold))

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of CONTRACT §6."""
        return {"tier_id": self.tier_id, "name": self.name, "threshold": self.threshold}


def exact(number: float | int | Decimal) -> Decimal:
    """`number` as the decimal it was written as (a float by its shortest repr, so 1.1 is exactly 1.1)."""
    if isinstance(number, Decimal):
        return number
    if isinstance(number, int):
        return Decimal(number)
    return Decimal(repr(number))


def _ascending(tiers: Sequence[T]) -> list[T]:
    return sorted(tiers, key=lambda tier: exact(tier.threshold))


def tiers_reached(attainment: Decimal, tiers: Sequence[T]) -> list[T]:
    """Every tier whose threshold is at or below `attainment`, lowest first."""
    return [tier for tier in _ascending(tiers) if exact(tier.threshold) <= attainment]


def current_tier(attainment: Decimal, tiers: Sequence[T]) -> T | None:
    """The tier with the largest threshold ≤ `attainment`; None below the first threshold."""
    reached = tiers_reached(attainment, tiers)
    return reached[-1] if reached else None


def next_tier(attainment: Decimal, tiers: Sequence[T]) -> T | None:
    """The tier with the smallest threshold above `attainment` (so above the current one); None at the top."""
    for tier in _ascending(tiers):
        if exact(tier.threshold) > attainment:
            return tier
    return None


def applies_to_period(effective_from: date, effective_to: date | None, period_start: date) -> bool:
    """True when the period's start date lies in [effective_from, effective_to]; None is open-ended."""
    if period_start < effective_from:
        return False
    return effective_to is None or period_start <= effective_to


def is_participant(rep_id: str, team_id: str | None, participants: ParticipantsLike) -> bool:
    """True when the plan covers the rep: a manager plan its managers, else no participants listed means every rep."""
    if participants.managers:
        return rep_id in participants.managers
    if not participants.teams and not participants.reps:
        return True
    return rep_id in participants.reps or (team_id is not None and team_id in participants.teams)


def quota_for(rep_id: str, quota: Decimal, overrides: Mapping[str, Decimal]) -> Decimal:
    """The rep's own quota when the plan overrides it, else the plan's quota."""
    return overrides.get(rep_id, quota)


def gate_open(gate_value: Decimal | None, minimum: float | Decimal) -> bool:
    """True when the gate metric is at least `minimum`; a null gate metric keeps the gate closed."""
    return gate_value is not None and gate_value >= exact(minimum)
