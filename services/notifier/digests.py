"""The coaching digest scheduler: at each slot of the schedule (on the manager's wall clock) it records, once per
team and slot, a digest of the team's reps behind pace; the delivery worker sends it
(docs/notifications.md, "Coaching digest")."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from schemas.preferences import parse_clock
from services.notifier import store
from services.notifier.channels import EmailChannel
from services.notifier.coaching import reps_behind_pace, streaks_at_risk
from services.notifier.consumer import ProgressFeed
from services.notifier.context import NotifierContext
from services.notifier.scheduling import digest_slot

__all__ = ["DIGEST_GRACE", "DigestScheduler"]

log = logging.getLogger("salespulse.notifier")

DIGEST_GRACE = timedelta(hours=6)
"""A digest slot missed while no notifier ran is still sent this long after its time, once."""


class DigestScheduler:
    def __init__(self, ctx: NotifierContext, email: EmailChannel, progress: ProgressFeed) -> None:
        self.ctx = ctx
        self._email = email
        self._progress = progress
        self._digests_done: set[tuple[str, str]] = set()

    async def run(self) -> None:
        """Make each slot's digests as the slots come, until cancelled."""
        if not self._email.configured:
            log.info("coaching digests are off: no SMTP server configured (SALESPULSE_NOTIFY_SMTP_HOST)")
            return
        await self.ctx.config.caught_up.wait()
        await self._progress.caught_up.wait()
        while True:
            try:
                await self.run_scheduled_digests()
            except asyncio.CancelledError:
                raise
            except Exception:  # logged; the next slot check tries again
                log.exception("coaching digest run failed; trying again shortly")
            await asyncio.sleep(30)

    async def run_scheduled_digests(self) -> list[dict[str, Any]]:
        """Make the digest of every team whose latest slot (in its manager's time zone) has come and is not
        older than DIGEST_GRACE; each (team, slot) is made once, whichever notifier gets there first."""
        if not self._email.configured:
            return []  # digests are e-mail only (logged once at start-up)
        now = self.ctx.clock()
        at = parse_clock(self.ctx.settings.notify_digest_at)
        made = []
        for team_id, team in sorted(self.ctx.config.state.teams().items()):
            manager = team.get("manager_rep_id")
            if not manager:
                continue
            schedule = self.ctx.settings.notify_digest_schedule
            slot = digest_slot(now, schedule=schedule, at=at, zone=self.ctx.zone_of(manager))
            if slot is None or now - slot[1] > DIGEST_GRACE:
                continue
            slot_key = f"{self.ctx.settings.notify_digest_schedule}:{slot[0]}"
            if (team_id, slot_key) in self._digests_done:
                continue
            result = await self.make_digest(team_id, slot_key, now)
            self._digests_done.add((team_id, slot_key))
            if result:
                made.append(result)
        return made

    async def run_digests_now(self) -> list[dict[str, Any]]:
        """A digest for every team with a manager, now (outside the schedule): for operators and tests."""
        now = self.ctx.clock()
        made = []
        for team_id, team in sorted(self.ctx.config.state.teams().items()):
            if team.get("manager_rep_id"):
                result = await self.make_digest(team_id, f"manual:{now.isoformat()}", now)
                if result:
                    made.append(result)
        return made

    async def make_digest(self, team_id: str, slot: str, now: datetime) -> dict[str, Any] | None:
        """Record the team's digest for `slot` (sent by the delivery worker): the reps behind pace and the streaks
        about to break; None when there is neither or the slot was already made."""
        team = self.ctx.config.state.teams().get(team_id) or {}
        manager = team.get("manager_rep_id")
        if not manager:
            return None
        roster, members = self.ctx.config.state.reps(), self.ctx.config.state.members(team_id)
        rows = reps_behind_pace(
            team_id=team_id,
            members=members,
            roster=roster,
            manager_rep_id=manager,
            plans=self.ctx.plans(),
            progress_by_rep=self._progress.progress,
            calendar=self.ctx.calendar,
            now=now,
            pace_below=self.ctx.settings.notify_digest_pace_below,
            min_elapsed=self.ctx.settings.notify_digest_min_elapsed,
        )
        at_risk = streaks_at_risk(
            team_id=team_id,
            members=members,
            roster=roster,
            manager_rep_id=manager,
            streaks=self.ctx.streaks(),
            runs_by_rep=self._progress.streaks,
            today=self.ctx.calendar.local_date(now),
        )
        if not rows and not at_risk:
            return None
        email = (roster.get(manager) or {}).get("email")
        digest_id = "cd_" + hashlib.sha256(f"{team_id}\x1f{slot}".encode()).hexdigest()[:32]
        body = {
            "team_id": team_id,
            "team_name": team.get("name") or team_id,
            "manager_rep_id": manager,
            "manager_name": (roster.get(manager) or {}).get("name") or manager,
            "rows": rows,
            "streaks_at_risk": at_risk,
        }
        problem = None
        if not email:
            problem = f"manager {manager} of team {team_id} has no e-mail address on the roster"
        elif not self._email.configured:
            problem = "no SMTP server configured (SALESPULSE_NOTIFY_SMTP_HOST)"
        created = await store.create_digest(
            self.ctx.sessions, digest_id=digest_id, team_id=team_id, slot=slot, manager_rep_id=manager, email=email,
            body=body, status="failed" if problem else "pending", last_error=problem, now=now,
        )
        if not created:
            return None
        self.ctx.metrics.digests.labels("failed" if problem else "created").inc()
        if problem:
            log.warning("coaching digest for team %s not sent: %s", team_id, problem)
        else:
            self.ctx.wake.set()
        return {"digest_id": digest_id, "slot": slot, "email": email, "status": "failed" if problem else "pending",
                **body}
