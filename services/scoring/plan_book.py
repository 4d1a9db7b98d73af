"""The plans, roster and contests a scoring worker applies to rep states, followed from the config topic:
after each batch a touched rep's progress is recomputed, newly reached tiers are recorded in its state
(so they are stored with it, exactly once), and contest totals are added to its snapshot."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime
from typing import Any

from schemas.config import Achievement, Board, Plan, Streak
from services.common.config_feed import ConfigFollower
from services.common.dead_letters import DeadLetters
from services.common.settings import Settings
from services.scoring.domain.achievements import (
    deal_achievements,
    needs_deal_totals,
    period_achievements,
    window_achievements,
)
from services.scoring.domain.contests import DayLookup, contest_totals, window_minutes
from services.scoring.domain.credits import Credit
from services.scoring.domain.fx import FxTable
from services.scoring.domain.incentives import plan_progress
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import Calendar, PeriodKind
from services.scoring.domain.progress import Progress
from services.scoring.domain.rep_state import RepState
from services.scoring.domain.streaks import StreakCalendar, judge_streaks

log = logging.getLogger("salespulse.scoring.plans")


class PlanBook:
    def __init__(self, settings: Settings, calendar: Calendar, dead_letters: DeadLetters | None = None) -> None:
        self.calendar = calendar
        self.follower = ConfigFollower(settings, dead_letters)
        self.changed = asyncio.Event()
        self._plans: list[Plan] | None = None
        self._contests: list[Board] | None = None
        self._achievements: list[Achievement] | None = None
        self._streaks: list[tuple[Streak, StreakCalendar]] | None = None
        self._fx: FxTable | None = None
        self._currency = settings.currency
        self.follower.listeners.append(self._on_change)

    def start(self) -> None:
        self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    def _on_change(self, change: dict[str, Any]) -> None:
        self._plans = None
        self._contests = None
        self._achievements = None
        self._streaks = None
        if change["kind"] == "fx":
            self._fx = None
        self.changed.set()

    def fx(self) -> FxTable:
        """The FX rates as the config topic has them now (services/scoring/domain/fx.py)."""
        if self._fx is None:
            self._fx = FxTable(self._currency, self.follower.state.fx())
        return self._fx

    def plans(self) -> list[Plan]:
        if self._plans is None:
            self._plans = self.follower.state.models("plan", Plan)
        return self._plans

    def achievements(self) -> list[Achievement]:
        """The achievements as the config topic has them now (docs/achievements.md)."""
        if self._achievements is None:
            self._achievements = self.follower.state.models("achievement", Achievement)
        return self._achievements

    def streaks(self) -> list[tuple[Streak, StreakCalendar]]:
        """The streaks as the config topic has them now, each with its working-day calendar."""
        if self._streaks is None:
            found = self.follower.state.models("streak", Streak)
            self._streaks = [(streak, StreakCalendar.of(streak)) for streak in found]
        return self._streaks

    def judges_deals(self) -> bool:
        """Whether an achievement is judged on single deals (the deal agent then marks each credit's deal total)."""
        return needs_deal_totals(self.achievements())

    def deal_achievements(self, state: RepState, credits: list[Credit], now: datetime) -> None:
        """Record the achievements one deal event's credits earn the rep (a rule of kind `deal`)."""
        deal_achievements(self.achievements(), state, self.follower.state.team_of(state.rep_id), credits,
                          self.calendar, now)

    def contests(self) -> list[Board]:
        if self._contests is None:
            self._contests = [board for board in self.follower.state.models("board", Board) if board.window is not None]
        return self._contests

    def refresh(
        self, state: RepState, now: datetime, *, every_period: bool = False, days: DayLookup | None = None
    ) -> list[dict[str, object]]:
        """The rep's progress in every plan covering them today, for the snapshot; and the tiers newly reached
        recorded in `state` — today's, and those of every other plan period whose totals changed since the
        last refresh (a late deal, a correction, history: CONTRACT §4 holds for every period). With
        `every_period`, every plan period the state holds is looked at (a plan created or changed). The
        achievements newly earned are recorded the same way (those over a window when `days`, the rep's
        minute days, is given)."""
        team = self.follower.state.team_of(state.rep_id)
        on = self.calendar.local_date(now)
        changed = state.touched
        state.touched = set()
        out = []
        for plan in self.plans():
            progress = self._progress(plan, state, team, on, now)
            if progress is not None:
                out.append(progress.to_dict())
            kind: PeriodKind = plan.period
            keys = list(state.periods[kind]) if every_period else [key for (k, key) in changed if k == kind]
            for key in keys:
                if (progress is None or key != progress.period_key) and state.holds(kind, key):
                    start, _ = self.calendar.parse_key(kind, key)
                    self._progress(plan, state, team, start, now)
        streaks = self.streaks()
        if streaks:
            day_keys = None if every_period else {key for (k, key) in changed if k == "day"}
            judge_streaks(streaks, state, team, day_keys, now)
        achievements = self.achievements()
        if achievements:
            period_achievements(achievements, state, team, self.calendar, now, None if every_period else changed)
            if days is not None:
                window_achievements(achievements, state, team, days, now)
        return out

    def _progress(self, plan: Plan, state: RepState, team: str | None, on: date, now: datetime) -> Progress | None:
        """The rep's progress in `plan` for the period containing `on`; records the tiers newly reached."""
        progress = plan_progress(
            plan, rep_id=state.rep_id, team_id=team, totals=state.totals, calendar=self.calendar, on=on, now=now
        )
        if progress is not None:
            tiers = [(tier.tier_id, tier.threshold) for tier in plan.tiers]
            state.record_tiers(plan.plan_id, progress.period_key, tiers, progress.attainment, now)
        return progress

    def contest_totals(self, state: RepState, days: DayLookup) -> dict[str, KpiTotals]:
        """The rep's totals in every contest (a board with a window) it has something in, over the minutes kept
        in its minute days (`days`) and outbox (the gateway adds those already in history)."""
        contests = {}
        floor = state.minute_floor
        for board in self.contests():
            assert board.window is not None
            if floor is not None and window_minutes(board.window.starts_at, board.window.ends_at)[1] <= floor:
                continue  # the whole window is in history
            totals = contest_totals(state, days, board.window.starts_at, board.window.ends_at)
            if not totals.is_zero():
                contests[board.board_id] = totals
        return contests
