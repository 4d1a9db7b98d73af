"""Tier crossings derived from a rep snapshot: every tier in its `reached` map is a crossing, identified by
(rep, plan, period, tier). Which of them are new is decided against the notifier's durable record (SQL),
not here. Pure functions; no I/O."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.messages import PlanProgressEntry, RepProgress

__all__ = [
    "ACHIEVEMENT",
    "STREAK",
    "TIER",
    "CrossingKey",
    "TierCrossing",
    "achievements_in_snapshot",
    "milestones_in_snapshot",
    "crossings_in_snapshot",
    "notification_id",
]

CrossingKey = tuple[str, str, str, str, str]
"""(rep_id, kind, plan_id, period_key, tier_id): what the durable record is unique on."""

TIER, ACHIEVEMENT, STREAK = "tier", "achievement", "streak"
"""What a recorded notification is about: a tier crossing, an achievement earned, a streak milestone."""
_PREFIXES = {TIER: "tc_", ACHIEVEMENT: "ac_", STREAK: "sk_"}


def notification_id(rep_id: str, plan_id: str, period_key: str, tier_id: str, kind: str = TIER) -> str:
    """A stable id for a crossing: the same crossing always gets the same id, in every process and after any
    replay, so it also serves as the idempotency key on the wire (webhook header, e-mail Message-ID)."""
    parts = (rep_id, plan_id, period_key, tier_id) if kind == TIER else (kind, rep_id, plan_id, period_key, tier_id)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return _PREFIXES[kind] + digest[:32]


@dataclass(frozen=True, slots=True)
class TierCrossing:
    """One tier a rep reached in a plan-period, with what the messages say about it."""

    rep_id: str
    plan_id: str
    period_key: str
    tier_id: str
    tier_name: str
    threshold: float | None
    reward: str | None
    crossed_at: datetime
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    """Progress at the time it was seen: plan_name, metric, currency, value, quota, attainment, next_tier,
    gap_to_next, payout, rewards — whatever the snapshot and the plan knew. For an achievement: badge and
    description; for a streak milestone: the streak's name, its length and the day it started."""
    kind: str = TIER
    """TIER; ACHIEVEMENT (plan_id is the achievement_id, tier_id ""); STREAK (plan_id the streak_id, period_key
    the first day of the run, tier_id the milestone in days)."""

    @property
    def key(self) -> CrossingKey:
        return (self.rep_id, self.kind, self.plan_id, self.period_key, self.tier_id)

    @property
    def notification_id(self) -> str:
        return notification_id(self.rep_id, self.plan_id, self.period_key, self.tier_id, self.kind)

    def tier(self) -> dict[str, Any]:
        """`{tier_id, name, threshold}` as the API shows a tier."""
        return {"tier_id": self.tier_id, "name": self.tier_name, "threshold": self.threshold}


def _tiers_of(plan: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not plan:
        return {}
    return {tier["tier_id"]: tier for tier in plan.get("tiers", [])}


def _progress_for(progress: list[PlanProgressEntry], plan_id: str, period_key: str) -> PlanProgressEntry | None:
    for entry in progress:
        if entry.plan_id == plan_id and entry.period_key == period_key:
            return entry
    return None


_DETAILS = {"metric", "value", "quota", "attainment", "tier", "next_tier", "gap_to_next", "payout", "rewards"}
"""What a crossing's messages take from the progress entry of its plan-period."""


def crossings_in_snapshot(snapshot: RepProgress, plans: Mapping[str, Mapping[str, Any]]) -> list[TierCrossing]:
    """Every tier the snapshot says the rep has reached, oldest first and, for tiers reached at the same
    moment, lowest threshold first: the order their notifications go out in.

    `plans` (plan_id → plan document) supplies tier names, thresholds and rewards; a plan deleted since is
    still reported, with what the snapshot's progress knows.
    """
    out: list[TierCrossing] = []
    for plan_id, periods in snapshot.reached.items():
        plan = plans.get(plan_id)
        tiers = _tiers_of(plan)
        for period_key, reached in periods.items():
            entry = _progress_for(snapshot.progress, plan_id, period_key)
            for tier_id, when in reached.items():
                tier = tiers.get(tier_id)
                if tier is None and entry is not None and entry.tier is not None and entry.tier.tier_id == tier_id:
                    tier = entry.tier.model_dump()
                threshold = float(tier["threshold"]) if tier is not None else None
                if threshold is not None and threshold <= 0:
                    continue  # a tier at 0 is where everyone starts, not a crossing (CONTRACT §4)
                details: dict[str, Any] = {"plan_name": plan.get("name", plan_id) if plan else plan_id}
                if plan:
                    details["metric"] = plan.get("metric")
                    details["currency"] = plan.get("currency", "USD")
                if entry is not None:
                    details.update(entry.model_dump(include=_DETAILS))
                out.append(
                    TierCrossing(
                        rep_id=snapshot.rep_id,
                        plan_id=plan_id,
                        period_key=period_key,
                        tier_id=tier_id,
                        tier_name=(tier or {}).get("name") or tier_id,
                        threshold=threshold,
                        reward=(tier or {}).get("reward"),
                        crossed_at=when.astimezone(UTC),
                        details=details,
                    )
                )
    out.sort(key=lambda c: (c.crossed_at, math.inf if c.threshold is None else c.threshold, c.plan_id, c.tier_id))
    return out


def achievements_in_snapshot(
    snapshot: RepProgress, achievements: Mapping[str, Mapping[str, Any]]
) -> list[TierCrossing]:
    """Every achievement the snapshot says the rep has earned, as crossings of kind ACHIEVEMENT, oldest first.

    `achievements` (achievement_id → document) supplies name, badge and description; one deleted since is still
    reported, under its id."""
    out: list[TierCrossing] = []
    for achievement_id, periods in snapshot.earned.items():
        doc = achievements.get(achievement_id) or {}
        name = doc.get("name") or achievement_id
        for period_key, when in periods.items():
            details: dict[str, Any] = {"achievement_name": name, "badge": doc.get("badge") or "\U0001F3C5"}
            if doc.get("description"):
                details["description"] = doc["description"]
            out.append(
                TierCrossing(
                    rep_id=snapshot.rep_id,
                    plan_id=achievement_id,
                    period_key=period_key,
                    tier_id="",
                    tier_name=name,
                    threshold=None,
                    reward=None,
                    crossed_at=when.astimezone(UTC),
                    details=details,
                    kind=ACHIEVEMENT,
                )
            )
    out.sort(key=lambda c: (c.crossed_at, c.plan_id, c.period_key))
    return out


def milestones_in_snapshot(snapshot: RepProgress, streaks: Mapping[str, Mapping[str, Any]]) -> list[TierCrossing]:
    """Every streak milestone the snapshot says the rep reached, as crossings of kind STREAK, oldest first (the
    shorter milestone first when several came at once)."""
    out: list[TierCrossing] = []
    for streak_id, firsts in snapshot.milestones.items():
        doc = streaks.get(streak_id) or {}
        name = doc.get("name") or streak_id
        for first_day, reached in firsts.items():
            for days, when in reached.items():
                out.append(
                    TierCrossing(
                        rep_id=snapshot.rep_id,
                        plan_id=streak_id,
                        period_key=first_day,
                        tier_id=days,
                        tier_name=f"{days}-day streak",
                        threshold=None,
                        reward=None,
                        crossed_at=when.astimezone(UTC),
                        details={"streak_name": name, "badge": doc.get("badge") or "\U0001F525", "days": int(days),
                                 "since": first_day},
                        kind=STREAK,
                    )
                )
    out.sort(key=lambda c: (c.crossed_at, c.plan_id, c.period_key, int(c.tier_id)))
    return out
