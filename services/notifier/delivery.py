"""The delivery worker: claims due deliveries and digests with a lease, sends them, and records each outcome —
sent, retried with back-off, deferred by quiet hours or the hourly cap, or failed for good. Any number of
notifier processes run one; a lease decides who sends (docs/notifications.md, "Why each crossing notifies
exactly once")."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import timedelta
from typing import Any

from services.common.background import wait_set
from services.common.backoff import Backoff
from services.common.preferences import read_preferences
from services.notifier import store
from services.notifier.channels import DeliveryError, EmailChannel
from services.notifier.context import NotifierContext
from services.notifier.messages import digest_email
from services.notifier.scheduling import hour_window, schedule_delivery
from services.notifier.store import BOARD, ClaimedDelivery, ClaimedDigest

__all__ = ["DeliveryWorker"]

log = logging.getLogger("salespulse.notifier")


class DeliveryWorker:
    def __init__(self, ctx: NotifierContext, email: EmailChannel, rng: random.Random) -> None:
        self.ctx = ctx
        self._email = email
        self.retries = Backoff(
            ctx.settings.notify_retry_base_seconds, ctx.settings.notify_retry_max_seconds, jitter=0.5, rng=rng
        )
        """Retry n waits min(max, base × 2^(n−1)), half of it fixed and half random ("equal jitter")."""
        self.passes = 0
        """Passes over what is due so far (each claims, sends and records what it found, maybe nothing)."""

    async def run(self) -> None:
        """Deliver what comes due, until cancelled: at once when woken, else every SALESPULSE_NOTIFY_POLL_SECONDS
        (deliveries other processes recorded, retries and deferrals whose time came)."""
        backoff = Backoff()
        last_gauge = 0.0
        while True:
            try:
                worked = await self.deliver_due()
                if time.monotonic() - last_gauge > 5:
                    self.ctx.metrics.open_deliveries.set(await store.count_open(self.ctx.sessions))
                    last_gauge = time.monotonic()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception:  # database away: keep trying
                wait = backoff.next()
                log.exception("delivery worker paused; retrying in %.1f s", wait)
                await asyncio.sleep(wait)
                continue
            finally:
                self.passes += 1
            if worked:
                continue
            await wait_set(self.ctx.wake, self.ctx.settings.notify_poll_seconds)
            self.ctx.wake.clear()

    async def deliver_due(self) -> int:
        """Claim what is due (deliveries and digests), send it, record the outcome; how many were handled."""
        now = self.ctx.clock()
        until = self.ctx.lease_until(now)
        sessions, owner = self.ctx.sessions, self.ctx.owner
        deliveries = await store.claim_due_deliveries(sessions, now=now, owner=owner, lease_until=until)
        digests = await store.claim_due_digests(sessions, now=now, owner=owner, lease_until=until)
        if not deliveries and not digests:
            return 0
        await asyncio.gather(
            *(self._deliver(d) for d in deliveries), *(self._deliver_digest(g) for g in digests)
        )
        return len(deliveries) + len(digests)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            await self._deliver_one(delivery)
        except Exception:  # the lease runs out and the delivery is tried again
            log.exception("delivery %s (%s) crashed", delivery.notification_id, delivery.channel)

    async def _deliver_one(self, delivery: ClaimedDelivery) -> None:
        channel = delivery.channel
        now = self.ctx.clock()
        if channel != BOARD:
            prefs = await read_preferences(self.ctx.sessions, delivery.rep_id) or self.ctx.defaults
            zone = self.ctx.zone_of(delivery.rep_id)
            sent = 0
            if prefs.max_per_hour is not None:
                start, end = hour_window(now, zone)
                sent = await store.sent_in_window(self.ctx.sessions, delivery.rep_id, channel, start, end)
            decision = schedule_delivery(
                now, quiet=prefs.quiet(), max_per_hour=prefs.max_per_hour, sent_in_window=sent, zone=zone
            )
            if decision.due_at is not None:
                await store.defer(self.ctx.sessions, "delivery", delivery.delivery_id, self.ctx.owner, decision.due_at)
                self.ctx.metrics.deferred.labels(channel, decision.reason or "").inc()
                return
        attempt = delivery.attempts + 1
        if delivery.attempts >= self.ctx.settings.notify_max_attempts:
            # The last attempt never reported back (the worker died mid-send): give up as it would have.
            await store.mark_failed(self.ctx.sessions, "delivery", delivery.delivery_id, self.ctx.owner,
                                    f"gave up after {delivery.attempts} attempts (the last one did not finish)")
            self.ctx.metrics.failed.labels(channel).inc()
            return
        if not await store.begin_attempt(self.ctx.sessions, "delivery", delivery.delivery_id, self.ctx.owner, attempt,
                                         self.ctx.lease_until(now)):
            return  # the lease ran out and another worker has it
        sender = self.ctx.channels.get(channel)
        done = list(delivery.targets_done)

        async def mark_done(target_id: str) -> None:
            done.append(target_id)
            await store.mark_target_done(self.ctx.sessions, delivery.delivery_id, self.ctx.owner, done,
                                         self.ctx.lease_until(self.ctx.clock()))

        try:
            if sender is None:
                raise DeliveryError(f"unknown channel {channel!r}", permanent=True)
            await sender.send(delivery, mark_done)
        except Exception as exc:  # noqa: BLE001
            await self._failed_attempt("delivery", delivery.delivery_id, channel, attempt, exc)
            return
        # The window between the send and this mark is the one at-least-once gap (docs/notifications.md).
        await store.mark_sent(self.ctx.sessions, "delivery", delivery.delivery_id, self.ctx.owner, self.ctx.clock())
        self.ctx.metrics.sent.labels(channel).inc()
        self.ctx.metrics.crossing_to_sent.labels(channel).observe(
            max(0.0, (self.ctx.clock() - delivery.crossing.crossed_at).total_seconds())
        )

    async def _failed_attempt(self, kind: str, row_id: Any, channel: str, attempt: int, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        if permanent or attempt >= self.ctx.settings.notify_max_attempts:
            await store.mark_failed(self.ctx.sessions, kind, row_id, self.ctx.owner, error)
            if kind == "digest":
                self.ctx.metrics.digests.labels("failed").inc()
            else:
                self.ctx.metrics.failed.labels(channel).inc()
            log.warning("%s %s on %s failed for good after %d attempt(s): %s", kind, row_id, channel, attempt, error)
            return
        delay = self.retries.delay(attempt)
        if isinstance(exc, DeliveryError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, self.ctx.settings.notify_retry_max_seconds))
        await store.mark_retry(self.ctx.sessions, kind, row_id, self.ctx.owner, error,
                               self.ctx.clock() + timedelta(seconds=delay))
        if kind == "digest":
            self.ctx.metrics.digests.labels("retried").inc()
        else:
            self.ctx.metrics.retried.labels(channel).inc()
        log.info("%s %s on %s: attempt %d failed (%s); retrying in %.1f s", kind, row_id, channel, attempt, error,
                 delay)

    async def _deliver_digest(self, digest: ClaimedDigest) -> None:
        attempt = digest.attempts + 1
        now = self.ctx.clock()
        try:
            if not await store.begin_attempt(self.ctx.sessions, "digest", digest.digest_id, self.ctx.owner, attempt,
                                             self.ctx.lease_until(now)):
                return
            body = digest.body
            message = digest_email(
                digest_id=digest.digest_id, team_name=body["team_name"], manager_name=body["manager_name"],
                to=digest.email or "", sender=self.ctx.settings.notify_smtp_from, rows=body["rows"],
                streaks=body.get("streaks_at_risk", []),
            )
            try:
                await self._email.send_message(message)
            except Exception as exc:  # noqa: BLE001
                await self._failed_attempt("digest", digest.digest_id, "email", attempt, exc)
                return
            await store.mark_sent(self.ctx.sessions, "digest", digest.digest_id, self.ctx.owner, self.ctx.clock())
            self.ctx.metrics.digests.labels("sent").inc()
        except Exception:  # logged; the lease runs out and the digest is tried again
            log.exception("coaching digest %s crashed", digest.digest_id)
