"""The one way events enter the ledger: checked as `POST /v1/events` checks them (the contract's validation, the
accept window, the strict roster), then appended by the group-commit writer and counted. The events route and
the CRM connectors both go through an `Intake`; neither has a side door."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import ActivityEvent, DealEvent
from services.common.settings import Settings
from services.ingest.intake import Checked, check_events
from services.ingest.ledger import AppendResult, EventConflict, LedgerWriter, ledger_row
from services.ingest.metrics import IngestMetrics
from services.ingest.roster import RosterCache
from services.ingest.window import accept_window

__all__ = ["Intake"]


@dataclass
class Intake:
    settings: Settings
    writer: LedgerWriter
    roster: RosterCache
    metrics: IngestMetrics

    async def check(self, body: bytes, *, ndjson: bool = False) -> Checked:
        """The body's valid events, or its problems (nothing is written)."""
        settings = self.settings
        checked = await check_events(body, ndjson=ndjson, window=accept_window(settings))
        if not checked.problem_count and settings.strict_roster:
            checked.add(await self.roster.unknown_reps(checked.events), 0)
        if checked.problem_count:
            self.metrics.events.labels("unknown", "rejected").inc(checked.invalid_items)
        return checked

    async def append(self, events: list[DealEvent | ActivityEvent]) -> AppendResult:
        """Write valid events to the ledger (durable when this returns) and count them; raises EventConflict
        (nothing written) or the database's error."""
        try:
            result = await self.writer.append([ledger_row(e) for e in events])
        except EventConflict:
            self.count(events, "conflict")
            raise
        for type_, n in result.accepted_by_type.items():
            self.metrics.events.labels(type_, "accepted").inc(n)
        for type_, n in result.duplicates_by_type.items():
            self.metrics.events.labels(type_, "duplicate").inc(n)
        return result

    def count(self, events: list[DealEvent | ActivityEvent], outcome: str) -> None:
        deals = sum(1 for e in events if e.type == "deal")
        if deals:
            self.metrics.events.labels("deal", outcome).inc(deals)
        if len(events) - deals:
            self.metrics.events.labels("activity", outcome).inc(len(events) - deals)
