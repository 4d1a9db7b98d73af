"""The connectors' pure parts: HubSpot's v3 signature (against HubSpot's published test vector), the mapping
file's checks, and how a CRM record becomes a deal snapshot."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from schemas.events import validate_events
from services.connectors import hubspot, pipedrive
from services.connectors.core import CrmDeal, RecordRejected, deletion_event, epoch_ms, snapshot_event
from services.connectors.mapping import (
    CONNECTORS,
    MappingError,
    default_mapping_path,
    load_connector_mapping,
    parse_connector_mapping,
)

# HubSpot's own SDK test (hubspot-api-python, tests/spec/utils/test_signature.py: test_get_signature__v3).
VECTOR = {
    "secret": "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
    "uri": "https://www.example.com/webhook_uri",
    "body": b"{'example_field':'example_value'}",
    "timestamp": "1693657560000",
    "signature": "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
}
UTC_ZONE = ZoneInfo("UTC")


def verify(**change: object) -> str | None:
    v = {**VECTOR, **change}
    now = int(str(v.pop("now", VECTOR["timestamp"])))
    return hubspot.verify_v3(str(v["secret"]), "POST", str(v["uri"]), v["body"], v["signature"],  # type: ignore[arg-type]
                             v["timestamp"], now)  # type: ignore[arg-type]


def test_hubspot_signature_matches_the_published_vector() -> None:
    assert hubspot.sign_v3(VECTOR["secret"], "POST", VECTOR["uri"], VECTOR["body"], VECTOR["timestamp"]) == (  # type: ignore[arg-type]
        VECTOR["signature"]
    )
    assert verify() is None


def test_hubspot_signature_refuses_tampering_staleness_and_wrong_secrets() -> None:
    assert "does not match" in str(verify(body=b"{'example_field':'other_value'}"))
    assert "does not match" in str(verify(uri="https://www.example.com/webhook_uri/"))
    assert "does not match" in str(verify(secret="another-secret"))
    assert "does not match" in str(verify(timestamp="1693657560001"))
    five_minutes = 5 * 60 * 1000
    assert verify(now=int(VECTOR["timestamp"]) + five_minutes) is None  # exactly 5 minutes old: still fresh
    assert "more than 5 minutes" in str(verify(now=int(VECTOR["timestamp"]) + five_minutes + 1))
    assert "more than 5 minutes" in str(verify(now=int(VECTOR["timestamp"]) - five_minutes - 1))
    assert "required" in str(verify(signature=None))
    assert "epoch milliseconds" in str(verify(timestamp="2023-09-02T12:26:00Z"))


def test_hubspot_uri_decoding_follows_the_documented_table() -> None:
    assert hubspot.decode_uri("https://x.example/hook%3Fa%3Ab%2Fc%40d%21%24%27%28%29%2A%2C%3B") == (
        "https://x.example/hook?a:b/c@d!$'()*,;"
    )
    assert hubspot.decode_uri("https://x.example/hook?q=a%20b%26c") == "https://x.example/hook?q=a%20b%26c"


def test_hubspot_batches_become_fetches_and_deletions() -> None:
    body = json.dumps([
        {"objectId": 7, "occurredAt": 1700000000000, "subscriptionType": "deal.creation"},
        {"objectId": 7, "occurredAt": 1700000000500, "subscriptionType": "deal.propertyChange",
         "propertyName": "dealstage", "propertyValue": "closedwon"},
        {"objectId": 8, "occurredAt": 1700000001000, "subscriptionType": "deal.deletion"},
        {"objectId": 9, "occurredAt": 1700000002000, "subscriptionType": "deal.merge", "mergedObjectIds": [9, 10]},
        {"objectId": 3, "occurredAt": 1700000003000, "subscriptionType": "contact.creation"},
    ]).encode()
    batch = hubspot.parse_webhook(body)
    assert [(i.object_id, i.action) for i in batch.items] == [
        ("7", "fetch"), ("7", "fetch"), ("8", "delete"), ("9", "fetch"), ("10", "delete")
    ]
    assert batch.ignored == 1
    assert batch.items[2].changed_at == datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC)
    no_id = b'[{"subscriptionType":"deal.creation"}]'
    for bad, why in ((b"{", "not JSON"), (b"{}", "JSON array"), (no_id, "objectId")):
        with pytest.raises(ValueError, match=why):
            hubspot.parse_webhook(bad)


def test_pipedrive_deliveries_become_records_and_merges() -> None:
    meta = {"action": "change", "entity": "deal", "entity_id": "5", "version": "2.0",
            "timestamp": "2026-11-20T10:00:00.250Z"}
    data = {"id": 5, "value": 1200.5, "status": "won", "update_time": "2026-11-20T10:00:00Z"}
    delivery = pipedrive.parse_webhook(json.dumps({"meta": meta, "data": data, "previous": {}}).encode(),
                                       can_fetch=False)
    assert [(i.object_id, i.action) for i in delivery.items] == [("5", "record")]
    assert delivery.items[0].payload is not None and delivery.items[0].payload["value"] == Decimal("1200.5")
    merge = {"meta": {**meta, "action": "delete", "merged_to_id": "6"}, "data": None, "previous": data}
    merged = pipedrive.parse_webhook(json.dumps(merge).encode(), can_fetch=True).items
    assert [(i.object_id, i.action) for i in merged] == [("5", "delete"), ("6", "fetch")]
    person = {"meta": {**meta, "entity": "person"}, "data": {"id": 1}, "previous": None}
    assert pipedrive.parse_webhook(json.dumps(person).encode(), can_fetch=False).ignored == 1
    with pytest.raises(ValueError, match="version 2.0"):
        pipedrive.parse_webhook(json.dumps({"meta": {**meta, "version": "1.0"}}).encode(), can_fetch=False)


@pytest.mark.parametrize("connector", CONNECTORS)
def test_the_packaged_mappings_load(connector: str) -> None:
    mapping = load_connector_mapping(default_mapping_path(connector), connector=connector)
    assert mapping.connector == connector and mapping.won and mapping.lost


def test_a_broken_mapping_lists_every_problem_with_what_to_change(tmp_path: Path) -> None:
    document = {
        "connector": "hubspt",
        "fields": {"amount": "amount", "clossed_at": "closedate", "owner": "hubspot_owner_id"},
        "stages": {"won": ["closedwon"], "lost": ["closedwon"]},
        "kinds": {"newbusiness": "brand-new"},
        "owners": {"rule": "email_localpart", "unmapped": 42},
        "extra": True,
    }
    with pytest.raises(MappingError) as caught:
        parse_connector_mapping(document, origin="mine.yaml")
    report = caught.value.report()
    for expected in (
        "connector: one of hubspot, pipedrive, salesforce, not 'hubspt' (did you mean hubspot?)",
        "fields.clossed_at: unknown key (did you mean closed_at?)",
        "fields.closed_at: required",
        "fields.stage: required",
        "stages: closedwon is listed under both won and lost",
        "kinds.newbusiness: one of new, renewal, expansion, not 'brand-new'",
        "owners.rule: one of email_local_part, id, table, not 'email_localpart' (did you mean email_local_part?)",
        "owners.unmapped: reject, or the rep id",
        "extra: unknown key",
    ):
        assert expected in report, report
    (tmp_path / "bad.yaml").write_text("connector: [unclosed", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_connector_mapping(tmp_path / "bad.yaml")
    with pytest.raises(MappingError, match="this mapping is for hubspot"):
        load_connector_mapping(default_mapping_path("hubspot"), connector="pipedrive")


MAPPING = parse_connector_mapping({
    "connector": "hubspot",
    "fields": {"amount": "amount", "closed_at": "closedate", "owner": "hubspot_owner_id", "stage": "dealstage",
               "kind": "dealtype", "currency": "deal_currency_code"},
    "stages": {"won": ["closedwon"], "lost": ["closedlost"], "open": ["appointmentscheduled", "contractsent"]},
    "kinds": {"newbusiness": "new", "renewal": "renewal"},
    "owners": {"rule": "email_local_part", "table": {"900": "team-lead"}},
})
MODIFIED = datetime(2026, 11, 20, 10, 0, 1, 234000, tzinfo=UTC)


async def emails(owner: str) -> str | None:
    return {"101": "Ana.Lopez@example.com"}.get(owner)


def snapshot(**properties: str | None) -> dict[str, object]:
    fields = {"amount": "1500.50", "closedate": "2026-11-20T09:00:00Z", "hubspot_owner_id": "101",
              "dealstage": "closedwon", "dealtype": "renewal", "deal_currency_code": "usd", **properties}
    deal = CrmDeal("hubspot", "42", fields, MODIFIED)
    return asyncio.run(snapshot_event(deal, MAPPING, emails, UTC_ZONE))


def test_a_won_deal_becomes_a_valid_snapshot_versioned_by_its_modification_time() -> None:
    event = snapshot()
    assert event == {
        "event_id": f"hubspot-deal-42-{epoch_ms(MODIFIED)}",
        "type": "deal",
        "occurred_at": "2026-11-20T10:00:01.234000+00:00",
        "source": "hubspot",
        "deal_id": "hubspot:42",
        "version": epoch_ms(MODIFIED),
        "owner_id": "ana.lopez",
        "stage": "won",
        "amount": "1500.50",
        "kind": "renewal",
        "currency": "USD",
        "closed_at": "2026-11-20T09:00:00+00:00",
    }
    events, problems = validate_events(json.dumps([event]).encode())
    assert not problems and events[0].version == epoch_ms(MODIFIED) and events[0].occurred_at == MODIFIED


def test_mapping_rules_for_owners_stages_dates_and_amounts() -> None:
    assert snapshot(hubspot_owner_id="900")["owner_id"] == "team-lead"  # the table wins over the rule
    assert snapshot(dealstage="contractsent")["stage"] == "open"
    assert "closed_at" not in snapshot(dealstage="contractsent")
    assert snapshot(closedate="2026-11-20")["closed_at"] == "2026-11-20T00:00:00+00:00"  # midnight, business tz
    nine = str(epoch_ms(datetime(2026, 11, 20, 9, tzinfo=UTC)))
    assert snapshot(closedate=nine)["closed_at"] == "2026-11-20T09:00:00+00:00"  # epoch milliseconds
    assert snapshot(closedate=None)["closed_at"] == MODIFIED.isoformat()  # closed when it last changed
    assert snapshot(amount=None)["amount"] == "0"
    assert snapshot(dealtype=None)["kind"] == "new"
    for change, why in (
        ({"dealstage": "qualifiedtobuy"}, "stage 'qualifiedtobuy' is not listed"),
        ({"hubspot_owner_id": "555"}, "owner '555' is not mapped"),
        ({"amount": "12,50"}, "is not a number"),
        ({"amount": "-3"}, "at least 0"),
        ({"closedate": "20/11/2026"}, "not an RFC 3339 time"),
        ({"dealtype": "partner"}, "deal type 'partner' is not listed"),
    ):
        with pytest.raises(RecordRejected, match=why):
            snapshot(**change)


def test_a_deletion_credits_nothing() -> None:
    deleted = datetime(2026, 11, 21, tzinfo=UTC)
    event = deletion_event("pipedrive", "5", deleted, "ana")
    events, problems = validate_events(json.dumps([event]).encode())
    assert not problems
    assert events[0].stage == "open" and events[0].amount == 0 and events[0].version == epoch_ms(deleted)


def test_salesforce_changed_field_bitmaps_decode_to_field_names() -> None:
    from services.connectors.salesforce import changed_fields, items_for_change

    schema = {"fields": [
        {"name": "ChangeEventHeader", "type": {"type": "record", "name": "H", "fields": []}},
        {"name": "Name", "type": ["null", "string"]},
        {"name": "Amount", "type": ["null", "string"]},
        {"name": "BillingAddress", "type": ["null", {"type": "record", "name": "Address", "fields": [
            {"name": "City", "type": ["null", "string"]}, {"name": "Street", "type": ["null", "string"]}]}]},
        {"name": "StageName", "type": ["null", "string"]},
    ]}
    assert changed_fields(["0x14"], schema) == {"Amount", "StageName"}  # bits 2 and 4
    assert changed_fields(["0x8", "3-0x2"], schema) == {"BillingAddress", "BillingAddress.Street"}
    assert changed_fields(["not-hex", "9-0x1"], schema) == set()
    header = {"changeType": "UPDATE", "recordIds": ["006000000000001AAA"], "commitTimestamp": 1_700_000_000_000,
              "changedFields": ["0x2"]}  # Name only
    assert items_for_change({"ChangeEventHeader": header}, schema, {"Amount", "StageName"}) == []
    fetch = items_for_change({"ChangeEventHeader": {**header, "changedFields": ["0x4"]}}, schema, {"Amount"})
    assert [(i.object_id, i.action) for i in fetch] == [("006000000000001AAA", "fetch")]
    for change, action in (("DELETE", "delete"), ("GAP_UPDATE", "fetch"), ("GAP_DELETE", "fetch"),
                           ("UNDELETE", "fetch"), ("CREATE", "fetch")):
        items = items_for_change({"ChangeEventHeader": {**header, "changeType": change}}, schema, {"Amount"})
        assert [i.action for i in items] == [action], change
