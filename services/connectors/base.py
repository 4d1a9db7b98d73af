"""What a connector is to the rest of ingest: a CRM's API client (fetch deals by id, an owner's e-mail) and a
mapping. `CrmApiError` is a failed call with what the CRM asked for (Retry-After); `call_crm` makes one call
and counts failures by status."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.common.backoff import retry_after_seconds
from services.connectors.core import CrmDeal
from services.connectors.mapping import ConnectorMapping, default_mapping_path, load_connector_mapping
from services.connectors.metrics import ConnectorMetrics

__all__ = ["Connector", "CrmApiError", "Page", "call_crm"]

log = logging.getLogger("salespulse.connectors")
_ERROR_TEXT = 300
OWNER_TTL_SECONDS = 600.0


@dataclass
class Page:
    """One page of a backfill: the deals, the position after them, and how many there are in all (if said)."""

    deals: list[CrmDeal]
    cursor: dict[str, Any]
    total: int | None


class CrmApiError(Exception):
    """A CRM API call that failed; `status` 0 when there was no answer. `retry_after` is what the CRM asked."""

    def __init__(self, connector: str, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{connector} API: {message}")
        self.status = status
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """An answer that trying again will not change (a wrong token, a bad request)."""
        return self.status in (400, 401, 403)


async def call_crm(
    connector: str, client: httpx.AsyncClient, metrics: ConnectorMetrics | None, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One API call; CrmApiError for no answer or an answer that is not 2xx (404 is returned: callers decide)."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        if metrics:
            metrics.connector_api_errors.labels(connector, "0").inc()
        raise CrmApiError(connector, 0, f"no answer from {httpx.URL(url).host}: {type(exc).__name__}") from None
    if response.is_success or response.status_code == 404:
        return response
    if metrics:
        metrics.connector_api_errors.labels(connector, str(response.status_code)).inc()
    raise CrmApiError(
        connector,
        response.status_code,
        f"{method} {httpx.URL(url).path} answered {response.status_code}: {response.text[:_ERROR_TEXT]}",
        retry_after_seconds(response.headers),
    )


class Connector:
    """One CRM. Subclasses read deals (`fetch`), owners' e-mails (`owner_email`) and, where the CRM sends whole
    records in its webhooks, turn a payload into a `CrmDeal` (`record`)."""

    name = ""

    def __init__(self, mapping: ConnectorMapping, zone: ZoneInfo, metrics: ConnectorMetrics | None) -> None:
        self.mapping = mapping
        self.zone = zone
        self.metrics = metrics
        self._emails: dict[str, tuple[float, str | None]] = {}

    @classmethod
    def load_mapping(cls, path: Path | None) -> ConnectorMapping:
        return load_connector_mapping(path or default_mapping_path(cls.name), connector=cls.name)

    async def fetch(self, ids: list[str]) -> tuple[list[CrmDeal], list[str]]:
        """The deals with these ids as the CRM holds them now, and the ids it does not know (deleted)."""
        raise NotImplementedError

    def record(self, payload: Mapping[str, Any], changed_at: datetime) -> CrmDeal:
        """A whole deal sent in a webhook, as a CrmDeal."""
        raise NotImplementedError(f"{self.name} sends no whole records")

    async def owner_email(self, owner_id: str) -> str | None:
        """The owner's e-mail address, asked of the CRM at most once per OWNER_TTL_SECONDS (a renamed or new
        owner is seen within minutes, without an ingest restart)."""
        now = time.monotonic()
        cached = self._emails.get(owner_id)
        if cached is None or now - cached[0] >= OWNER_TTL_SECONDS:
            cached = (now, await self._owner_email(owner_id))
            self._emails[owner_id] = cached
        return cached[1]

    async def _owner_email(self, owner_id: str) -> str | None:
        return None

    async def close(self) -> None:
        pass
