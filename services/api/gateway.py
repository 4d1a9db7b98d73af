"""The gateway's state and its questions: KPIs, plan progress and standings over the read model
(hot periods), SQL history (older periods) and the configuration feed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial

from aiokafka import AIOKafkaProducer

from schemas.config import Board, Plan, Streak
from services.api.config_store import ConfigStore
from services.api.hub import Hub
from services.api.read_model import ReadModel
from services.api.readiness import Readiness
from services.api.tally import BoardTally
from services.common.auth import KeyStore
from services.common.config_feed import ConfigFollower
from services.common.db import Sessions
from services.common.dead_letters import DeadLetters
from services.common.history import contest_history, history_totals
from services.common.settings import Settings
from services.scoring.domain.contests import window_minutes
from services.scoring.domain.incentives import plan_progress
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import PERIOD_KINDS, Calendar, PeriodKind
from services.scoring.domain.plans import TierRef, current_tier, is_participant
from services.scoring.domain.progress import Progress
from services.scoring.domain.standings import Entry
from services.scoring.domain.streaks import StreakCalendar
from services.scoring.domain.streaks import status as streak_status


@dataclass
class Gateway:
    settings: Settings
    calendar: Calendar
    sessions: Sessions
    keys: KeyStore
    model: ReadModel
    config: ConfigFollower
    hub: Hub
    config_store: ConfigStore
    readiness: Readiness
    dead_letters: DeadLetters | None = None
    producer: AIOKafkaProducer | None = None

    # --- configuration, parsed once per version ----------------------------------------------------
    def plans(self) -> list[Plan]:
        state = self.config.state
        return [p for pid in sorted(state.plans()) if (p := state.model("plan", pid, Plan)) is not None]

    def plan(self, plan_id: str) -> Plan | None:
        return self.config.state.model("plan", plan_id, Plan)

    def board(self, board_id: str) -> Board | None:
        return self.config.state.model("board", board_id, Board)

    # --- time --------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.settings.clock.now()

    def today(self) -> date:
        return self.calendar.local_date(self.now())

    # --- KPIs --------------------------------------------------------------------------------------
    def rep_known(self, rep_id: str) -> bool:
        return rep_id in self.model.reps or rep_id in self.config.state.reps()

    def hot_totals(self, rep_id: str, kind: PeriodKind, key: str) -> KpiTotals | None:
        """Totals from the read model, or None when the period is older than the rep's hot state."""
        view = self.model.reps.get(rep_id)
        if view is None:
            return KpiTotals()
        return view.totals(kind, key)

    def hot_or_zero(self, rep_id: str, kind: PeriodKind, key: str) -> KpiTotals:
        """Totals from the read model; zeros for a period it no longer holds (boards rank hot periods only)."""
        return self.hot_totals(rep_id, kind, key) or KpiTotals()

    async def rep_totals(self, rep_id: str, kind: PeriodKind, key: str) -> KpiTotals:
        hot = self.hot_totals(rep_id, kind, key)
        if hot is not None:
            return hot
        return await history_totals(self.sessions, rep_id, kind, key) or KpiTotals()

    async def team_totals(self, team_id: str, kind: PeriodKind, key: str) -> KpiTotals:
        members = self.config.state.members(team_id)
        return KpiTotals().merged([await self.rep_totals(rep, kind, key) for rep in members])

    def current_kpis(self, rep_id: str) -> dict[str, object]:
        """KPIs of the current day, week, month, quarter and year (the live part of a rep screen)."""
        on = self.today()
        out: dict[str, object] = {}
        for kind in PERIOD_KINDS:
            key = self.calendar.key_for_date(on, kind)
            totals = self.hot_totals(rep_id, kind, key) or KpiTotals()
            out[kind] = {"period_key": key, "kpis": totals.report()}
        return out

    # --- plans -------------------------------------------------------------------------------------
    async def progress(self, rep_id: str, on: date) -> list[Progress]:
        team = self.config.state.team_of(rep_id)
        now = self.now()
        cache: dict[tuple[PeriodKind, str], KpiTotals] = {}
        for plan in self.plans():
            kind: PeriodKind = plan.period
            key = self.calendar.key_for_date(on, kind)
            if (kind, key) not in cache:
                cache[(kind, key)] = await self.rep_totals(rep_id, kind, key)
        out = []
        for plan in self.plans():
            progress = plan_progress(
                plan, rep_id=rep_id, team_id=team, totals=lambda k, key: cache[(k, key)],
                calendar=self.calendar, on=on, now=now,
            )
            if progress is not None:
                out.append(progress)
        return out

    def live_progress(self, rep_id: str) -> list[dict[str, object]]:
        """Progress for today from hot state only (no I/O): what rep screens are pushed."""
        team = self.config.state.team_of(rep_id)
        now, on = self.now(), self.today()

        def totals(kind: PeriodKind, key: str) -> KpiTotals:
            return self.hot_totals(rep_id, kind, key) or KpiTotals()

        out = []
        for plan in self.plans():
            progress = plan_progress(plan, rep_id=rep_id, team_id=team, totals=totals, calendar=self.calendar,
                                     on=on, now=now)
            if progress is not None:
                out.append(progress.to_dict())
        return out

    def earned(self, rep_id: str, limit: int | None = None) -> list[dict[str, object]]:
        """The achievements the rep has earned (from their newest snapshot), newest first, with the name, badge
        and description the configuration gives them now (an achievement deleted since shows its id)."""
        view = self.model.reps.get(rep_id)
        if view is None:
            return []
        docs = self.config.state.achievements()
        out: list[dict[str, object]] = []
        for achievement_id, periods in view.snapshot.earned.items():
            doc = docs.get(achievement_id) or {}
            for period_key, when in periods.items():
                out.append({
                    "achievement_id": achievement_id, "name": doc.get("name") or achievement_id,
                    "badge": doc.get("badge") or "\U0001F3C5", "description": doc.get("description"),
                    "period_key": period_key, "earned_at": when.isoformat().replace("+00:00", "Z"),
                })
        out.sort(key=lambda a: (str(a["earned_at"]), str(a["achievement_id"]), str(a["period_key"])), reverse=True)
        return out if limit is None else out[:limit]

    # --- streaks -----------------------------------------------------------------------------------
    def streak_docs(self) -> list[Streak]:
        state = self.config.state
        return [s for sid in sorted(state.streaks()) if (s := state.model("streak", sid, Streak)) is not None]

    def streak_status(self, streak: Streak, rep_id: str, today: date | None = None) -> dict[str, object]:
        """The rep's streak as of today (business timezone): current and longest, since when, whether at risk."""
        view = self.model.reps.get(rep_id)
        runs = view.snapshot.streaks.get(streak.streak_id, []) if view is not None else []
        found = streak_status(runs, StreakCalendar.of(streak), today or self.today())
        return {
            "streak_id": streak.streak_id, "name": streak.name, "badge": streak.badge, "current": found.current,
            "longest": found.longest, "since": found.since.isoformat() if found.since else None,
            "at_risk": found.at_risk, "met_today": found.met_today,
        }

    def rep_streaks(self, rep_id: str) -> list[dict[str, object]]:
        """Every streak the rep takes part in, as of today."""
        team = self.config.state.team_of(rep_id)
        return [self.streak_status(s, rep_id) for s in self.streak_docs()
                if is_participant(rep_id, team, s.participants)]

    def streak_reps(self, streak: Streak) -> list[str]:
        """Who a streak's board ranks: its participants on the roster, and reps with qualifying days."""
        reps = self.config.state.reps()
        found = {r for r, doc in reps.items() if is_participant(r, doc.get("team_id"), streak.participants)}
        found |= {r for r, view in self.model.reps.items() if streak.streak_id in view.snapshot.streaks}
        return sorted(found)

    # --- boards ------------------------------------------------------------------------------------
    def board_reps(self, board: Board) -> list[str]:
        teams = set(board.scope.teams)
        roster = self.config.state.reps()
        if teams:
            return sorted(r for r, doc in roster.items() if doc.get("team_id") in teams)
        return sorted(set(roster) | set(self.model.reps))

    def on_board(self, board: Board, rep_id: str) -> bool:
        """Whether the rep is one of `board_reps(board)`."""
        teams = board.scope.teams
        if teams:
            return self.config.state.reps().get(rep_id, {}).get("team_id") in teams
        return rep_id in self.model.reps or rep_id in self.config.state.reps()

    async def standings(self, board: Board, on: date | None = None) -> dict[str, object]:
        """Standings from hot state (boards show current periods; older dates use the same rule); a contest
        adds what of its window is already in history."""
        return (await self.tally(board, on)).message()

    async def tally(self, board: Board, on: date | None = None) -> BoardTally:
        """Every entry of the board, computed afresh (see BoardTally)."""
        on = on or self.today()
        if board.window is not None:
            period_key = f"{board.window.starts_at.isoformat()}/{board.window.ends_at.isoformat()}"
        else:
            period_key = self.calendar.key_for_date(on, board.period)  # type: ignore[arg-type]
        plan = self.plan(board.plan_id) if board.plan_id else None
        tally = BoardTally(board, plan, on, period_key)
        if board.battle is not None:
            teams = self.config.state.teams()
            tally.team_names = {t: (teams.get(t) or {}).get("name") or t for t in board.battle.teams}
        await self.retally(tally, self.board_reps(board))
        return tally

    async def retally(self, tally: BoardTally, reps: Sequence[str]) -> None:
        """Recompute the entries of `reps` (those that changed) in `tally`; reps no longer on the board leave it."""
        board, roster, now = tally.board, self.config.state.reps(), self.now()
        changed = [rep_id for rep_id in reps if self.on_board(board, rep_id)]
        for rep_id in set(reps).difference(changed):
            tally.entries.pop(rep_id, None)
            tally.updated_ms.pop(rep_id, None)
            tally.history.pop(rep_id, None)
        if board.window is not None:
            await self._read_contest_history(tally, changed)
        for rep_id in changed:
            view = self.model.reps.get(rep_id)
            if view is not None:
                tally.updated_ms[rep_id] = view.updated_ms
            doc = roster.get(rep_id, {})
            if board.window is not None:
                contest = view.contest(board.board_id) if view else None
                past = tally.history.get(rep_id, (0, None))[1]
                if past is not None:
                    contest = past if contest is None else contest + past
                value = contest.credited(board.credit_roles).value(board.metric) if contest else Decimal(0)
            else:
                totals = self.hot_or_zero(rep_id, board.period, tally.period_key)  # type: ignore[arg-type]
                value = totals.credited(board.credit_roles).value(board.metric)
            attainment = tier = None
            if tally.plan is not None:
                rep_progress = plan_progress(
                    tally.plan, rep_id=rep_id, team_id=doc.get("team_id"),
                    totals=partial(self.hot_or_zero, rep_id),
                    calendar=self.calendar, on=tally.on, now=now,
                )
                if rep_progress is not None:
                    attainment = rep_progress.attainment
                    reached = current_tier(attainment, tally.plan.tiers)
                    tier = TierRef.of(reached) if reached else None
            tally.entries[rep_id] = Entry(
                rep_id=rep_id, value=value if value is not None else Decimal(0), name=doc.get("name"),
                team_id=doc.get("team_id"), attainment=attainment, tier=tier,
            )

    async def _read_contest_history(self, tally: BoardTally, reps: list[str]) -> None:
        """The part of a contest's window that left the reps' hot state for history (CONTRACT §5: a contest is
        exact for any window, whenever asked — one that ended long ago or was defined after the fact); read
        again for a rep only when its minute floor moved."""
        window = tally.board.window
        assert window is not None
        first, end = window_minutes(window.starts_at, window.ends_at)
        floors = {}
        for rep_id in reps:
            view = self.model.reps.get(rep_id)
            floor = view.minute_floor if view is not None else None
            if floor is None or first >= floor:
                tally.history.pop(rep_id, None)
            elif tally.history.get(rep_id, (None, None))[0] != floor:
                floors[rep_id] = floor
        if floors:
            found = await contest_history(self.sessions, floors, first, end)
            for rep_id, floor in floors.items():
                tally.history[rep_id] = (floor, found.get(rep_id))
