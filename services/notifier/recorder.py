"""The crossing recorder: every tier a rep snapshot says was reached becomes a crossing, recorded once (a unique
row per rep, plan, period and tier) with one delivery per channel the rep chose, in one transaction; the
delivery worker is woken only after the commit (docs/notifications.md, "Where crossings come from")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from schemas.config import ALL_RECOGNITIONS
from schemas.messages import RepProgress
from schemas.preferences import Preferences
from services.common.background import wait_set
from services.notifier import store
from services.notifier.context import NotifierContext
from services.notifier.scheduling import quiet_until
from services.notifier.store import BOARD, SLACK, TEAMS, NewDelivery
from services.notifier.tier_crossings import (
    ACHIEVEMENT,
    STREAK,
    TIER,
    CrossingKey,
    TierCrossing,
    achievements_in_snapshot,
    crossings_in_snapshot,
    milestones_in_snapshot,
)
from services.scoring.domain.periods import PERIOD_KINDS, kind_of_key
from services.scoring.domain.streaks import StreakCalendar
from services.scoring.domain.streaks import streaks as runs_to_streaks

__all__ = ["CrossingRecorder"]

log = logging.getLogger("salespulse.notifier")

_KNOWN_LIMIT = 1_000_000
"""Crossings remembered as recorded (saves a query); forgotten all at once beyond this many."""


def _union(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    """Merge nested maps whose leaves are first times: a leaf already there keeps its value."""
    for key, value in more.items():
        if isinstance(value, Mapping):
            _union(into.setdefault(key, {}), value)
        else:
            into.setdefault(key, value)


class CrossingRecorder:
    def __init__(self, ctx: NotifierContext) -> None:
        self.ctx = ctx
        self._known: set[CrossingKey] = set()
        self._plans_waited_for: set[str] = set()
        self.awaiting: set[str] = set()
        """Plans of the batch in hand that the config feed has not delivered yet (waited for a few seconds)."""
        self._config_changed = asyncio.Event()
        ctx.config.listeners.append(lambda change: self._config_changed.set())

    async def record(self, snapshots: list[RepProgress]) -> list[TierCrossing]:
        """Record every crossing in these snapshots that is not recorded yet; wake the delivery worker."""
        latest: dict[str, RepProgress] = {}
        reached: dict[str, dict[str, dict[str, dict[str, datetime]]]] = {}
        earned: dict[str, dict[str, dict[str, datetime]]] = {}
        milestones: dict[str, dict[str, dict[str, dict[str, datetime]]]] = {}
        for snapshot in snapshots:
            self.ctx.metrics.snapshots.inc()
            rep_id = snapshot.rep_id
            # `reached`, `earned` and `milestones` only grow, but a batch may hold an older snapshot after a newer
            # one: take the union.
            _union(reached.setdefault(rep_id, {}), snapshot.reached)
            _union(earned.setdefault(rep_id, {}), snapshot.earned)
            _union(milestones.setdefault(rep_id, {}), snapshot.milestones)
            known = latest.get(rep_id)
            if known is None or snapshot.version >= known.version:
                latest[rep_id] = snapshot
        await self._await_plans({plan_id for merged in reached.values() for plan_id in merged})
        plans = self.ctx.config.state.plans()
        achievements, streaks = self.ctx.config.state.achievements(), self.ctx.config.state.streaks()
        candidates: list[TierCrossing] = []
        for rep_id, snapshot in latest.items():
            merged_snapshot = snapshot.model_copy(
                update={"reached": reached[rep_id], "earned": earned[rep_id], "milestones": milestones[rep_id]}
            )
            found = (
                crossings_in_snapshot(merged_snapshot, plans)
                + achievements_in_snapshot(merged_snapshot, achievements)
                + milestones_in_snapshot(merged_snapshot, streaks)
            )
            rep = self.ctx.rep(rep_id)
            for crossing in found:
                if crossing.key in self._known:
                    continue
                crossing.details["rep_name"] = rep.get("name") or rep_id
                if rep.get("email"):
                    crossing.details["email"] = rep["email"]
                candidates.append(crossing)
        if not candidates:
            return []
        now = self.ctx.clock()
        for crossing in candidates:
            if crossing.kind == STREAK:
                self._date_streak(crossing, latest[crossing.rep_id], now)
                continue
            self._date_period(crossing, plans.get(crossing.plan_id) if crossing.kind == TIER else None, now)
        created = await store.record_crossings(self.ctx.sessions, candidates, route=self._router(now), now=now)
        if len(self._known) > _KNOWN_LIMIT:
            self._known.clear()
        self._known.update(c.key for c in candidates)
        for crossing, deliveries in created:
            if crossing.kind == TIER:
                self.ctx.metrics.crossings_recorded.inc()
            else:
                self.ctx.metrics.recognitions_recorded.labels(crossing.kind).inc()
            for delivery in deliveries:
                if delivery.reason:
                    self.ctx.metrics.deferred.labels(delivery.channel, delivery.reason).inc()
                elif delivery.status == "failed":
                    self.ctx.metrics.failed.labels(delivery.channel).inc()
            log.info("%s %s: rep %s %s %s in %s %s (%s)", crossing.kind, crossing.notification_id, crossing.rep_id,
                     "earned" if crossing.kind == ACHIEVEMENT else "reached",
                     crossing.tier_id if crossing.kind == TIER else crossing.tier_name,
                     crossing.plan_id, crossing.period_key,
                     ", ".join(f"{d.channel}:{d.status}" for d in deliveries))
        if created:
            self.ctx.wake.set()
        return [crossing for crossing, _ in created]

    async def _await_plans(self, plan_ids: set[str], timeout: float = 5.0) -> None:
        """A plan created a moment ago may reach scoring's snapshots before this process's config feed: wait a
        little for it (once per plan), so its crossings are recorded with tier names and rewards."""
        missing = plan_ids - set(self.ctx.config.state.plans()) - self._plans_waited_for
        if not missing:
            return
        deadline = time.monotonic() + timeout
        self.awaiting = missing
        try:
            while missing - set(self.ctx.config.state.plans()) and time.monotonic() < deadline:
                self._config_changed.clear()
                if not await wait_set(self._config_changed, max(0.0, deadline - time.monotonic())):
                    break
        finally:
            self.awaiting = set()
        self._plans_waited_for.update(missing)

    def _date_period(self, crossing: TierCrossing, plan: dict[str, Any] | None, now: datetime) -> None:
        """Note in the crossing's details when its period ended, if it has: a late deal or a correction into a
        period that just ended is pushed with wording that names the period; one into a period that ended
        more than SALESPULSE_NOTIFY_MAX_AGE ago is recorded and listed, not pushed (CONTRACT §4)."""
        kind = (plan or {}).get("period") or kind_of_key(crossing.period_key)
        if kind not in PERIOD_KINDS:
            return
        calendar = self.ctx.calendar
        _, end = calendar.bounds(kind, crossing.period_key)
        if end.timestamp() > now.timestamp():
            return
        _, last_day = calendar.parse_key(kind, crossing.period_key)
        crossing.details["period_ended_on"] = (last_day - timedelta(days=1)).isoformat()
        if now - end > self.ctx.settings.notify_max_age:
            crossing.details["not_pushed"] = "the period ended more than SALESPULSE_NOTIFY_MAX_AGE before"

    def _date_streak(self, crossing: TierCrossing, snapshot: RepProgress, now: datetime) -> None:
        """A milestone of a streak whose last day is more than SALESPULSE_NOTIFY_MAX_AGE ago (a streak created after
        the fact, judged over the days the rep's state holds) is recorded and listed, not pushed."""
        config = next((s for s in self.ctx.streaks() if s.streak_id == crossing.plan_id), None)
        if config is None:  # deleted since, or a shape this notifier does not know: pushed as it is
            return
        for run in runs_to_streaks(snapshot.streaks.get(crossing.plan_id, []), StreakCalendar.of(config)):
            if run.first.isoformat() == crossing.period_key:
                if (self.ctx.calendar.local_date(now) - run.last) > self.ctx.settings.notify_max_age:
                    crossing.details["not_pushed"] = "the streak ended more than SALESPULSE_NOTIFY_MAX_AGE before"
                return

    def _router(self, now: datetime) -> store.Router:
        def route(crossing: TierCrossing, prefs: Preferences | None) -> list[NewDelivery]:
            """Board celebration always, and the team's Slack and Teams channels when its chat route takes this kind
            (docs/notifications.md, "Slack and Teams"); each channel the rep chose, deferred while the rep is in
            quiet hours. A
            channel the rep chose explicitly but that cannot reach them is recorded as failed, with why;
            an unavailable default channel is left out."""
            if crossing.details.get("not_pushed"):
                return []  # in the log, pushed nowhere: the period ended long before the crossing was seen
            chosen = prefs or self.ctx.defaults
            out = [NewDelivery(BOARD)]
            state = self.ctx.config.state
            route = state.chat_route(state.team_of(crossing.rep_id))
            if route is not None and crossing.kind in route.get("kinds", ALL_RECOGNITIONS):
                out += [NewDelivery(chat) for chat in (SLACK, TEAMS) if route.get(chat)]
            quiet_end = quiet_until(now, chosen.quiet(), self.ctx.zone_of(crossing.rep_id))
            for channel in chosen.channels:
                problem = self.ctx.unavailable(channel, crossing.rep_id)
                if problem:
                    if prefs is not None:
                        out.append(NewDelivery(channel, status="failed", last_error=problem))
                    continue
                if quiet_end is not None:
                    out.append(NewDelivery(channel, status="deferred", due_at=quiet_end, reason="quiet_hours"))
                else:
                    out.append(NewDelivery(channel))
            return out

        return route
