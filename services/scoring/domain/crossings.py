"""Tier crossings (CONTRACT §4): which tiers a rep has reached in each plan-period, and when first.

Kept inside the rep's state, beside the totals it is judged on, so a replay or restart never emits a
crossing twice: a tier once recorded stays recorded, whatever the attainment does afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.scoring.domain.plans import exact

__all__ = ["TierThreshold", "TiersReached", "utc_iso"]

TierThreshold = tuple[str, float | int | Decimal]
"""`(tier_id, threshold)`: what a crossing needs of a tier (`(t.tier_id, t.threshold) for t in plan.tiers`)."""


def utc_iso(at: datetime) -> str:
    """`at` as ISO 8601 in UTC with a `Z`, to the second (or microsecond when it has one)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"time {at.isoformat()} has no UTC offset; naive times are ambiguous")
    utc = at.astimezone(UTC)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds").replace("+00:00", "Z")


@dataclass(slots=True)
class TiersReached:
    """Every tier a rep has reached: `reached[plan_id][period_key][tier_id]` = first reached (ISO 8601 UTC).

    Only tiers with a threshold above 0 are recorded: a tier at 0 is where everyone starts, not a crossing.
    """

    reached: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def record(
        self,
        plan_id: str,
        period_key: str,
        tiers: Sequence[TierThreshold],
        attainment: Decimal | float | int,
        at: datetime,
    ) -> list[str]:
        """Record every tier with 0 < threshold ≤ `attainment` not recorded yet, first reached at `at`.

        Returns the newly recorded tier_ids, lowest threshold first (tiers with equal thresholds in the
        order given): the crossings to emit. A tier already recorded is never returned again and keeps its
        first time, also after the attainment dropped below it and rose again. `RepState.record_tiers`
        wraps this and bumps the state's version when something is recorded.
        """
        level = exact(attainment)
        known = self.reached.get(plan_id, {}).get(period_key, {})
        # Exact decimals, so an attainment of 1.1 reaches a threshold of 1.1 (binary floats would not).
        candidates = [(exact(threshold), tier_id) for tier_id, threshold in tiers]
        new = [
            tier_id
            for threshold, tier_id in sorted(candidates, key=lambda pair: pair[0])
            if 0 < threshold <= level and tier_id not in known
        ]
        if not new:
            return []
        when = utc_iso(at)
        recorded = self.reached.setdefault(plan_id, {}).setdefault(period_key, {})
        for tier_id in new:
            recorded.setdefault(tier_id, when)  # a tier listed twice is still recorded once
        return list(dict.fromkeys(new))

    def reached_for(self, plan_id: str, period_key: str) -> dict[str, str]:
        """A copy of the tiers reached in one plan-period: tier_id → first reached (ISO 8601 UTC)."""
        return dict(self.reached.get(plan_id, {}).get(period_key, {}))

    def has_reached(self, plan_id: str, period_key: str, tier_id: str) -> bool:
        """True once the tier has been recorded for the plan-period."""
        return tier_id in self.reached.get(plan_id, {}).get(period_key, {})

    def prune(self, keep: Callable[[str, str], bool]) -> int:
        """Forget every plan-period for which `keep(plan_id, period_key)` is False; returns how many.

        Only for plan-periods that ended long ago: a pruned plan-period that is still live would emit its
        crossings again.
        """
        dropped = 0
        for plan_id in list(self.reached):
            periods = self.reached[plan_id]
            for period_key in [key for key in periods if not keep(plan_id, key)]:
                del periods[period_key]
                dropped += 1
            if not periods:
                del self.reached[plan_id]
        return dropped

    def __bool__(self) -> bool:
        return bool(self.reached)

    # -- storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, dict[str, dict[str, str]]]:
        """A JSON-safe copy: plan_id → period_key → tier_id → ISO 8601 UTC."""
        return {
            plan_id: {period_key: dict(tiers) for period_key, tiers in periods.items()}
            for plan_id, periods in self.reached.items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TiersReached:
        """Rebuild from `to_dict()` output."""
        try:
            reached = {
                str(plan_id): {
                    str(period_key): {str(tier_id): str(when) for tier_id, when in tiers.items()}
                    for period_key, tiers in periods.items()
                    if tiers
                }
                for plan_id, periods in data.items()
            }
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"not stored tiers reached: {exc!r}") from exc
        return cls({plan_id: periods for plan_id, periods in reached.items() if periods})
