"""How events enter the ledger, as other parts of the product see it: ingest's intake checks events as
`POST /v1/events` does and appends them to the ledger. A part hosted by the ingest process (the CRM connectors)
is an `IngestExtension`: it adds routes to ingest's app and runs alongside it, and writes events only through
the `EventIntake` it is handed — there is no side door into the ledger.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.settings import Settings

__all__ = ["EventConflict", "EventIntake", "IngestExtension"]


class EventConflict(Exception):
    """The same event_id arrived with a different body."""

    def __init__(self, event_ids: list[str]) -> None:
        super().__init__(", ".join(event_ids))
        self.event_ids = event_ids


class EventIntake(Protocol):
    async def check(self, body: bytes, *, ndjson: bool = False) -> Any:
        """The body's valid events (`.events`), or its problems (`.problems`, `.problem_count`, `.problem()`)."""

    async def append(self, events: list[Any]) -> Any:
        """Write checked events to the ledger (durable on return; `.accepted`, `.duplicates`); raises
        EventConflict (nothing written) or the database's error."""


class IngestExtension(Protocol):
    def install(self, app: FastAPI, settings: Settings, registry: CollectorRegistry) -> None:
        """Add routes (and metrics, to ingest's registry) before the app starts."""

    def running(self, app: FastAPI, intake: EventIntake) -> AbstractAsyncContextManager[None]:
        """Run for the app's lifetime (entered once ingest's database and ledger writer are up)."""
