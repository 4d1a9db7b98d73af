"""The connector worker: turns the inbox's CRM changes into deal snapshots in the ledger.

Each round claims due rows (oldest first), reads the whole deals from the CRM in one batch call where the
webhook named only ids, maps every deal, checks the events exactly as `POST /v1/events` does and appends them
through the same intake (services/common/intake.py). Then:
- rows whose events are in the ledger are deleted;
- a CRM error leaves the rows for later (at least the Retry-After the CRM asked for; the whole connector
  pauses meanwhile, so a 429 storm delays work and loses none);
- a record the mapping or the event contract refuses is kept as `rejected` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError, OperationalError

from services.common.background import BackgroundLoop, wait_set
from services.common.backoff import Backoff
from services.common.intake import EventConflict, EventIntake
from services.connectors.base import Connector, CrmApiError
from services.connectors.core import (
    CrmDeal,
    RecordRejected,
    content_id,
    deal_id_for,
    deletion_event,
    snapshot_event,
)
from services.connectors.inbox import Inbox, InboxItem
from services.connectors.metrics import ConnectorMetrics

__all__ = ["ConnectorWorker"]

log = logging.getLogger("salespulse.connectors")
LEASE_SECONDS = 120.0
IDLE_POLL_SECONDS = 1.0


@dataclass
class _Pending:
    """An event to write and the inbox rows it settles."""

    event: dict[str, Any]
    items: list[InboxItem] = field(default_factory=list)


class ConnectorWorker(BackgroundLoop):
    def __init__(self, connector: Connector, inbox: Inbox, intake: EventIntake, metrics: ConnectorMetrics, *,
                 batch: int, most_wait: float) -> None:
        self.connector = connector
        self.inbox = inbox
        self.intake = intake
        self.batch = batch
        self.wake = asyncio.Event()
        self.backoff = Backoff(first=1.0, most=most_wait, jitter=0.5)
        self.paused_until = 0.0
        self.loop_name = f"{connector.name} connector"
        self.metrics = metrics

    async def _run(self) -> None:
        name = self.connector.name
        while True:
            pause = self.paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                worked = await self.round()
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("%s connector: database unavailable (%s); trying again", name, exc)
                self.paused_until = time.monotonic() + self.backoff.next()
                continue
            except Exception:  # a bug must not stop the connector for good: log it, wait, go on
                log.exception("%s connector: round failed", name)
                self.paused_until = time.monotonic() + self.backoff.next()
                continue
            if not worked:
                self.wake.clear()
                await wait_set(self.wake, IDLE_POLL_SECONDS)

    async def round(self) -> bool:
        """Handle one batch of due rows; False when there were none."""
        name = self.connector.name
        items = await self.inbox.claim(name, self.batch, LEASE_SECONDS)
        if not items:
            await self._count_pending()
            return False
        pending: dict[str, _Pending] = {}
        fetch = [item for item in items if item.action == "fetch"]
        try:
            deals = await self._fetch(fetch)
        except CrmApiError as exc:
            delay = self.backoff.next(at_least=exc.retry_after)
            if exc.status == 429 or exc.status >= 500 or exc.status == 0:
                self.paused_until = time.monotonic() + delay
            log.warning("%s connector: %s; %d record(s) wait %.1f s", name, exc, len(fetch), delay)
            await self.inbox.retry_later([item.id for item in fetch], str(exc), delay)
            items = [item for item in items if item.action != "fetch"]
            deals = {}
        for item in items:
            try:
                event = await self._event_for(item, deals)
            except RecordRejected as exc:
                self.metrics.connector_records.labels(name, "rejected_mapping").inc()
                log.warning("%s connector: %s", name, exc)
                await self.inbox.reject(item.id, str(exc))
                continue
            except CrmApiError as exc:  # an owner's e-mail could not be read: the same as a failed fetch
                delay = self.backoff.next(at_least=exc.retry_after)
                await self.inbox.retry_later([item.id], str(exc), delay)
                continue
            if event is None:
                await self.inbox.done([item.id])
                continue
            pending.setdefault(content_id(event), _Pending(event)).items.append(item)  # same id and content: one
        await self._write(list(pending.values()))
        self.backoff.reset()
        return True

    async def _fetch(self, items: list[InboxItem]) -> dict[str, CrmDeal | None]:
        """object id -> the deal as the CRM holds it now, or None when it does not know it (deleted)."""
        ids = sorted({item.object_id for item in items})
        if not ids:
            return {}
        found, missing = await self.connector.fetch(ids)
        self.metrics.connector_records.labels(self.connector.name, "fetched").inc(len(found))
        if missing:
            self.metrics.connector_records.labels(self.connector.name, "not_found").inc(len(missing))
        deals: dict[str, CrmDeal | None] = {deal.crm_id: deal for deal in found}
        deals.update({crm_id: None for crm_id in missing})
        return deals

    async def _event_for(self, item: InboxItem, deals: dict[str, CrmDeal | None]) -> dict[str, Any] | None:
        connector = self.connector
        if item.action == "delete":
            owner = await self.inbox.last_owner(deal_id_for(connector.name, item.object_id))
            if owner is None:  # never counted here: nothing to take back
                return None
            self.metrics.connector_records.labels(connector.name, "deleted").inc()
            return deletion_event(connector.name, item.object_id, item.changed_at, owner)
        if item.action == "record":
            deal: CrmDeal | None = connector.record(item.payload or {}, item.changed_at)
        else:
            deal = deals.get(item.object_id)
            if deal is None:  # gone from the CRM: a deletion, unless the CRM sends its deletions by themselves
                if not getattr(connector, "missing_means_deleted", False):
                    return None
                owner = await self.inbox.last_owner(deal_id_for(connector.name, item.object_id))
                return None if owner is None else deletion_event(connector.name, item.object_id, item.changed_at, owner)
        assert deal is not None
        return await snapshot_event(deal, connector.mapping, connector.owner_email, connector.zone)

    async def _write(self, pending: list[_Pending]) -> None:
        name = self.connector.name
        told_apart: set[str] = set()
        while pending:
            checked = await self.intake.check(orjson.dumps([p.event for p in pending]))
            if checked.problem_count:
                bad = {problem.index for problem in checked.problems} or set(range(len(pending)))
                for index in sorted(bad):
                    reasons = "; ".join(
                        f"{p.field or '(event)'}: {p.message}" for p in checked.problems if p.index == index
                    ) or checked.problem().detail
                    await self._reject(pending[index], f"the event was refused: {reasons}", "rejected_event")
                pending = [p for index, p in enumerate(pending) if index not in bad]
                continue
            try:
                result = await self.intake.append(checked.events)
            except EventConflict as exc:
                # The same CRM revision (same modification time) with other content: two changes within the
                # CRM's clock resolution, or a record read again under a changed mapping. The later one is
                # told apart by its content and, on the contract's tie-break by event_id, wins.
                conflicting = set(exc.event_ids)
                for p in pending:
                    if p.event["event_id"] not in conflicting:
                        continue
                    if p.event["event_id"] in told_apart:  # cannot happen unless the content hash collides
                        await self._reject(p, f"event {p.event['event_id']} is in the ledger with another body",
                                           "rejected_event")
                        p.event = {}
                    else:
                        p.event["event_id"] = content_id(p.event)
                        told_apart.add(p.event["event_id"])
                pending = [p for p in pending if p.event]
                continue
            self.metrics.connector_records.labels(name, "accepted").inc(result.accepted)
            if result.duplicates:
                self.metrics.connector_records.labels(name, "duplicate").inc(result.duplicates)
            now = self.inbox.clock.now()
            for p in pending:
                for item in p.items:
                    self.metrics.connector_lag.labels(name).observe(max(0.0, (now - item.changed_at).total_seconds()))
            await self.inbox.done(item.id for p in pending for item in p.items)
            return

    async def _reject(self, pending: _Pending, reason: str, outcome: str) -> None:
        self.metrics.connector_records.labels(self.connector.name, outcome).inc()
        log.warning("%s connector: %s", self.connector.name, reason)
        for item in pending.items:
            await self.inbox.reject(item.id, reason)

    async def _count_pending(self) -> None:
        counts = await self.inbox.counts()
        self.metrics.connector_pending.labels(self.connector.name).set(counts.get((self.connector.name, "pending"), 0))
