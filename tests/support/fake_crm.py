"""Local fakes of the CRMs' HTTP interfaces, for the connector tests: real HTTP servers that hold deals, answer
the documented API calls with the documented shapes, and send the documented webhooks to ingest when a deal
changes — as the vendor would. Fixtures are written from the vendors' public API references:

- HubSpot: CRM v3 objects (`POST /crm/v3/objects/deals/batch/read`, `POST /crm/v3/objects/deals/search`),
  owners (`GET /crm/v3/owners/{id}`), webhooks (a JSON array of events, X-HubSpot-Signature-v3).
- Pipedrive: API v2 deals (`GET /api/v2/deals`), v1 users, webhooks v2 (`meta`, `data`, `previous`; HTTP Basic).

`fail_next(n, 429, retry_after)` makes the next n API calls fail, for storms.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from services.common.clock import Clock
from services.connectors.core import epoch_ms
from services.connectors.hubspot import sign_v3
from tests.support.stack import free_port

__all__ = ["FakeCrm", "FakeHubSpot", "FakePipedrive"]


def iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


@dataclass
class FakeCrm:
    """The HTTP server and what every fake shares: a clock, a failure plan and a request log."""

    clock: Clock
    port: int = field(default_factory=free_port)
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    """(method, path, status answered)"""
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0
    """Seconds each API answer takes."""
    _failures: list[tuple[int, float]] = field(default_factory=list)
    _last_ms: int = 0

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urlparse(self.path)
                status, answer, headers = fake.answer(method, parsed.path, parse_qs(parsed.query), body, self.headers)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                with fake.lock:
                    fake.calls.append((method, parsed.path, status))

            def do_GET(self) -> None:  # http.server's names
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, status: int = 429, retry_after: float = 1.0) -> None:
        with self.lock:
            self._failures += [(status, retry_after)] * count

    def answered(self, status: int) -> int:
        with self.lock:
            return sum(1 for _, _, s in self.calls if s == status)

    def now_ms(self) -> int:
        """The fake's modification times: the test clock's, strictly increasing."""
        with self.lock:
            self._last_ms = max(self._last_ms + 1, epoch_ms(self.clock.now()))
            return self._last_ms

    def answer(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if self.delay:
            time.sleep(self.delay)  # a slow CRM (the server's own thread; nothing here waits for it)
        with self.lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            status, retry_after = failure
            return status, {"status": "error", "message": "You have reached your secondly limit."}, {
                "Retry-After": f"{retry_after:g}"
            }
        return self.route(method, path, query, body, headers)

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class FakeHubSpot(FakeCrm):
    """HubSpot's deals, owners and webhooks. `deliver` posts the signed webhook batch to `webhook_url`."""

    secret: str = "hubspot-client-secret"
    webhook_url: str = ""
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    deliveries: list[bytes] = field(default_factory=list)
    _next_id: int = 1000
    _event_id: int = 1

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if not str(headers.get("authorization", "")).startswith("Bearer "):
            return 401, {"status": "error", "category": "INVALID_AUTHENTICATION"}, {}
        request = json.loads(body) if body else {}
        if method == "POST" and path == "/crm/v3/objects/deals/batch/read":
            wanted = [str(i["id"]) for i in request["inputs"]]
            with self.lock:
                found = [self._public(self.deals[i], request["properties"]) for i in wanted
                         if i in self.deals and not self.deals[i]["archived"]]
            missing = [i for i in wanted if i not in {d["id"] for d in found}]
            answer: dict[str, Any] = {"status": "COMPLETE", "results": found, "startedAt": iso_ms(self.now_ms()),
                                      "completedAt": iso_ms(self.now_ms())}
            if missing:
                answer["numErrors"] = 1
                answer["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                     "message": "Could not get some DEAL objects, they may be deleted or not exist.",
                                     "context": {"ids": missing}}]
                return 207, answer, {}
            return 200, answer, {}
        if method == "POST" and path == "/crm/v3/objects/deals/search":
            since = int(request["filterGroups"][0]["filters"][0]["value"])
            limit = int(request.get("limit", 10))
            start = int(request.get("after") or 0)
            with self.lock:
                matching = sorted(
                    (d for d in self.deals.values() if not d["archived"] and d["updated_ms"] >= since),
                    key=lambda d: (d["updated_ms"], int(d["id"])),
                )
                page = [self._public(d, request["properties"]) for d in matching[start:start + limit]]
            answer = {"total": len(matching), "results": page}
            if start + limit < len(matching):
                answer["paging"] = {"next": {"after": str(start + limit)}}
            return 200, answer, {}
        if method == "GET" and path.startswith("/crm/v3/owners/"):
            owner = path.rsplit("/", 1)[1]
            if owner not in self.owners:
                return 404, {"status": "error", "category": "OBJECT_NOT_FOUND"}, {}
            return 200, {"id": owner, "email": self.owners[owner], "firstName": "", "lastName": "",
                         "userId": int(owner), "archived": False}, {}
        return 404, {"status": "error", "message": f"no route {method} {path}"}, {}

    @staticmethod
    def _public(deal: dict[str, Any], properties: list[str]) -> dict[str, Any]:
        props = {name: deal["properties"].get(name) for name in properties}
        props["hs_object_id"] = deal["id"]
        return {"id": deal["id"], "properties": props, "createdAt": deal["createdAt"],
                "updatedAt": iso_ms(deal["updated_ms"]), "archived": deal["archived"]}

    # --- what a user does in HubSpot, and the webhook HubSpot sends for it -----------------------------------

    def create(self, **properties: Any) -> str:
        with self.lock:
            self._next_id += 1
            deal_id = str(self._next_id)
        ms = self.now_ms()
        with self.lock:
            self.deals[deal_id] = {"id": deal_id, "properties": {k: _text(v) for k, v in properties.items()},
                                   "createdAt": iso_ms(ms), "updated_ms": ms, "archived": False}
        self.deliver([self._event("deal.creation", deal_id, ms)])
        return deal_id

    def update(self, deal_id: str, **properties: Any) -> None:
        ms = self.now_ms()
        with self.lock:
            deal = self.deals[deal_id]
            deal["properties"].update({k: _text(v) for k, v in properties.items()})
            deal["updated_ms"] = ms
        self.deliver([self._event("deal.propertyChange", deal_id, ms, name, _text(value))
                      for name, value in properties.items()])

    def delete(self, deal_id: str) -> None:
        ms = self.now_ms()
        with self.lock:
            self.deals[deal_id]["archived"] = True
        self.deliver([self._event("deal.deletion", deal_id, ms)])

    def _event(self, kind: str, deal_id: str, ms: int, name: str | None = None, value: Any = None) -> dict[str, Any]:
        with self.lock:
            self._event_id += 1
            event_id = self._event_id
        event: dict[str, Any] = {"eventId": event_id, "subscriptionId": 2001, "portalId": 62515, "appId": 1160452,
                                 "occurredAt": ms, "subscriptionType": kind, "attemptNumber": 0,
                                 "objectId": int(deal_id), "changeSource": "CRM_UI"}
        if name is not None:
            event.update(propertyName=name, propertyValue=value)
        return event

    def deliver(self, events: list[dict[str, Any]], *, body: bytes | None = None) -> httpx.Response | None:
        raw = body if body is not None else json.dumps(events).encode()
        with self.lock:
            self.deliveries.append(raw)
        if not self.webhook_url:
            return None
        return self.post_signed(raw)

    def post_signed(self, raw: bytes, *, timestamp_ms: int | None = None, secret: str | None = None) -> httpx.Response:
        stamp = str(timestamp_ms if timestamp_ms is not None else epoch_ms(self.clock.now()))
        signature = sign_v3(secret or self.secret, "POST", self.webhook_url, raw, stamp)
        return httpx.post(self.webhook_url, content=raw, timeout=10, headers={
            "Content-Type": "application/json", "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": stamp, "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/)"})


@dataclass
class FakePipedrive(FakeCrm):
    """Pipedrive's deals, users and webhooks v2 (HTTP Basic auth)."""

    user: str = "salespulse"
    password: str = "pipedrive-webhook-password"
    token: str = "pipedrive-api-token"
    webhook_url: str = ""
    deals: dict[int, dict[str, Any]] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)
    deliveries: list[bytes] = field(default_factory=list)
    _next_id: int = 0

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if headers.get("x-api-token") != self.token:
            return 401, {"success": False, "error": "unauthorized access", "errorCode": 401}, {}
        if method == "GET" and path == "/api/v2/deals":
            with self.lock:
                deals = [d for d in self.deals.values() if not d["is_deleted"]]
                if "ids" in query:
                    wanted = {int(i) for i in query["ids"][0].split(",")}
                    deals = [d for d in deals if d["id"] in wanted]
                if "updated_since" in query:
                    deals = [d for d in deals if d["update_time"] >= query["updated_since"][0]]
                deals.sort(key=lambda d: (d["update_time"], d["id"]))
                limit = int(query.get("limit", ["100"])[0])
                start = int(query.get("cursor", ["0"])[0])
                page = [dict(d) for d in deals[start:start + limit]]
            following = str(start + limit) if start + limit < len(deals) else None
            return 200, {"success": True, "data": page, "additional_data": {"next_cursor": following}}, {}
        if method == "GET" and path.startswith("/api/v1/users/"):
            user = int(path.rsplit("/", 1)[1])
            if user not in self.users:
                return 404, {"success": False, "error": "User not found"}, {}
            return 200, {"success": True, "data": {"id": user, "email": self.users[user], "name": ""}}, {}
        return 404, {"success": False, "error": f"no route {method} {path}"}, {}

    def _stamp(self) -> tuple[str, str]:
        """update_time (seconds, as Pipedrive sends it) and the webhook's meta.timestamp."""
        ms = self.now_ms()
        with self.lock:  # Pipedrive's update_time has whole seconds: keep them strictly increasing
            seconds = max(ms // 1000, getattr(self, "_last_s", 0) + 1)
            self._last_s = seconds
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)), iso_ms(seconds * 1000)

    def create(self, **fields: Any) -> int:
        with self.lock:
            self._next_id += 1
            deal_id = self._next_id
        stamp, meta_time = self._stamp()
        deal = {"id": deal_id, "title": f"Deal {deal_id}", "value": 0, "currency": "USD", "status": "open",
                "stage_id": 1, "pipeline_id": 1, "owner_id": None, "org_id": None, "person_id": None,
                "add_time": stamp, "update_time": stamp, "close_time": None, "won_time": None, "lost_time": None,
                "is_deleted": False, "custom_fields": {}}
        deal.update(fields)
        with self.lock:
            self.deals[deal_id] = deal
        self.deliver("create", deal_id, meta_time, dict(deal), None)
        return deal_id

    def update(self, deal_id: int, **fields: Any) -> None:
        stamp, meta_time = self._stamp()
        with self.lock:
            previous = {k: self.deals[deal_id][k] for k in fields}
            self.deals[deal_id].update(fields, update_time=stamp)
            data = dict(self.deals[deal_id])
        self.deliver("change", deal_id, meta_time, data, previous)

    def delete(self, deal_id: int, *, merged_to: int | None = None) -> None:
        _, meta_time = self._stamp()
        with self.lock:
            self.deals[deal_id]["is_deleted"] = True
            previous = dict(self.deals[deal_id])
        self.deliver("delete", deal_id, meta_time, None, previous, merged_to=merged_to)

    def deliver(self, action: str, deal_id: int, meta_time: str, data: Any, previous: Any,
                merged_to: int | None = None) -> httpx.Response | None:
        meta: dict[str, Any] = {"action": action, "entity": "deal", "entity_id": str(deal_id), "version": "2.0",
                                "id": f"{deal_id}-{meta_time}", "company_id": "12882925", "user_id": "18487521",
                                "correlation_id": f"c-{deal_id}-{meta_time}", "timestamp": meta_time,
                                "is_bulk_edit": False, "type": "general", "attempt": 1, "change_source": "app",
                                "host": "company.pipedrive.com", "webhook_id": "99", "webhook_owner_id": "18487521",
                                "permitted_user_ids": ["18487521"]}
        if merged_to is not None:
            meta["merged_to_id"] = str(merged_to)
        raw = json.dumps({"meta": meta, "data": data, "previous": previous}).encode()
        with self.lock:
            self.deliveries.append(raw)
        return self.post(raw) if self.webhook_url else None

    def post(self, raw: bytes, *, auth: tuple[str, str] | None = None) -> httpx.Response:
        user, password = auth or (self.user, self.password)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        return httpx.post(self.webhook_url, content=raw, timeout=10, headers={
            "Content-Type": "application/json", "Authorization": f"Basic {basic}", "User-Agent": "Pipedrive Webhooks"})


def _text(value: Any) -> Any:
    """HubSpot's API gives every property as a string."""
    return None if value is None else str(value)

