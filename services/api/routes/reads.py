"""Read routes: KPIs, plan progress, standings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query

from schemas.kpis import ALL_ROLES, PRIMARY_ONLY
from services.api.deps import CurrencyQuery, DateQuery, GatewayDep, PeriodQuery, RolesQuery
from services.api.gateway import Gateway
from services.api.responses import (
    PROBLEMS,
    RepAchievements,
    RepKpis,
    RepProgressResponse,
    RepStreaks,
    Standings,
    StreakStandings,
    TeamKpis,
)
from services.api.scope import out_of_scope, require_board, require_rep, require_team
from services.api.statements import StatementBook, session_close
from services.common.deps import ReaderKey
from services.common.problems import Problem
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import PeriodKind
from services.scoring.domain.standings import Entry, rank

router = APIRouter(prefix="/v1")


@router.get("/reps/{rep_id}/kpis", summary="A rep's KPIs for one period", response_model=RepKpis, responses=PROBLEMS)
async def rep_kpis(
    rep_id: str, gw: GatewayDep, who: ReaderKey, period: PeriodQuery, date: DateQuery = None, roles: RolesQuery = None,
    currency: CurrencyQuery = None,
) -> Any:
    require_rep(who, gw, rep_id)
    if not gw.rep_known(rep_id):
        raise Problem(404, f"No rep {rep_id!r}: it is not on the roster and has no events.")
    return await _kpis(gw, "rep_id", rep_id, period, date, gw.rep_totals, roles or ALL_ROLES, currency)


@router.get(
    "/teams/{team_id}/kpis",
    summary="A team's KPIs (sums over its current members; primary credit only unless roles says otherwise)",
    response_model=TeamKpis,
    responses=PROBLEMS,
)
async def team_kpis(
    team_id: str, gw: GatewayDep, who: ReaderKey, period: PeriodQuery, date: DateQuery = None, roles: RolesQuery = None,
    currency: CurrencyQuery = None,
) -> Any:
    require_team(who, gw, team_id)
    if team_id not in gw.config.state.teams() and not gw.config.state.members(team_id):
        raise Problem(404, f"No team {team_id!r}.")
    return await _kpis(gw, "team_id", team_id, period, date, gw.team_totals, roles or PRIMARY_ONLY, currency)


async def _kpis(
    gw: Gateway, id_field: str, entry_id: str, period: PeriodKind, on: date | None,
    totals: Callable[[str, PeriodKind, str], Awaitable[KpiTotals]], roles: Collection[str], currency: str | None,
) -> dict[str, Any]:
    """The KPI answer (CONTRACT §6) of a rep or team for the period containing `on` (default: today), counting
    the credit of `roles`; with a `currency` other than the reporting one, of the deals in it, in it."""
    key = gw.calendar.key_for_date(on or gw.today(), period)
    found = await totals(entry_id, period, key)
    reporting = gw.settings.currency
    if currency is not None and currency != reporting:
        found = found.in_currency(currency)
    return {
        id_field: entry_id, "period": period, "period_key": key, "currency": currency or reporting,
        "kpis": found.credited(roles).report(),
    }


@router.get(
    "/reps/{rep_id}/progress",
    summary="A rep's progress in every plan that covers them",
    response_model=RepProgressResponse,
    responses=PROBLEMS,
)
async def rep_progress(rep_id: str, gw: GatewayDep, who: ReaderKey, date: DateQuery = None) -> Any:
    require_rep(who, gw, rep_id)
    if not gw.rep_known(rep_id):
        raise Problem(404, f"No rep {rep_id!r}: it is not on the roster and has no events.")
    plans = await gw.progress(rep_id, date or gw.today())
    entries = []
    for progress in plans:
        entry = progress.to_dict()
        if await session_close(gw.sessions, progress.plan_id, progress.period_key):
            entry.update(await StatementBook(gw.sessions, gw.calendar, gw.config.state, gw.settings.currency).restated(
                progress.plan_id, progress.period_key, rep_id, progress.value))
        entries.append(entry)
    return {"rep_id": rep_id, "plans": entries}


@router.get(
    "/reps/{rep_id}/achievements",
    summary="The achievements a rep has earned, newest first",
    response_model=RepAchievements,
    responses=PROBLEMS,
)
async def rep_achievements(rep_id: str, gw: GatewayDep, who: ReaderKey) -> Any:
    require_rep(who, gw, rep_id)
    if not gw.rep_known(rep_id):
        raise Problem(404, f"No rep {rep_id!r}: it is not on the roster and has no events.")
    return {"rep_id": rep_id, "achievements": gw.earned(rep_id)}


@router.get(
    "/reps/{rep_id}/streaks", summary="A rep's streaks as of today", response_model=RepStreaks, responses=PROBLEMS
)
async def rep_streaks(rep_id: str, gw: GatewayDep, who: ReaderKey) -> Any:
    require_rep(who, gw, rep_id)
    if not gw.rep_known(rep_id):
        raise Problem(404, f"No rep {rep_id!r}: it is not on the roster and has no events.")
    return {"rep_id": rep_id, "as_of": gw.today().isoformat(), "streaks": gw.rep_streaks(rep_id)}


@router.get(
    "/streaks/{streak_id}/standings",
    summary="A streak's board: current streaks and longest streaks",
    response_model=StreakStandings,
    responses=PROBLEMS,
)
async def streak_standings(
    streak_id: str, gw: GatewayDep, who: ReaderKey, size: Annotated[int, Query(ge=1, le=100)] = 10
) -> Any:
    streak = next((s for s in gw.streak_docs() if s.streak_id == streak_id), None)
    if streak is None:
        raise Problem(404, f"No streak {streak_id!r}.")
    if who.reads_everything or (who.role == "screen" and streak_id in who.scope.boards):
        reps = gw.streak_reps(streak)  # a TV's screen key names the streak among its boards
    elif who.role == "manager":
        team = gw.config.state.members(who.scope.team_id or "")
        reps = [r for r in gw.streak_reps(streak) if r in team]
    else:
        raise out_of_scope(who, f"streak {streak_id!r}")
    today = gw.today()
    roster = gw.config.state.reps()
    rows = []
    for rep_id in reps:
        status = gw.streak_status(streak, rep_id, today)
        doc = roster.get(rep_id, {})
        rows.append({"rep_id": rep_id, "name": doc.get("name") or rep_id, "team_id": doc.get("team_id"),
                     "current": status["current"], "longest": status["longest"], "since": status["since"],
                     "at_risk": status["at_risk"]})
    return {
        "streak_id": streak.streak_id, "name": streak.name, "badge": streak.badge, "as_of": today.isoformat(),
        "rule": streak.rule.model_dump(mode="json"),
        "current": _ranked(rows, "current", size), "longest": _ranked(rows, "longest", size),
    }


def _ranked(rows: list[dict[str, Any]], field: str, size: int) -> list[dict[str, Any]]:
    """The top `size` rows by `field` (above 0), ranked as a board ranks (1, 2, 2, 4; ties by rep id)."""
    by_rep = {row["rep_id"]: row for row in rows if row[field] > 0}
    ranked = rank((Entry(rep_id, Decimal(row[field])) for rep_id, row in by_rep.items()), size)
    return [{"rank": r.rank, **by_rep[r.rep_id]} for r in ranked]


@router.get("/boards/{board_id}/standings", summary="A board's standings", response_model=Standings, responses=PROBLEMS)
async def standings(board_id: str, gw: GatewayDep, who: ReaderKey, date: DateQuery = None) -> Any:
    require_board(who, gw, board_id)
    board = gw.board(board_id)
    if board is None:
        raise Problem(404, f"No board {board_id!r}.")
    return await gw.standings(board, date)
