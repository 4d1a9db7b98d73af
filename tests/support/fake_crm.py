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
    _last_s: int = 0

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
            seconds = max(ms // 1000, self._last_s + 1)
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



# --- Salesforce: REST (SOQL query, User) and the Pub/Sub API's Subscribe/GetSchema over real gRPC --------------

SF_HEADER = {
    "type": "record", "name": "ChangeEventHeader", "namespace": "com.sforce.eventbus",
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "namespace": "com.sforce.eventbus",
                                        "symbols": ["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE",
                                                    "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW",
                                                    "SNAPSHOT"]}},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ],
}
SF_FIELDS = ["Name", "Description", "StageName", "Amount", "CloseDate", "OwnerId", "Type", "AccountId",
             "CurrencyIsoCode", "LastModifiedDate"]
SF_SCHEMA = {
    "type": "record", "name": "OpportunityChangeEvent", "namespace": "com.sforce.eventbus",
    "fields": [{"name": "ChangeEventHeader", "type": SF_HEADER}]
    + [{"name": name, "type": ["null", "string"], "default": None} for name in SF_FIELDS],
}
SF_SCHEMA_ID = "opportunity-change-event-v1"


@dataclass
class FakeSalesforce(FakeCrm):
    """An org's Opportunities, OpportunitySplits and Users over REST, and their change events on a gRPC server
    that speaks the Pub/Sub API (services/connectors/pubsub/pubsub_api.proto)."""

    token: str = "00Dxx0000000001!salesforce-token"
    opportunities: dict[str, dict[str, Any]] = field(default_factory=dict)
    splits: dict[str, list[tuple[str, int] | tuple[str, int, str]]] = field(default_factory=dict)
    """Opportunity id → (owner, percentage[, split type developer name, default Revenue])."""
    users: dict[str, str] = field(default_factory=dict)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(replay id, Avro payload) in commit order."""
    grpc_port: int = field(default_factory=free_port)
    subscribes: list[bytes] = field(default_factory=list)
    """The replay id each Subscribe started after (b"" for LATEST)."""
    _seq: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        import grpc

        from services.connectors.pubsub import pubsub_api_pb2_grpc as pb_grpc

        self.changed = threading.Condition(self.lock)
        self.grpc_server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(8))
        pb_grpc.add_PubSubServicer_to_server(_PubSub(self), self.grpc_server)
        self.grpc_server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        self.grpc_server.start()

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], {}
        if path.endswith("/query"):
            return 200, self._query(query["q"][0]), {}
        if "/sobjects/User/" in path:
            user = path.rsplit("/", 1)[1]
            if user not in self.users:
                return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], {}
            return 200, {"attributes": {"type": "User"}, "Id": user, "Email": self.users[user]}, {}
        return 404, [{"errorCode": "NOT_FOUND", "message": path}], {}

    def _query(self, soql: str) -> dict[str, Any]:
        import re

        with self.lock:
            ids = re.findall(r"'([A-Za-z0-9]{15,18})'", soql)
            if "FROM OpportunitySplit" in soql:
                types = re.search(r"SplitType\.DeveloperName IN \(([^)]*)\)", soql)
                asked = set(re.findall(r"'(\w+)'", types.group(1))) if types else {"Revenue"}
                records = [{"attributes": {"type": "OpportunitySplit"}, "OpportunityId": opp, "SplitOwnerId": split[0],
                            "SplitPercentage": split[1],
                            "SplitType": {"attributes": {"type": "OpportunitySplitType"}, "DeveloperName": kind}}
                           for opp in ids for split in self.splits.get(opp, [])
                           if (kind := split[2] if len(split) > 2 else "Revenue") in asked]
            elif "WHERE Id IN" in soql:
                records = [dict(self.opportunities[i]) for i in ids if i in self.opportunities]
            else:
                since = re.search(r"LastModifiedDate >= (\S+)", soql)
                records = sorted((dict(o) for o in self.opportunities.values()
                                  if not since or o["LastModifiedDate"] >= since.group(1).replace("Z", ".000+0000")),
                                 key=lambda o: (o["LastModifiedDate"], o["Id"]))
        return {"totalSize": len(records), "done": True, "records": records}

    def _publish(self, change: str, opp_id: str, changed: list[str], ms: int) -> None:
        import io

        import fastavro

        with self.lock:
            values = dict(self.opportunities.get(opp_id, {}))
        bitmap = sum(1 << (SF_FIELDS.index(name) + 1) for name in changed)  # field 0 is the header
        header = {"entityName": "Opportunity", "recordIds": [opp_id], "changeType": change, "changeOrigin": "",
                  "transactionKey": f"t{ms}", "sequenceNumber": 1, "commitTimestamp": ms, "commitNumber": ms,
                  "commitUser": "005000000000001", "nulledFields": [], "diffFields": [],
                  "changedFields": [hex(bitmap)] if changed else []}
        record = {"ChangeEventHeader": header, **{n: (None if values.get(n) is None else str(values[n]))
                                                   for n in SF_FIELDS if change in ("CREATE", "UPDATE")}}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(SF_SCHEMA), record)
        with self.changed:
            self._seq += 1
            self.events.append((self._seq.to_bytes(8, "big"), buffer.getvalue()))
            self.changed.notify_all()

    def republish(self, payload: bytes) -> None:
        """The same change event once more, at a new replay id (Salesforce delivers at least once)."""
        with self.changed:
            self._seq += 1
            self.events.append((self._seq.to_bytes(8, "big"), payload))
            self.changed.notify_all()

    def create(self, opp_id: str, **fields: Any) -> None:
        ms = self.now_ms()
        with self.lock:
            self.opportunities[opp_id] = {"attributes": {"type": "Opportunity"}, "Id": opp_id,
                                          "LastModifiedDate": _sf_time(ms), **fields}
        self._publish("CREATE", opp_id, list(fields), ms)

    def update(self, opp_id: str, *, gap: bool = False, **fields: Any) -> None:
        ms = self.now_ms()
        with self.lock:
            self.opportunities[opp_id].update(fields, LastModifiedDate=_sf_time(ms))
        self._publish("GAP_UPDATE" if gap else "UPDATE", opp_id, list(fields), ms)

    def delete(self, opp_id: str) -> None:
        ms = self.now_ms()
        with self.lock:
            del self.opportunities[opp_id]
        self._publish("DELETE", opp_id, [], ms)

    def close(self) -> None:
        self.grpc_server.stop(0)
        super().close()


def _sf_time(ms: int) -> str:
    """Salesforce's REST datetime: 2026-12-05T10:00:00.000+0000."""
    return iso_ms(ms).replace("Z", "+0000")


class _PubSub:
    """The Pub/Sub API's Subscribe (with flow control and replay) and GetSchema, over the fake's events."""

    def __init__(self, fake: FakeSalesforce) -> None:
        self.fake = fake

    def GetSchema(self, request: Any, context: Any) -> Any:  # the service's method names
        from services.connectors.pubsub import pubsub_api_pb2 as pb

        return pb.SchemaInfo(schema_json=json.dumps(SF_SCHEMA), schema_id=request.schema_id)

    def Subscribe(self, requests: Any, context: Any) -> Any:
        from services.connectors.pubsub import pubsub_api_pb2 as pb

        metadata = dict(context.invocation_metadata())
        if metadata.get("accesstoken") != self.fake.token or not metadata.get("tenantid"):
            import grpc

            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid session")
        first = next(requests)
        fake = self.fake
        with fake.changed:
            fake.subscribes.append(bytes(first.replay_id) if first.replay_preset == pb.CUSTOM else b"")
            if first.replay_preset == pb.CUSTOM:
                position = int.from_bytes(first.replay_id, "big")
            elif first.replay_preset == pb.EARLIEST:
                position = 0
            else:
                position = len(fake.events)
        credits = [first.num_requested]

        def more() -> None:
            import grpc

            try:
                for request in requests:
                    with fake.changed:
                        credits[0] += request.num_requested
                        fake.changed.notify_all()
            except grpc.RpcError:  # the client went away (a killed ingest)
                return

        threading.Thread(target=more, daemon=True).start()
        while context.is_active():
            with fake.changed:
                fake.changed.wait_for(lambda at=position: at < len(fake.events) and credits[0] > 0, timeout=0.5)
                ready = fake.events[position:position + max(0, credits[0])]
            if not ready:
                continue
            position += len(ready)
            credits[0] -= len(ready)
            yield pb.FetchResponse(
                events=[pb.ConsumerEvent(event=pb.ProducerEvent(id=f"e{int.from_bytes(r, 'big')}",
                                                                 schema_id=SF_SCHEMA_ID, payload=p), replay_id=r)
                        for r, p in ready],
                latest_replay_id=ready[-1][0], rpc_id="rpc", pending_num_requested=credits[0])
