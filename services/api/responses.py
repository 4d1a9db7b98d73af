"""Response models: they make the OpenAPI document describe exactly what the routes return (FastAPI
validates every response against them, so a drift fails loudly instead of misleading a client)."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import PlanProgressEntry, TierRefModel
from services.common.problems import KEYED, problem_responses

# The problems every keyed route can answer; routes add 404, 413, ... with problem_responses.
KEYED_PROBLEMS: Final = problem_responses(*KEYED)
PROBLEMS: Final = problem_responses(*KEYED, 404)

KPI_EXAMPLE: dict[str, Any] = {
    "revenue": 48250.0,
    "deals_won": 7.0,
    "deals_lost": 3.0,
    "win_rate": 0.7,
    "avg_deal_size": 6892.86,
    "renewals_won": 2.0,
    "renewals_lost": 0.0,
    "retention_rate": 1.0,
    "activities": 64,
    "activities.call": 40,
}


class KpiReport(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"example": KPI_EXAMPLE})

    revenue: float
    deals_won: float
    deals_lost: float
    win_rate: float | None
    avg_deal_size: float | None
    renewals_won: float
    renewals_lost: float
    retention_rate: float | None
    activities: int


class RepKpis(BaseModel):
    rep_id: str
    period: str = Field(examples=["month"])
    period_key: str = Field(examples=["2026-11"])
    currency: str = Field(examples=["USD"], description="the currency of the money KPIs")
    kpis: KpiReport


class TeamKpis(BaseModel):
    team_id: str
    period: str = Field(examples=["quarter"])
    period_key: str = Field(examples=["FY2026-Q4"])
    currency: str = Field(examples=["USD"], description="the currency of the money KPIs")
    kpis: KpiReport


class RepProgressResponse(BaseModel):
    rep_id: str
    plans: list[PlanProgressEntry]


class EarnedAchievement(BaseModel):
    achievement_id: str
    name: str
    badge: str
    description: str | None
    period_key: str = Field(description='the period it was earned in ("window" for a rule over a window)')
    earned_at: str


class RepAchievements(BaseModel):
    rep_id: str
    achievements: list[EarnedAchievement] = Field(description="newest first")


class StreakStatusModel(BaseModel):
    streak_id: str
    name: str
    badge: str
    current: int = Field(description="working days in the streak alive today (0: none)")
    longest: int = Field(description="the longest streak the rep's recorded days hold")
    since: str | None = Field(description="the first working day of the current streak")
    at_risk: bool = Field(description="today is a working day, not met yet, and a streak is alive")
    met_today: bool


class RepStreaks(BaseModel):
    rep_id: str
    as_of: str
    streaks: list[StreakStatusModel]


class StreakEntry(BaseModel):
    rank: int
    rep_id: str
    name: str
    team_id: str | None
    current: int
    longest: int
    since: str | None
    at_risk: bool


class StreakStandings(BaseModel):
    streak_id: str
    name: str
    badge: str
    as_of: str
    rule: dict[str, Any]
    current: list[StreakEntry] = Field(description="by current streak, longest first")
    longest: list[StreakEntry] = Field(description="by longest streak ever, longest first")


class StandingsEntry(BaseModel):
    rank: int
    rep_id: str
    name: str
    team_id: str | None
    value: float
    attainment: float | None = Field(None, description="only on boards linked to a plan")
    tier: TierRefModel | None = Field(None, description="only on boards linked to a plan")


class BattleTeam(BaseModel):
    team_id: str
    name: str
    rank: int
    value: float = Field(description="the sum of the team's members' values")
    members: int


class BattleStandings(BaseModel):
    teams: list[BattleTeam] = Field(description="in the battle's order")
    leader: str | None = Field(description="the team ahead; null on a tie at the top")
    gap: float = Field(description="how far the first is ahead of the second")


class Standings(BaseModel):
    board_id: str
    title: str
    metric: str
    period_key: str = Field(description="the period, or for a contest its window as start/end")
    updated_at: str | None
    entries: list[StandingsEntry]
    battle: BattleStandings | None = Field(
        None, exclude_if=lambda battle: battle is None, description="a team battle's head to head (battle boards only)"
    )
