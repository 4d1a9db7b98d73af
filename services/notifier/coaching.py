"""The coaching digest's content: which reps of a team are behind pace in which plan. Pure; no I/O.

Pace is recomputed for the moment the digest is made (attainment from the rep's latest snapshot ÷ the share
of the period gone by now): a rep who went quiet keeps an old snapshot whose pace only looks better."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from schemas.config import Plan, Streak
from schemas.messages import PlanProgressEntry
from services.scoring.domain.incentives import plan_period
from services.scoring.domain.periods import Calendar, PeriodKind
from services.scoring.domain.plans import is_participant
from services.scoring.domain.streaks import StreakCalendar, status

__all__ = ["reps_behind_pace", "streaks_at_risk"]


def reps_behind_pace(
    *,
    team_id: str,
    members: Sequence[str],
    roster: Mapping[str, Mapping[str, Any]],
    manager_rep_id: str | None,
    plans: Sequence[Plan],
    progress_by_rep: Mapping[str, Sequence[PlanProgressEntry]],
    calendar: Calendar,
    now: datetime,
    pace_below: float,
    min_elapsed: float,
) -> list[dict[str, Any]]:
    """One row per (rep, plan) whose pace is below `pace_below` once at least `min_elapsed` of the plan's
    current period has gone; slowest first. A rep without progress in the period has attained 0. The
    manager is not listed in their own digest."""
    rows: list[dict[str, Any]] = []
    today = calendar.local_date(now)
    for plan in plans:
        period_key = plan_period(plan, calendar, today)
        if period_key is None:
            continue
        kind: PeriodKind = plan.period
        elapsed = calendar.elapsed_fraction(kind, period_key, now)
        if elapsed <= 0 or elapsed < min_elapsed:
            continue
        for rep_id in members:
            if rep_id == manager_rep_id or not is_participant(rep_id, team_id, plan.participants):
                continue
            attainment = 0.0
            for entry in progress_by_rep.get(rep_id, ()):
                if entry.plan_id == plan.plan_id and entry.period_key == period_key:
                    attainment = entry.attainment
                    break
            pace = attainment / elapsed
            if pace < pace_below:
                rows.append(
                    {
                        "rep_id": rep_id,
                        "name": (roster.get(rep_id) or {}).get("name") or rep_id,
                        "plan_id": plan.plan_id,
                        "plan_name": plan.name,
                        "period_key": period_key,
                        "attainment": round(attainment, 6),
                        "pace": round(pace, 6),
                        "elapsed": round(elapsed, 6),
                    }
                )
    rows.sort(key=lambda row: (row["pace"], row["rep_id"], row["plan_id"]))
    return rows


def streaks_at_risk(
    *,
    team_id: str,
    members: Sequence[str],
    roster: Mapping[str, Mapping[str, Any]],
    manager_rep_id: str | None,
    streaks: Sequence[Streak],
    runs_by_rep: Mapping[str, Mapping[str, Sequence[tuple[str, str]]]],
    today: date,
) -> list[dict[str, Any]]:
    """One row per (rep, streak) about to break: today is a working day of the streak, not met yet, and the
    streak is alive (docs/achievements.md, Streaks); longest streak first. Not the manager's own."""
    rows: list[dict[str, Any]] = []
    for streak in streaks:
        calendar = StreakCalendar.of(streak)
        for rep_id in members:
            if rep_id == manager_rep_id or not is_participant(rep_id, team_id, streak.participants):
                continue
            found = status(runs_by_rep.get(rep_id, {}).get(streak.streak_id, ()), calendar, today)
            if found.at_risk:
                rows.append({
                    "rep_id": rep_id, "name": (roster.get(rep_id) or {}).get("name") or rep_id,
                    "streak_id": streak.streak_id, "streak_name": streak.name, "days": found.current,
                    "since": found.since.isoformat() if found.since else None,
                })
    rows.sort(key=lambda row: (-row["days"], row["rep_id"], row["streak_id"]))
    return rows
