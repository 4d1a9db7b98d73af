"""Salesforce: Change Data Capture on Opportunity through the Pub/Sub API (gRPC, Avro), whole records over REST.

- The subscriber holds a `Subscribe` stream on `/data/OpportunityChangeEvent`, resuming after the replay id it
  stored with the last changes it accepted (the first time: from the tip of the stream). Each event's Avro
  payload is decoded with the schema `GetSchema` gives for its schema id.
- CREATE and UNDELETE, and an UPDATE whose changed-field bitmap names a field the mapping reads, become
  "fetch" rows; an UPDATE of other fields is ignored; DELETE becomes a "delete" row. GAP_* events (Salesforce
  could not send the change itself) and GAP_OVERFLOW re-read the named records over REST; a record gone from
  Salesforce by then is a deletion.
- The changes and the new replay id are written in one transaction, then more events are requested: a
  restart resumes exactly after the last changes written, and a change is never skipped.
- REST (`/services/data/vXX.X/query`) reads whole Opportunities and, when the org has them, their splits
  (`OpportunitySplit`): the Revenue split type's owners and shares divide a deal's credit (when they total
  100 %), the Overlay split type's are overlay credit on top of it (docs/plans-and-boards.md).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import fastavro
import grpc
import httpx

from services.common.background import BackgroundLoop
from services.common.backoff import Backoff
from services.common.settings import Settings
from services.connectors.base import Connector, CrmApiError, Page, call_crm
from services.connectors.core import CrmDeal, RecordRejected, parse_crm_time
from services.connectors.inbox import NewItem
from services.connectors.mapping import ConnectorMapping
from services.connectors.metrics import ConnectorMetrics
from services.connectors.pubsub import pubsub_api_pb2 as _pb
from services.connectors.pubsub import pubsub_api_pb2_grpc as _pb_grpc

__all__ = ["TOPIC", "SalesforceConnector", "changed_fields", "items_for_change"]

log = logging.getLogger("salespulse.connectors.salesforce")
pb: Any = _pb  # generated code: its messages are made at import time, invisible to mypy
pb_grpc: Any = _pb_grpc
API_VERSION = "v60.0"
TOPIC = "/data/OpportunityChangeEvent"
BATCH = 100
_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
Splits = tuple[list[tuple[str, Decimal]], list[tuple[str, Decimal]]]
"""An Opportunity's (Revenue splits, Overlay splits), each as (owner id, share)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FETCH_CHANGES = ("CREATE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_UNDELETE", "GAP_DELETE", "GAP_OVERFLOW")


def changed_fields(bitmaps: list[str], schema: Mapping[str, Any]) -> set[str]:
    """Field names of a change event's changedFields: each entry a hex bitmap over the schema's fields (bit 0 =
    the first field), or `N-0x..` over the fields of the N-th field's nested record (names as `Parent.Child`)."""
    fields = schema.get("fields") or []
    names: set[str] = set()
    for entry in bitmaps or []:
        parent, _, bitmap = entry.rpartition("-")
        try:
            value = int(bitmap, 16)
        except ValueError:
            continue
        if parent:
            index = int(parent)
            if not 0 <= index < len(fields):
                continue
            nested = _record_of(fields[index]["type"])
            prefix = fields[index]["name"] + "."
            scope = nested.get("fields") or [] if nested else []
        else:
            prefix, scope = "", fields
        names.update(prefix + field["name"] for bit, field in enumerate(scope) if value >> bit & 1)
    return names


def _record_of(avro_type: Any) -> dict[str, Any] | None:
    if isinstance(avro_type, dict) and avro_type.get("type") == "record":
        return avro_type
    if isinstance(avro_type, list):
        for member in avro_type:
            found = _record_of(member)
            if found:
                return found
    return None


def items_for_change(record: Mapping[str, Any], schema: Mapping[str, Any], watched: set[str]) -> list[NewItem]:
    """The inbox rows for one decoded change event."""
    header = record.get("ChangeEventHeader") or {}
    change = str(header.get("changeType") or "")
    ids = [str(i) for i in header.get("recordIds") or []]
    at = datetime.fromtimestamp(int(header.get("commitTimestamp") or 0) / 1000, UTC)
    if change == "DELETE":
        return [NewItem(i, "delete", at) for i in ids]
    if change == "UPDATE":
        names = changed_fields(list(header.get("changedFields") or []), schema)
        if names and not names & watched:
            return []
        return [NewItem(i, "fetch", at) for i in ids]
    if change in FETCH_CHANGES:
        if change == "GAP_OVERFLOW" and not ids:
            log.warning("Salesforce reported a change overflow without record ids; run "
                        "`salespulse connect salesforce --backfill --since <the day of the outage>` to re-read")
        return [NewItem(i, "fetch", at) for i in ids]
    return []


class SalesforceConnector(Connector):
    name = "salesforce"
    missing_means_deleted = True
    """A record a GAP_* event or a re-read cannot find any more was deleted meanwhile."""

    def __init__(
        self,
        mapping: ConnectorMapping,
        zone: ZoneInfo,
        metrics: ConnectorMetrics | None,
        *,
        instance_url: str,
        token: str,
        tenant_id: str,
        pubsub_address: str,
        pubsub_tls: bool = True,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(mapping, zone, metrics)
        self.instance_url = instance_url.rstrip("/")
        self.token = token
        self.tenant_id = tenant_id
        self.pubsub_address = pubsub_address
        self.pubsub_tls = pubsub_tls
        self.client = client or httpx.AsyncClient(timeout=30.0)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.splits_enabled = True

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ConnectorMetrics | None) -> SalesforceConnector:
        assert settings.salesforce_instance_url and settings.salesforce_token and settings.salesforce_tenant_id
        return cls(
            cls.load_mapping(settings.salesforce_mapping), settings.zone, metrics,
            instance_url=settings.salesforce_instance_url, token=settings.salesforce_token.get_secret_value(),
            tenant_id=settings.salesforce_tenant_id, pubsub_address=settings.salesforce_pubsub_address,
            pubsub_tls=settings.salesforce_pubsub_tls,
        )

    @property
    def watched(self) -> set[str]:
        return {*self.mapping.crm_fields, "OwnerId"}

    async def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query (following nextRecordsUrl)."""
        url: str | None = f"{self.instance_url}/services/data/{API_VERSION}/query"
        params: dict[str, str] | None = {"q": soql}
        records: list[dict[str, Any]] = []
        while url:
            response = await call_crm(self.name, self.client, self.metrics, "GET", url, params=params,
                                      headers=self.headers)
            answer = json.loads(response.content, parse_float=Decimal)
            records += answer.get("records") or []
            following = answer.get("nextRecordsUrl")
            url, params = (f"{self.instance_url}{following}", None) if following and not answer.get("done") else (
                None, None)
        return records

    def _fields(self) -> str:
        return ", ".join(sorted({"Id", "LastModifiedDate", *self.mapping.crm_fields}))

    async def fetch(self, ids: list[str]) -> tuple[list[CrmDeal], list[str]]:
        safe = [i for i in ids if _ID.match(i)]
        if not safe:
            return [], list(ids)
        quoted = ", ".join(f"'{i}'" for i in safe)
        records = await self.query(f"SELECT {self._fields()} FROM Opportunity WHERE Id IN ({quoted})")
        splits = await self._splits(quoted)
        deals = [self.deal(record, splits.get(str(record.get("Id")))) for record in records]
        found = {deal.crm_id for deal in deals}
        return deals, [i for i in ids if i not in found]

    async def _splits(self, quoted_ids: str) -> dict[str, Splits]:
        """Each Opportunity's Revenue splits (kept when they total 100 %) and Overlay splits, by id."""
        if not self.splits_enabled:
            return {}
        try:
            rows = await self.query(
                "SELECT OpportunityId, SplitOwnerId, SplitPercentage, SplitType.DeveloperName FROM OpportunitySplit "
                f"WHERE OpportunityId IN ({quoted_ids}) AND SplitType.DeveloperName IN ('Revenue', 'Overlay')"
            )
        except CrmApiError as exc:  # an org without Opportunity Splits answers 400 INVALID_TYPE: owners get it all
            if exc.status == 400:
                log.info("Salesforce: no OpportunitySplit in this org; the owner gets each deal's credit")
                self.splits_enabled = False
                return {}
            raise
        found: dict[str, Splits] = {}
        for row in rows:
            share = Decimal(str(row.get("SplitPercentage") or 0)) / 100
            overlay = (row.get("SplitType") or {}).get("DeveloperName") == "Overlay"
            revenue, overlays = found.setdefault(str(row["OpportunityId"]), ([], []))
            (overlays if overlay else revenue).append((str(row["SplitOwnerId"]), share))
        return {
            opp: (revenue if sum(s for _, s in revenue) == 1 else [], overlays)
            for opp, (revenue, overlays) in found.items()
        }

    def deal(self, record: Mapping[str, Any], splits: Splits | None = None) -> CrmDeal:
        crm_id = str(record.get("Id"))
        try:
            modified = parse_crm_time(record.get("LastModifiedDate"), self.zone,
                                      what=f"deal {crm_id}: LastModifiedDate")
        except RecordRejected as exc:
            return CrmDeal(self.name, crm_id, record, _EPOCH, problem=str(exc))
        revenue, overlays = splits or ([], [])
        return CrmDeal(self.name, crm_id, record, modified, splits=revenue if len(revenue) > 1 else None,
                       overlays=overlays or None)

    async def _owner_email(self, owner_id: str) -> str | None:
        if not _ID.match(owner_id):
            return None
        response = await call_crm(
            self.name, self.client, self.metrics, "GET",
            f"{self.instance_url}/services/data/{API_VERSION}/sobjects/User/{owner_id}",
            params={"fields": "Email"}, headers=self.headers,
        )
        if response.status_code == 404:
            return None
        email = response.json().get("Email")
        return str(email) if email else None

    async def backfill_pages(self, since: datetime, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """Opportunities modified since `since` (or the cursor's time), oldest first, 2,000 at a time."""
        start = cursor.get("since") or since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        while True:
            records = await self.query(
                f"SELECT {self._fields()} FROM Opportunity WHERE LastModifiedDate >= {start} "
                "ORDER BY LastModifiedDate, Id LIMIT 2000"
            )
            quoted = ", ".join(f"'{r['Id']}'" for r in records if _ID.match(str(r.get("Id"))))
            splits = await self._splits(quoted) if quoted else {}
            deals = [self.deal(r, splits.get(str(r.get("Id")))) for r in records]
            last = max((d.modified_at for d in deals), default=None)
            following = last.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if last and len(records) == 2000 else None
            if following == start:  # 2,000 changes in one second: step past it (the next page repeats nothing)
                following = None
            yield Page(deals, {"since": following}, None)
            if not following:
                return
            start = following

    def start_subscriber(self, connectors: Any) -> ChangeSubscriber:
        subscriber = ChangeSubscriber(self, connectors)
        subscriber.start()
        return subscriber

    async def close(self) -> None:
        await self.client.aclose()


class ChangeSubscriber(BackgroundLoop):
    """Holds the Subscribe stream, reconnecting with back-off; see the module's docstring."""

    loop_name = "salesforce change events"

    def __init__(self, connector: SalesforceConnector, connectors: Any) -> None:
        self.connector = connector
        self.connectors = connectors
        self.schemas: dict[str, Any] = {}
        self.backoff = Backoff(first=1.0, most=60.0, jitter=0.5)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        c = self.connector
        return (("accesstoken", c.token), ("instanceurl", c.instance_url), ("tenantid", c.tenant_id))

    async def _run(self) -> None:
        while True:
            try:
                await self._subscribe()
            except (grpc.aio.AioRpcError, OSError, ValueError) as exc:
                status = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                if self.connector.metrics:
                    self.connector.metrics.connector_api_errors.labels("salesforce", f"grpc:{status}").inc()
                wait = self.backoff.next()
                log.warning("Salesforce Pub/Sub stream ended (%s); subscribing again in %.1f s", status, wait)
                await asyncio.sleep(wait)

    async def _subscribe(self) -> None:
        c = self.connector
        inbox = self.connectors.inbox
        if c.pubsub_tls:
            channel = grpc.aio.secure_channel(c.pubsub_address, grpc.ssl_channel_credentials())
        else:
            channel = grpc.aio.insecure_channel(c.pubsub_address)
        async with channel:
            stub = pb_grpc.PubSubStub(channel)
            replay = await inbox.get_state("salesforce", "replay_id")
            first = pb.FetchRequest(
                topic_name=TOPIC,
                replay_preset=pb.CUSTOM if replay else pb.LATEST,
                replay_id=bytes.fromhex(replay) if replay else b"",
                num_requested=BATCH,
            )
            more: asyncio.Queue[Any] = asyncio.Queue()

            async def requests() -> AsyncIterator[Any]:
                yield first
                while True:
                    yield await more.get()

            outstanding = BATCH
            async for response in stub.Subscribe(requests(), metadata=self.metadata):
                self.backoff.reset()
                items: list[NewItem] = []
                for consumed in response.events:
                    schema = await self._schema(stub, consumed.event.schema_id)
                    record = fastavro.schemaless_reader(io.BytesIO(consumed.event.payload), schema)
                    assert isinstance(record, dict)
                    items += items_for_change(record, schema, c.watched)
                latest = response.events[-1].replay_id if response.events else response.latest_replay_id
                if c.metrics and response.events:
                    c.metrics.connector_deliveries.labels("salesforce", "accepted").inc(len(response.events))
                if latest:
                    await inbox.add("salesforce", items, state=("replay_id", latest.hex()))
                    self.connectors.wake("salesforce")
                outstanding -= len(response.events)
                if outstanding <= BATCH // 2:
                    await more.put(pb.FetchRequest(topic_name=TOPIC, num_requested=BATCH))
                    outstanding += BATCH

    async def _schema(self, stub: Any, schema_id: str) -> Any:
        if schema_id not in self.schemas:
            info = await stub.GetSchema(pb.SchemaRequest(schema_id=schema_id), metadata=self.metadata)
            self.schemas[schema_id] = fastavro.parse_schema(json.loads(info.schema_json))
        return self.schemas[schema_id]
