"""The notifier: records each tier crossing once (from rep snapshots and its SQL record), creates one delivery
per channel the rep chose, and a worker sends due deliveries with retries, quiet hours and an hourly cap;
a scheduler makes coaching digests for team managers.

Order of work for a crossing: insert the crossing and its deliveries in one transaction; commit; only then
send. A crash before the commit loses nothing (the snapshot is read again: its offset was not committed); a
crash after it leaves deliveries in SQL for the next worker."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import async_sessionmaker

from schemas.config import Plan
from schemas.messages import RepProgress
from schemas.preferences import Preferences, parse_clock
from services.common.backoff import Backoff
from services.common.config_feed import ConfigFollower
from services.common.dead_letters import DeadLetters
from services.common.kafka import make_producer
from services.common.preferences import default_preferences, read_preferences
from services.common.settings import Settings
from services.notifier import store
from services.notifier.channels import (
    BoardChannel,
    DeliveryError,
    EmailChannel,
    InAppChannel,
    Sender,
    WebhookChannel,
)
from services.notifier.coaching import reps_behind_pace
from services.notifier.consumer import ProgressFeed, SnapshotConsumer
from services.notifier.messages import digest_email
from services.notifier.metrics import NotifierMetrics
from services.notifier.scheduling import (
    digest_slot,
    hour_window,
    quiet_until,
    schedule_delivery,
)
from services.notifier.store import BOARD, ClaimedDelivery, ClaimedDigest, NewDelivery
from services.notifier.tier_crossings import CrossingKey, TierCrossing, crossings_in_snapshot
from services.scoring.domain.periods import Calendar

log = logging.getLogger("salespulse.notifier")

__all__ = ["Notifier"]

Now = Callable[[], datetime]
"""What time it is; by default the settings' clock (services/common/clock.py)."""
DIGEST_GRACE = timedelta(hours=6)
"""A digest slot missed while no notifier ran is still sent this long after its time, once."""
_KNOWN_LIMIT = 1_000_000


class Notifier:
    def __init__(
        self,
        settings: Settings,
        *,
        sessions: async_sessionmaker,
        registry: CollectorRegistry,
        clock: Now | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock: Now = clock or settings.clock.now
        self.rng = rng or random.Random()
        self.retries = Backoff(settings.notify_retry_base_seconds, settings.notify_retry_max_seconds, jitter=0.5,
                               rng=self.rng)
        """Retry n waits min(max, base × 2^(n−1)), half of it fixed and half random ("equal jitter")."""
        self.metrics = NotifierMetrics(registry)
        self.calendar = Calendar(settings.timezone, settings.fiscal_year_start_month)
        self.defaults = default_preferences(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self.dead_letters = DeadLetters(settings, registry)
        self.config = ConfigFollower(settings, self.dead_letters)
        self.progress = ProgressFeed(settings)  # its unreadable records are the consumer's to set aside
        self.consumer = SnapshotConsumer(settings, self.handle_snapshots, self.dead_letters)
        self.producer = make_producer(settings)
        self.http = httpx.AsyncClient(timeout=settings.notify_send_timeout)
        self.webhook = WebhookChannel(settings, self.http)
        self.email = EmailChannel(settings, self._email_of)
        self.channels: dict[str, Sender] = {
            "in_app": InAppChannel(settings, self.producer),
            BOARD: BoardChannel(settings, self.producer),
            "webhook": self.webhook,
            "email": self.email,
        }
        self.wake = asyncio.Event()
        self._known: set[CrossingKey] = set()
        self._digests_done: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._plans: dict[tuple[str, int], Plan] = {}
        self._plans_waited_for: set[str] = set()
        self._config_changed = asyncio.Event()
        self.config.listeners.append(lambda change: self._config_changed.set())

    # --- life cycle --------------------------------------------------------------------------------------

    async def start(self, *, consume: bool = True, deliver: bool = True, digests: bool = True) -> None:
        await self._start_producer()
        self.config.start()
        self.progress.start()
        if consume:
            self._tasks.append(asyncio.create_task(self._consume_after_config(), name="notifier-consume"))
        if deliver:
            self._tasks.append(asyncio.create_task(self._deliver_loop(), name="notifier-deliver"))
        if digests and self.settings.notify_digest_schedule != "off":
            self._tasks.append(asyncio.create_task(self._digest_loop(), name="notifier-digests"))

    async def _start_producer(self) -> None:
        delay = 0.2
        for _ in range(50):
            try:
                await self.producer.start()
                return
            except Exception as exc:  # noqa: BLE001  (broker not up yet)
                log.warning("notifier producer not started (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        await self.producer.start()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks.clear()
        await self.consumer.stop()
        await self.progress.stop()
        await self.config.stop()
        await self.http.aclose()
        await self.dead_letters.close()
        try:
            await self.producer.stop()
        except Exception:  # noqa: BLE001
            pass

    async def _consume_after_config(self) -> None:
        # Tier names, rewards and each rep's e-mail and time zone come from the config feed.
        await self.config.caught_up.wait()
        self.consumer.start()

    # --- roster and plans -----------------------------------------------------------------------------------

    def _rep(self, rep_id: str) -> dict[str, Any]:
        return self.config.state.reps().get(rep_id) or {}

    def _email_of(self, rep_id: str) -> str | None:
        return self._rep(rep_id).get("email")

    def zone_of(self, rep_id: str) -> ZoneInfo:
        """The rep's roster time zone, else the business time zone."""
        name = self._rep(rep_id).get("timezone")
        try:
            return ZoneInfo(name) if name else self.settings.zone
        except (KeyError, ValueError):
            return self.settings.zone

    def plans(self) -> list[Plan]:
        out = []
        versions = self.config.state.versions
        for plan_id, doc in sorted(self.config.state.plans().items()):
            key = (plan_id, versions.get(f"plan:{plan_id}", 0))
            plan = self._plans.get(key)
            if plan is None:
                if len(self._plans) > 1000:
                    self._plans.clear()
                try:
                    plan = self._plans[key] = Plan.model_validate(doc)
                except ValueError:
                    continue
            out.append(plan)
        return out

    # --- crossings ------------------------------------------------------------------------------------------

    async def handle_snapshots(self, snapshots: list[RepProgress]) -> list[TierCrossing]:
        """Record every crossing in these snapshots that is not recorded yet; wake the delivery worker."""
        latest: dict[str, RepProgress] = {}
        reached: dict[str, dict[str, dict[str, dict[str, datetime]]]] = {}
        for snapshot in snapshots:
            self.metrics.snapshots.inc()
            rep_id = snapshot.rep_id
            # `reached` only grows, but a batch may hold an older snapshot after a newer one: take the union.
            merged = reached.setdefault(rep_id, {})
            for plan_id, periods in snapshot.reached.items():
                for period_key, tiers in periods.items():
                    slot = merged.setdefault(plan_id, {}).setdefault(period_key, {})
                    for tier_id, when in tiers.items():
                        slot.setdefault(tier_id, when)
            known = latest.get(rep_id)
            if known is None or snapshot.version >= known.version:
                latest[rep_id] = snapshot
        await self._await_plans({plan_id for merged in reached.values() for plan_id in merged})
        plans = self.config.state.plans()
        candidates: list[TierCrossing] = []
        for rep_id, snapshot in latest.items():
            found = crossings_in_snapshot(snapshot.model_copy(update={"reached": reached[rep_id]}), plans)
            rep = self._rep(rep_id)
            for crossing in found:
                if crossing.key in self._known:
                    continue
                crossing.details["rep_name"] = rep.get("name") or rep_id
                if rep.get("email"):
                    crossing.details["email"] = rep["email"]
                candidates.append(crossing)
        if not candidates:
            return []
        now = self.clock()
        created = await store.record_crossings(self.sessions, candidates, route=self._router(now), now=now)
        if len(self._known) > _KNOWN_LIMIT:
            self._known.clear()
        self._known.update(c.key for c in candidates)
        for crossing, deliveries in created:
            self.metrics.crossings_recorded.inc()
            for delivery in deliveries:
                if delivery.reason:
                    self.metrics.deferred.labels(delivery.channel, delivery.reason).inc()
                elif delivery.status == "failed":
                    self.metrics.failed.labels(delivery.channel).inc()
            log.info("tier crossing %s: rep %s reached %s in %s %s (%s)", crossing.notification_id, crossing.rep_id,
                     crossing.tier_id, crossing.plan_id, crossing.period_key,
                     ", ".join(f"{d.channel}:{d.status}" for d in deliveries))
        if created:
            self.wake.set()
        return [crossing for crossing, _ in created]

    async def _await_plans(self, plan_ids: set[str], timeout: float = 5.0) -> None:
        """A plan created a moment ago may reach scoring's snapshots before this process's config feed: wait a
        little for it (once per plan), so its crossings are recorded with tier names and rewards."""
        missing = plan_ids - set(self.config.state.plans()) - self._plans_waited_for
        if not missing:
            return
        deadline = time.monotonic() + timeout
        while missing - set(self.config.state.plans()) and time.monotonic() < deadline:
            self._config_changed.clear()
            try:
                await asyncio.wait_for(self._config_changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
        self._plans_waited_for.update(missing)

    def _unavailable(self, channel: str, rep_id: str) -> str | None:
        """Why `channel` cannot reach the rep, or None when it can."""
        if channel == "webhook" and not self.webhook.configured:
            return "no webhook configured (SALESPULSE_NOTIFY_SLACK_WEBHOOK_URLS / SALESPULSE_NOTIFY_WEBHOOK_URLS)"
        if channel == "email":
            if not self.email.configured:
                return "no SMTP server configured (SALESPULSE_NOTIFY_SMTP_HOST)"
            if not self._email_of(rep_id):
                return f"rep {rep_id} has no e-mail address on the roster"
        return None

    def _router(self, now: datetime) -> store.Router:
        def route(crossing: TierCrossing, prefs: Preferences | None) -> list[NewDelivery]:
            """Board celebration always; each chosen channel, deferred while the rep is in quiet hours. A
            channel the rep chose explicitly but that cannot reach them is recorded as failed, with why;
            an unavailable default channel is left out."""
            chosen = prefs or self.defaults
            out = [NewDelivery(BOARD)]
            quiet_end = quiet_until(now, chosen.quiet(), self.zone_of(crossing.rep_id))
            for channel in chosen.channels:
                problem = self._unavailable(channel, crossing.rep_id)
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

    # --- deliveries -----------------------------------------------------------------------------------------

    def _lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.notify_lease_seconds)

    async def _deliver_loop(self) -> None:
        backoff = 0.2
        last_gauge = 0.0
        while True:
            try:
                worked = await self.deliver_due()
                if time.monotonic() - last_gauge > 5:
                    self.metrics.open_deliveries.set(await store.count_open(self.sessions))
                    last_gauge = time.monotonic()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception:  # database away: keep trying
                log.exception("delivery worker paused; retrying in %.1f s", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if worked:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self.settings.notify_poll_seconds)
            except TimeoutError:
                pass
            self.wake.clear()

    async def deliver_due(self) -> int:
        """Claim what is due (deliveries and digests), send it, record the outcome; how many were handled."""
        now = self.clock()
        until = self._lease_until(now)
        deliveries = await store.claim_due_deliveries(self.sessions, now=now, owner=self.owner, lease_until=until)
        digests = await store.claim_due_digests(self.sessions, now=now, owner=self.owner, lease_until=until)
        if not deliveries and not digests:
            return 0
        await asyncio.gather(
            *(self._deliver(d) for d in deliveries), *(self._deliver_digest(g) for g in digests)
        )
        return len(deliveries) + len(digests)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            await self._deliver_one(delivery)
        except Exception:  # noqa: BLE001  (the lease runs out and the delivery is tried again)
            log.exception("delivery %s (%s) crashed", delivery.notification_id, delivery.channel)

    async def _deliver_one(self, delivery: ClaimedDelivery) -> None:
        channel = delivery.channel
        now = self.clock()
        if channel != BOARD:
            prefs = await read_preferences(self.sessions, delivery.rep_id) or self.defaults
            zone = self.zone_of(delivery.rep_id)
            sent = 0
            if prefs.max_per_hour is not None:
                start, end = hour_window(now, zone)
                sent = await store.sent_in_window(self.sessions, delivery.rep_id, channel, start, end)
            decision = schedule_delivery(
                now, quiet=prefs.quiet(), max_per_hour=prefs.max_per_hour, sent_in_window=sent, zone=zone
            )
            if decision.due_at is not None:
                await store.defer(self.sessions, "delivery", delivery.delivery_id, self.owner, decision.due_at)
                self.metrics.deferred.labels(channel, decision.reason or "").inc()
                return
        attempt = delivery.attempts + 1
        if delivery.attempts >= self.settings.notify_max_attempts:
            # The last attempt never reported back (the worker died mid-send): give up as it would have.
            await store.mark_failed(self.sessions, "delivery", delivery.delivery_id, self.owner,
                                    f"gave up after {delivery.attempts} attempts (the last one did not finish)")
            self.metrics.failed.labels(channel).inc()
            return
        if not await store.begin_attempt(self.sessions, "delivery", delivery.delivery_id, self.owner, attempt,
                                         self._lease_until(now)):
            return  # the lease ran out and another worker has it
        sender = self.channels.get(channel)
        done = list(delivery.targets_done)

        async def mark_done(target_id: str) -> None:
            done.append(target_id)
            await store.mark_target_done(self.sessions, delivery.delivery_id, self.owner, done,
                                         self._lease_until(self.clock()))

        try:
            if sender is None:
                raise DeliveryError(f"unknown channel {channel!r}", permanent=True)
            await sender.send(delivery, mark_done)
        except Exception as exc:  # noqa: BLE001
            await self._failed_attempt("delivery", delivery.delivery_id, channel, attempt, exc)
            return
        # The window between the send and this mark is the one at-least-once gap (docs/notifications.md).
        await store.mark_sent(self.sessions, "delivery", delivery.delivery_id, self.owner, self.clock())
        self.metrics.sent.labels(channel).inc()
        self.metrics.crossing_to_sent.labels(channel).observe(
            max(0.0, (self.clock() - delivery.crossing.crossed_at).total_seconds())
        )

    async def _failed_attempt(self, kind: str, row_id: Any, channel: str, attempt: int, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        if permanent or attempt >= self.settings.notify_max_attempts:
            await store.mark_failed(self.sessions, kind, row_id, self.owner, error)
            if kind == "digest":
                self.metrics.digests.labels("failed").inc()
            else:
                self.metrics.failed.labels(channel).inc()
            log.warning("%s %s on %s failed for good after %d attempt(s): %s", kind, row_id, channel, attempt, error)
            return
        delay = self.retries.delay(attempt)
        if isinstance(exc, DeliveryError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, self.settings.notify_retry_max_seconds))
        await store.mark_retry(self.sessions, kind, row_id, self.owner, error,
                               self.clock() + timedelta(seconds=delay))
        if kind == "digest":
            self.metrics.digests.labels("retried").inc()
        else:
            self.metrics.retried.labels(channel).inc()
        log.info("%s %s on %s: attempt %d failed (%s); retrying in %.1f s", kind, row_id, channel, attempt, error,
                 delay)

    # --- coaching digests -----------------------------------------------------------------------------------

    async def _digest_loop(self) -> None:
        if not self.email.configured:
            log.info("coaching digests are off: no SMTP server configured (SALESPULSE_NOTIFY_SMTP_HOST)")
            return
        await self.config.caught_up.wait()
        await self.progress.caught_up.wait()
        while True:
            try:
                await self.run_scheduled_digests()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("coaching digest run failed; trying again shortly")
            await asyncio.sleep(30)

    async def run_scheduled_digests(self) -> list[dict[str, Any]]:
        """Make the digest of every team whose latest slot (in its manager's time zone) has come and is not
        older than DIGEST_GRACE; each (team, slot) is made once, whichever notifier gets there first."""
        if not self.email.configured:
            return []  # digests are e-mail only (logged once at start-up)
        now = self.clock()
        at = parse_clock(self.settings.notify_digest_at)
        made = []
        for team_id, team in sorted(self.config.state.teams().items()):
            manager = team.get("manager_rep_id")
            if not manager:
                continue
            slot = digest_slot(now, schedule=self.settings.notify_digest_schedule, at=at, zone=self.zone_of(manager))
            if slot is None or now - slot[1] > DIGEST_GRACE:
                continue
            slot_key = f"{self.settings.notify_digest_schedule}:{slot[0]}"
            if (team_id, slot_key) in self._digests_done:
                continue
            result = await self.make_digest(team_id, slot_key, now)
            self._digests_done.add((team_id, slot_key))
            if result:
                made.append(result)
        return made

    async def run_digests_now(self) -> list[dict[str, Any]]:
        """A digest for every team with a manager, now (outside the schedule): for operators and tests."""
        now = self.clock()
        made = []
        for team_id, team in sorted(self.config.state.teams().items()):
            if team.get("manager_rep_id"):
                result = await self.make_digest(team_id, f"manual:{now.isoformat()}", now)
                if result:
                    made.append(result)
        return made

    async def make_digest(self, team_id: str, slot: str, now: datetime) -> dict[str, Any] | None:
        """Record the team's digest for `slot` (sent by the delivery worker); None when nobody is behind pace
        or the slot was already made."""
        team = self.config.state.teams().get(team_id) or {}
        manager = team.get("manager_rep_id")
        if not manager:
            return None
        roster = self.config.state.reps()
        rows = reps_behind_pace(
            team_id=team_id,
            members=self.config.state.members(team_id),
            roster=roster,
            manager_rep_id=manager,
            plans=self.plans(),
            progress_by_rep=self.progress.progress,
            calendar=self.calendar,
            now=now,
            pace_below=self.settings.notify_digest_pace_below,
            min_elapsed=self.settings.notify_digest_min_elapsed,
        )
        if not rows:
            return None
        email = (roster.get(manager) or {}).get("email")
        digest_id = "cd_" + hashlib.sha256(f"{team_id}\x1f{slot}".encode()).hexdigest()[:32]
        body = {
            "team_id": team_id,
            "team_name": team.get("name") or team_id,
            "manager_rep_id": manager,
            "manager_name": (roster.get(manager) or {}).get("name") or manager,
            "rows": rows,
        }
        problem = None
        if not email:
            problem = f"manager {manager} of team {team_id} has no e-mail address on the roster"
        elif not self.email.configured:
            problem = "no SMTP server configured (SALESPULSE_NOTIFY_SMTP_HOST)"
        created = await store.create_digest(
            self.sessions, digest_id=digest_id, team_id=team_id, slot=slot, manager_rep_id=manager, email=email,
            body=body, status="failed" if problem else "pending", last_error=problem, now=now,
        )
        if not created:
            return None
        self.metrics.digests.labels("failed" if problem else "created").inc()
        if problem:
            log.warning("coaching digest for team %s not sent: %s", team_id, problem)
        else:
            self.wake.set()
        return {"digest_id": digest_id, "slot": slot, "email": email, "status": "failed" if problem else "pending",
                **body}

    async def _deliver_digest(self, digest: ClaimedDigest) -> None:
        attempt = digest.attempts + 1
        now = self.clock()
        try:
            if not await store.begin_attempt(self.sessions, "digest", digest.digest_id, self.owner, attempt,
                                             self._lease_until(now)):
                return
            body = digest.body
            message = digest_email(
                digest_id=digest.digest_id, team_name=body["team_name"], manager_name=body["manager_name"],
                to=digest.email or "", sender=self.settings.notify_smtp_from, rows=body["rows"],
            )
            try:
                await self.email.send_message(message)
            except Exception as exc:  # noqa: BLE001
                await self._failed_attempt("digest", digest.digest_id, "email", attempt, exc)
                return
            await store.mark_sent(self.sessions, "digest", digest.digest_id, self.owner, self.clock())
            self.metrics.digests.labels("sent").inc()
        except Exception:  # noqa: BLE001
            log.exception("coaching digest %s crashed", digest.digest_id)
