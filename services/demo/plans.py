"""The demo's incentive plans and boards: a quarterly revenue accelerator, a monthly activity SPIFF, a
quarterly plan for the regional managers on their team's revenue, floor and regional leaderboards, and a
call-blitz contest that runs for the whole current day (UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.common.clock import Clock
from services.demo.roster import agent_rep_ids, demo_teams

__all__ = ["ACTIVITY_QUOTA", "REVENUE_QUOTA", "demo_boards", "demo_plans"]

REVENUE_QUOTA = 100_000
"""Quarterly revenue quota per agent.

In the data set a median agent wins about $88k a quarter and the top fifth $125k–$175k (one outlier
$360k), so a good rep reaches the 1.25 accelerator ($125k) near quarter end and about half never make
target. The live floor adds to that as fast as `--rate` lets it.
"""
TEAM_QUOTA = 1_000_000
"""Quarterly revenue quota per regional manager, on their team's roll-up: about ten agents' quotas."""
ACTIVITY_QUOTA = 120
"""Monthly activities per agent for the SPIFF; the live floor (about 60 % of its events are activities)
gets a rep there within minutes at the default rate, so celebrations show up during a demo."""


def _utc_midnight(day: date) -> str:
    return datetime.combine(day, time(0), tzinfo=UTC).isoformat().replace("+00:00", "Z")


def demo_plans(today: date) -> list[dict[str, Any]]:
    """The demo's plans, effective from January 1st of `today`'s year.

    Agents take part in the revenue and activity plans; the teams' managers in the team revenue plan (the
    roll-up of their team's credit, docs/plans-and-boards.md).
    """
    participants = {"teams": [], "reps": agent_rep_ids()}
    managers = [team["manager_rep_id"] for team in demo_teams()]
    effective_from = date(today.year, 1, 1).isoformat()
    return [
        {
            "plan_id": "ae-revenue",
            "name": "AE revenue accelerator",
            "metric": "revenue",
            "period": "quarter",
            "effective_from": effective_from,
            "effective_to": None,
            "participants": participants,
            "quota": REVENUE_QUOTA,
            "quota_overrides": {},
            "tiers": [
                {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05, "reward": None},
                {
                    "tier_id": "target",
                    "name": "Target",
                    "threshold": 1.0,
                    "rate": 0.08,
                    "reward": "Shout-out at the all-hands",
                },
                {
                    "tier_id": "accel",
                    "name": "Accelerator",
                    "threshold": 1.25,
                    "rate": 0.12,
                    "reward": "President's Club nomination",
                },
            ],
            "payout_cap": None,
            # Accelerators pay only for reps who keep their renewals.
            "gate": {"metric": "retention_rate", "min": 0.8},
        },
        {
            "plan_id": "activity-spiff",
            "name": "Activity SPIFF",
            "metric": "activities",
            "period": "month",
            "effective_from": effective_from,
            "effective_to": None,
            "participants": participants,
            "quota": ACTIVITY_QUOTA,
            "quota_overrides": {},
            # A SPIFF pays in recognition, not commission.
            "tiers": [
                {"tier_id": "on-track", "name": "On track", "threshold": 0.5, "rate": 0, "reward": None},
                {
                    "tier_id": "target",
                    "name": "Target",
                    "threshold": 1.0,
                    "rate": 0,
                    "reward": "Team lunch on the house",
                },
                {
                    "tier_id": "stretch",
                    "name": "Stretch",
                    "threshold": 1.5,
                    "rate": 0,
                    "reward": "Golden headset trophy",
                },
            ],
            "payout_cap": None,
            "gate": None,
        },
        {
            "plan_id": "manager-revenue",
            "name": "Regional managers: the team's revenue",
            "metric": "revenue",
            "period": "quarter",
            "effective_from": effective_from,
            "effective_to": None,
            "participants": {"teams": [], "reps": [], "managers": managers},
            "quota": TEAM_QUOTA,
            "quota_overrides": {},
            "tiers": [
                {"tier_id": "target", "name": "Team target", "threshold": 1.0, "rate": 0.005, "reward": None},
                {"tier_id": "accel", "name": "Team accelerator", "threshold": 1.25, "rate": 0.01,
                 "reward": "Regional offsite"},
            ],
            "payout_cap": None,
            "gate": None,
        },
    ]


def demo_boards(today: date | None = None) -> list[dict[str, Any]]:
    """The demo's leaderboards, one per region, and a call-blitz contest over the whole of `today`.

    `today` defaults to the current date in UTC (of the system clock).
    """
    day = today or Clock().now().date()
    boards: list[dict[str, Any]] = [
        {
            "board_id": "floor",
            "title": "Revenue this month",
            "metric": "revenue",
            "period": "month",
            "scope": {"teams": []},
            "size": 10,
            "plan_id": None,
        },
        {
            "board_id": "floor-quarter",
            "title": "Revenue this quarter",
            "metric": "revenue",
            "period": "quarter",
            "scope": {"teams": []},
            "size": 10,
            "plan_id": "ae-revenue",
        },
        {
            "board_id": "activity-spiff",
            "title": "Activity SPIFF this month",
            "metric": "activities",
            "period": "month",
            "scope": {"teams": []},
            "size": 10,
            "plan_id": "activity-spiff",
        },
    ]
    for team in demo_teams():
        boards.append(
            {
                "board_id": f"region-{team['team_id']}",
                "title": f"{team['name']}: revenue this month",
                "metric": "revenue",
                "period": "month",
                "scope": {"teams": [team["team_id"]]},
                # Room for the whole region: 12 agents and 2 managers.
                "size": 15,
                "plan_id": None,
            }
        )
    boards.append(
        {
            "board_id": "battle-east-west",
            "title": "Team battle: East vs West this week",
            "metric": "revenue",
            "period": "week",
            "battle": {"teams": ["east", "west"]},
            "scope": {"teams": ["east", "west"]},
            "size": 8,
            "plan_id": None,
        }
    )
    boards.append(
        {
            "board_id": "call-blitz",
            "title": "Call blitz: most calls today",
            "metric": "activities.call",
            "window": {"starts_at": _utc_midnight(day), "ends_at": _utc_midnight(day + timedelta(days=1))},
            "scope": {"teams": []},
            "size": 10,
            "plan_id": None,
        }
    )
    return boards


def demo_achievements() -> list[dict[str, Any]]:
    """The demo's badges (docs/achievements.md): a first deal each month, a big deal, a day of demos, a month
    of growth."""
    return [
        {"achievement_id": "first-deal", "name": "First deal of the month", "badge": "\U0001F947",
         "description": "Won a deal this month",
         "rule": {"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1}},
        {"achievement_id": "big-deal", "name": "Big deal", "badge": "\U0001F48E",
         "description": "One deal worth $5,000 or more",
         "rule": {"kind": "deal", "period": "month", "at_least": 5000}},
        {"achievement_id": "demo-day", "name": "Demo day", "badge": "\U0001F3AF", "description": "3 demos in a day",
         "rule": {"kind": "total", "metric": "activities.demo", "period": "day", "at_least": 3}},
        {"achievement_id": "growth", "name": "Growing", "badge": "\U0001F4C8",
         "description": "10 % more revenue than the month before",
         "rule": {"kind": "growth", "metric": "revenue", "period": "month", "percent": 10}},
    ]


def demo_streaks() -> list[dict[str, Any]]:
    """The demo's streak: working days with at least 3 calls (Monday to Friday, the year's fixed holidays)."""
    return [
        {"streak_id": "calls", "name": "3 calls a day", "badge": "\U0001F525",
         "rule": {"metric": "activities.call", "at_least": 3},
         "holidays": ["2026-12-25", "2027-01-01"], "milestones": [3, 5, 10, 20]},
    ]
