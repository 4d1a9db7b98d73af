"""HubSpot: webhooks (v3 signatures) name the deals that changed; the CRM API (v3 objects) gives whole deals.

- Webhook: `POST /v1/connectors/hubspot/webhook` takes HubSpot's batches of up to 100 events. The signature is
  HMAC-SHA256, keyed with the app's client secret, over method + URI + body + X-HubSpot-Request-Timestamp,
  base64-encoded (X-HubSpot-Signature-v3); a timestamp more than 5 minutes away from now is refused.
- `deal.creation`, `deal.propertyChange`, `deal.restore` and `deal.associationChange` become "fetch" rows (the
  payload holds one property at most, so the whole deal is read); `deal.deletion` a "delete" row; `deal.merge`
  fetches the surviving deal and deletes the merged ones. Other objects are acknowledged and ignored.
- Deals are read with `POST /crm/v3/objects/deals/batch/read` (100 ids a call); the version is the record's
  `updatedAt` in milliseconds. Owners' e-mails come from `GET /crm/v3/owners/{id}`.
- Backfill pages through `POST /crm/v3/objects/deals/search`, sorted by `hs_lastmodifieddate`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.connectors.base import Connector, call_crm
from services.connectors.core import CrmDeal, RecordRejected, parse_crm_time
from services.connectors.inbox import NewItem
from services.connectors.mapping import ConnectorMapping
from services.connectors.metrics import ConnectorMetrics

__all__ = ["MAX_AGE_MS", "HubSpotConnector", "decode_uri", "parse_webhook", "sign_v3", "verify_v3"]

MAX_AGE_MS = 5 * 60 * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# HubSpot's request-validation page: decode these in the URI before signing (and nothing else).
_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
           "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
FETCH_TYPES = ("deal.creation", "deal.propertyChange", "deal.restore", "deal.associationChange")


def decode_uri(uri: str) -> str:
    for encoded, plain in _DECODE.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    return uri


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    source = method.upper().encode() + decode_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def verify_v3(
    secret: str, method: str, uri: str, body: bytes, signature: str | None, timestamp: str | None, now_ms: int
) -> str | None:
    """None when the request is HubSpot's; else why not (for the 401's detail)."""
    if not signature or not timestamp:
        return "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required"
    if not timestamp.isdigit():
        return "X-HubSpot-Request-Timestamp must be epoch milliseconds"
    if abs(now_ms - int(timestamp)) > MAX_AGE_MS:
        return "the request timestamp is more than 5 minutes from now (a replay, or a clock that is off)"
    if not hmac.compare_digest(sign_v3(secret, method, uri, body, timestamp), signature.strip()):
        return (
            "the signature does not match (check SALESPULSE_HUBSPOT_CLIENT_SECRET and "
            "SALESPULSE_HUBSPOT_WEBHOOK_URL)"
        )
    return None


@dataclass
class WebhookBatch:
    items: list[NewItem]
    ignored: int


def parse_webhook(body: bytes) -> WebhookBatch:
    """HubSpot's event array as inbox rows; ValueError says what is wrong with the body."""
    try:
        events = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(events, list):
        raise ValueError("the body must be a JSON array of webhook events")
    items: list[NewItem] = []
    ignored = 0
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise ValueError(f"event {index} is not an object")
        kind = event.get("subscriptionType")
        object_id = event.get("objectId")
        occurred = event.get("occurredAt")
        if not isinstance(kind, str) or not kind.startswith("deal."):
            ignored += 1
            continue
        if not isinstance(object_id, int | str) or isinstance(object_id, bool) or not isinstance(occurred, int):
            raise ValueError(f"event {index}: objectId and occurredAt (epoch milliseconds) are required")
        at = datetime.fromtimestamp(occurred / 1000, UTC)
        if kind in FETCH_TYPES:
            items.append(NewItem(str(object_id), "fetch", at))
        elif kind == "deal.deletion":
            items.append(NewItem(str(object_id), "delete", at))
        elif kind == "deal.merge":
            items.append(NewItem(str(object_id), "fetch", at))
            merged = event.get("mergedObjectIds") or []
            items += [NewItem(str(other), "delete", at) for other in merged if str(other) != str(object_id)]
        else:
            ignored += 1
    return WebhookBatch(items, ignored)


class HubSpotConnector(Connector):
    name = "hubspot"

    def __init__(
        self,
        mapping: ConnectorMapping,
        zone: ZoneInfo,
        metrics: ConnectorMetrics | None,
        *,
        api_url: str,
        token: str,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(mapping, zone, metrics)
        self.api_url = api_url.rstrip("/")
        self.client = client or httpx.AsyncClient(timeout=30.0)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    @property
    def properties(self) -> list[str]:
        return sorted({*self.mapping.crm_fields, "hs_lastmodifieddate"})

    async def fetch(self, ids: list[str]) -> tuple[list[CrmDeal], list[str]]:
        body = {"properties": self.properties, "inputs": [{"id": crm_id} for crm_id in ids], "archived": False}
        response = await call_crm(
            self.name, self.client, self.metrics, "POST", f"{self.api_url}/crm/v3/objects/deals/batch/read",
            json=body, headers=self.headers,
        )
        if response.status_code == 404:
            return [], list(ids)
        answer = response.json()
        deals = [self.deal(result) for result in answer.get("results") or []]
        found = {deal.crm_id for deal in deals}
        return deals, [crm_id for crm_id in ids if crm_id not in found]

    def deal(self, result: Mapping[str, Any]) -> CrmDeal:
        properties = result.get("properties") or {}
        modified = result.get("updatedAt") or properties.get("hs_lastmodifieddate")
        crm_id = str(result.get("id"))
        try:
            modified_at = parse_crm_time(modified, self.zone, what=f"deal {crm_id}: updatedAt")
        except RecordRejected as exc:  # the API always sends it: a record without one is refused, not guessed
            return CrmDeal(self.name, crm_id, properties, _EPOCH, problem=str(exc))
        return CrmDeal(self.name, crm_id, properties, modified_at)

    async def _owner_email(self, owner_id: str) -> str | None:
        response = await call_crm(
            self.name, self.client, self.metrics, "GET", f"{self.api_url}/crm/v3/owners/{owner_id}",
            headers=self.headers,
        )
        if response.status_code == 404:
            return None
        email = response.json().get("email")
        return str(email) if email else None

    async def search(self, since_ms: int, after: str | None, limit: int = 100) -> tuple[list[CrmDeal], str | None, int]:
        """One page of deals modified at or after `since_ms`, oldest first: (deals, the next page's cursor, total)."""
        body: dict[str, Any] = {
            "filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                                           "value": str(since_ms)}]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": limit,
        }
        if after:
            body["after"] = after
        response = await call_crm(
            self.name, self.client, self.metrics, "POST", f"{self.api_url}/crm/v3/objects/deals/search",
            json=body, headers=self.headers,
        )
        answer = response.json()
        following = ((answer.get("paging") or {}).get("next") or {}).get("after")
        return [self.deal(r) for r in answer.get("results") or []], following, int(answer.get("total") or 0)

    async def close(self) -> None:
        await self.client.aclose()
