"""Pipedrive: webhooks v2 carry the whole deal, so they become events without a call back to the CRM.

- Webhook: `POST /v1/connectors/pipedrive/webhook`, authenticated with the HTTP Basic user and password set on
  the webhook in Pipedrive. The body is `{"meta": {...}, "data": {...}, "previous": {...}}`; `meta.entity` says
  the object (only `deal` is used), `meta.action` is create, change or delete.
- create and change keep `data` (the whole deal) as a "record" row; delete becomes a "delete" row at
  `meta.timestamp`. A merge arrives as a delete of the merged deal (with `meta.merged_to_id`) and a change of
  the surviving one: the merged deal's credit goes away and the survivor's is its own, so nothing counts
  twice; with an API token the survivor is also read back, in case its change webhook is lost.
- The version is the deal's `update_time` in milliseconds.
- The API (`/api/v2/deals`, token in `x-api-token`) serves backfill, merges and owners' e-mails
  (`/api/v1/users/{id}`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.connectors.base import Connector, call_crm
from services.connectors.core import CrmDeal, RecordRejected, parse_crm_time
from services.connectors.inbox import NewItem
from services.connectors.mapping import ConnectorMapping
from services.connectors.metrics import ConnectorMetrics

__all__ = ["PipedriveConnector", "parse_webhook"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class WebhookDelivery:
    items: list[NewItem]
    ignored: int


def _meta_time(meta: Mapping[str, Any]) -> datetime:
    stamp = meta.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):  # seconds (v1 style)
        return datetime.fromtimestamp(float(stamp) / (1000 if stamp > 10**11 else 1), UTC)
    if isinstance(stamp, str) and stamp:
        return parse_crm_time(stamp, ZoneInfo("UTC"), what="meta.timestamp")
    raise ValueError("meta.timestamp is required (when the change happened)")


def parse_webhook(body: bytes, *, can_fetch: bool) -> WebhookDelivery:
    """A webhooks v2 delivery as inbox rows; ValueError says what is wrong with the body."""
    try:
        delivery = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(delivery, dict) or not isinstance(delivery.get("meta"), dict):
        raise ValueError("the body must be a webhooks v2 delivery: an object with meta, data and previous")
    meta = delivery["meta"]
    if str(meta.get("version", "2.0")) not in ("2.0", "2"):
        raise ValueError(f"meta.version is {meta.get('version')!r}: create the webhook with version 2.0")
    if meta.get("entity") != "deal":
        return WebhookDelivery([], 1)
    try:
        at = _meta_time(meta)
    except RecordRejected as exc:
        raise ValueError(str(exc)) from None
    action = meta.get("action")
    data = delivery.get("data")
    entity_id = meta.get("entity_id") or (data or {}).get("id")
    if entity_id in (None, ""):
        raise ValueError("meta.entity_id is required")
    if action == "delete" or (isinstance(data, dict) and data.get("is_deleted") is True):
        items = [NewItem(str(entity_id), "delete", at)]
        merged_to = meta.get("merged_to_id") or (data or {}).get("merged_to_id")
        if merged_to and can_fetch:
            items.append(NewItem(str(merged_to), "fetch", at))
        return WebhookDelivery(items, 0)
    if action in ("create", "change"):
        if not isinstance(data, dict):
            raise ValueError(f"a {action} delivery needs data (the whole deal)")
        return WebhookDelivery([NewItem(str(entity_id), "record", at, payload=data)], 0)
    return WebhookDelivery([], 1)


class PipedriveConnector(Connector):
    name = "pipedrive"

    def __init__(
        self,
        mapping: ConnectorMapping,
        zone: ZoneInfo,
        metrics: ConnectorMetrics | None,
        *,
        api_url: str | None,
        token: str | None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(mapping, zone, metrics)
        self.api_url = (api_url or "").rstrip("/")
        self.client = client or httpx.AsyncClient(timeout=30.0)
        self.headers = {"x-api-token": token or "", "Accept": "application/json"}

    @property
    def can_fetch(self) -> bool:
        return bool(self.api_url and self.headers["x-api-token"])

    def record(self, payload: Mapping[str, Any], changed_at: datetime) -> CrmDeal:
        crm_id = str(payload.get("id"))
        try:
            modified_at = parse_crm_time(payload.get("update_time"), self.zone, what=f"deal {crm_id}: update_time")
        except RecordRejected as exc:
            return CrmDeal(self.name, crm_id, payload, _EPOCH, problem=str(exc))
        return CrmDeal(self.name, crm_id, payload, modified_at, changed_at=changed_at)

    async def fetch(self, ids: list[str]) -> tuple[list[CrmDeal], list[str]]:
        if not self.can_fetch:
            return [], []
        response = await call_crm(
            self.name, self.client, self.metrics, "GET", f"{self.api_url}/api/v2/deals",
            params={"ids": ",".join(ids), "limit": len(ids)}, headers=self.headers,
        )
        data = [] if response.status_code == 404 else response.json().get("data") or []
        deals = [self.record(deal, _EPOCH) for deal in data if not deal.get("is_deleted")]
        found = {deal.crm_id for deal in deals}
        return deals, [crm_id for crm_id in ids if crm_id not in found]

    async def _owner_email(self, owner_id: str) -> str | None:
        if not self.can_fetch:
            return None
        response = await call_crm(
            self.name, self.client, self.metrics, "GET", f"{self.api_url}/api/v1/users/{owner_id}",
            headers=self.headers,
        )
        if response.status_code == 404:
            return None
        email = (response.json().get("data") or {}).get("email")
        return str(email) if email else None

    async def page(self, since: datetime, cursor: str | None, limit: int = 500) -> tuple[list[CrmDeal], str | None]:
        """One page of deals updated since `since`, oldest first, and the next page's cursor."""
        params: dict[str, Any] = {"updated_since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "sort_by": "update_time", "sort_direction": "asc", "limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await call_crm(
            self.name, self.client, self.metrics, "GET", f"{self.api_url}/api/v2/deals", params=params,
            headers=self.headers,
        )
        answer = json.loads(response.content, parse_float=Decimal)
        following = (answer.get("additional_data") or {}).get("next_cursor")
        return [self.record(deal, _EPOCH) for deal in answer.get("data") or []], following

    async def close(self) -> None:
        await self.client.aclose()
