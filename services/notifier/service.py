"""The notifier: records each tier crossing once (from rep snapshots and its SQL record), creates one delivery
per channel the rep chose, and a worker sends due deliveries with retries, quiet hours and an hourly cap;
a scheduler makes coaching digests for team managers. This module wires the parts together:
`recorder.CrossingRecorder`, `delivery.DeliveryWorker` and `digests.DigestScheduler` over a shared
`context.NotifierContext`.

Order of work for a crossing: insert the crossing and its deliveries in one transaction; commit; only then
send. A crash before the commit loses nothing (the snapshot is read again: its offset was not committed); a
crash after it leaves deliveries in SQL for the next worker."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from schemas.config import Plan
from schemas.messages import RepProgress
from services.common.background import cancel_and_wait
from services.common.backoff import Backoff
from services.common.config_feed import ConfigFollower
from services.common.db import Sessions
from services.common.dead_letters import DeadLetters
from services.common.kafka import make_producer
from services.common.settings import Settings
from services.notifier.channels import BoardChannel, ChatChannel, EmailChannel, InAppChannel, WebhookChannel
from services.notifier.consumer import ProgressFeed, SnapshotConsumer
from services.notifier.context import NotifierContext, Now
from services.notifier.delivery import DeliveryWorker
from services.notifier.digests import DigestScheduler
from services.notifier.metrics import NotifierMetrics
from services.notifier.recorder import CrossingRecorder
from services.notifier.store import BOARD, SLACK, TEAMS
from services.notifier.tier_crossings import TierCrossing

log = logging.getLogger("salespulse.notifier")

__all__ = ["Notifier"]


class Notifier:
    def __init__(
        self,
        settings: Settings,
        *,
        sessions: Sessions,
        registry: CollectorRegistry,
        clock: Now | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = NotifierMetrics(registry)
        self.dead_letters = DeadLetters(settings, registry)
        self.config = ConfigFollower(settings, self.dead_letters)
        self.progress = ProgressFeed(settings)  # its unreadable records are the consumer's to set aside
        self.ctx = ctx = NotifierContext(
            settings=settings, sessions=sessions, clock=clock or settings.clock.now, metrics=self.metrics,
            config=self.config,
        )
        self.producer = make_producer(settings)
        self.http = httpx.AsyncClient(timeout=settings.notify_send_timeout)
        ctx.webhook = WebhookChannel(settings, self.http)
        ctx.email = email = EmailChannel(settings, ctx.email_of)
        ctx.channels.update({
            "in_app": InAppChannel(settings, self.producer),
            BOARD: BoardChannel(settings, self.producer),
            "webhook": ctx.webhook,
            "email": email,
            SLACK: ChatChannel(SLACK, self.http, self.config),
            TEAMS: ChatChannel(TEAMS, self.http, self.config),
        })
        self.recorder = CrossingRecorder(ctx)
        self.delivery = DeliveryWorker(ctx, email, rng or random.Random())
        self.digests = DigestScheduler(ctx, email, self.progress)
        self.consumer = SnapshotConsumer(settings, self.recorder.record, self.dead_letters)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def owner(self) -> str:
        return self.ctx.owner

    @property
    def wake(self) -> asyncio.Event:
        return self.ctx.wake

    # --- life cycle --------------------------------------------------------------------------------------

    async def start(self, *, consume: bool = True, deliver: bool = True, digests: bool = True) -> None:
        await self._start_producer()
        self.config.start()
        self.progress.start()
        if consume:
            self._tasks.append(asyncio.create_task(self._consume_after_config(), name="notifier-consume"))
        if deliver:
            self._tasks.append(asyncio.create_task(self.delivery.run(), name="notifier-deliver"))
        if digests and self.settings.notify_digest_schedule != "off":
            self._tasks.append(asyncio.create_task(self.digests.run(), name="notifier-digests"))

    async def _start_producer(self) -> None:
        backoff = Backoff(most=2.0)
        for _ in range(50):
            try:
                await self.producer.start()
                return
            except Exception as exc:  # noqa: BLE001  (broker not up yet)
                log.warning("notifier producer not started (%s); retrying", exc)
                await backoff.sleep()
        await self.producer.start()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
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

    # --- what operators and tests call --------------------------------------------------------------------------

    def plans(self) -> list[Plan]:
        return self.ctx.plans()

    async def handle_snapshots(self, snapshots: list[RepProgress]) -> list[TierCrossing]:
        """Record every crossing in these snapshots that is not recorded yet; wake the delivery worker."""
        return await self.recorder.record(snapshots)

    async def deliver_due(self) -> int:
        """One pass of the delivery worker; how many deliveries and digests it handled."""
        return await self.delivery.deliver_due()

    async def run_scheduled_digests(self) -> list[dict[str, Any]]:
        return await self.digests.run_scheduled_digests()

    async def run_digests_now(self) -> list[dict[str, Any]]:
        return await self.digests.run_digests_now()

    async def make_digest(self, team_id: str, slot: str, now: datetime) -> dict[str, Any] | None:
        return await self.digests.make_digest(team_id, slot, now)
