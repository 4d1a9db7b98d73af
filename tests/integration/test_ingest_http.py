"""Ingest over HTTP on a real stack: every status code of the contract, all-or-nothing, the audit trail."""

from __future__ import annotations

import httpx
import pytest

from tests.support.events import activity, deal
from tests.support.stack import Stack, wait_until
from tests.support.stack import ledger_count as count_ledger

pytestmark = pytest.mark.integration


def ledger_count(stack: Stack) -> int:
    return count_ledger(stack.database_url)


@pytest.fixture
def ingest_stack(stack_factory, database_url: str) -> Stack:  # type: ignore[no-untyped-def]
    stack = stack_factory(database_url)
    stack.prepare()
    stack.start_service("ingest")
    stack.wait_healthy("ingest", "/v1/health")
    return stack


def post(stack: Stack, body: object, *, key: str | None = None, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or stack.admin_key}"}
    headers.update(kwargs.pop("headers", {}))  # type: ignore[arg-type]
    if "content" in kwargs:
        return httpx.post(f"{stack.ingest}/v1/events", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]
    return httpx.post(f"{stack.ingest}/v1/events", json=body, headers=headers, timeout=30)


def test_accepts_one_event_an_array_and_ndjson(ingest_stack: Stack) -> None:
    assert post(ingest_stack, deal("a1")).json() == {"accepted": 1, "duplicates": 0}
    r = post(ingest_stack, [deal("a2"), activity("a3"), deal("a1")])
    assert r.status_code == 202 and r.json() == {"accepted": 2, "duplicates": 1}
    import json

    ndjson = "\n".join(json.dumps(e) for e in [activity("a4"), activity("a5"), activity("a3")]) + "\n"
    r = post(ingest_stack, None, content=ndjson, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 202 and r.json() == {"accepted": 2, "duplicates": 1}
    assert ledger_count(ingest_stack) == 5


def test_a_batch_of_1000_with_one_bad_item_leaves_the_ledger_untouched(ingest_stack: Stack) -> None:
    batch = [activity(f"b{i}") for i in range(1000)]
    batch[613] = deal("b613", amount="12.345")
    r = post(ingest_stack, batch)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert [(e["index"], e["field"]) for e in problem["errors"]] == [(613, "amount")]
    assert "nothing was accepted" in problem["detail"]
    assert ledger_count(ingest_stack) == 0


def test_every_bad_item_is_listed(ingest_stack: Stack) -> None:
    r = post(ingest_stack, [deal("c1", stage="won", closed_at=None), activity("c2"), {"event_id": "c3", "type": "x"}])
    assert r.status_code == 422
    assert sorted({e["index"] for e in r.json()["errors"]}) == [0, 2]


def test_same_event_id_with_a_different_body_is_a_conflict(ingest_stack: Stack) -> None:
    assert post(ingest_stack, deal("d1")).status_code == 202
    r = post(ingest_stack, [deal("d2"), deal("d1", amount="999.00")])
    assert r.status_code == 409
    assert "d1" in r.json()["detail"]
    assert ledger_count(ingest_stack) == 1  # d2 was not accepted either


def test_conflict_inside_one_request(ingest_stack: Stack) -> None:
    r = post(ingest_stack, [deal("e1"), deal("e1", amount="5.00")])
    assert r.status_code == 409 and "e1" in r.json()["detail"]


def test_body_over_10_mib_is_413(ingest_stack: Stack) -> None:
    big = b"[" + b" " * (10 * 1024 * 1024 + 10) + b"]"
    r = post(ingest_stack, None, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_more_than_10000_events_is_413(ingest_stack: Stack) -> None:
    r = post(ingest_stack, [activity(f"f{i}") for i in range(10_001)])
    assert r.status_code == 413 and "10,000" in r.json()["detail"]


def test_keys_and_roles(ingest_stack: Stack) -> None:
    no_key = httpx.post(f"{ingest_stack.ingest}/v1/events", json=deal("g1"))
    assert no_key.status_code == 401 and no_key.headers["www-authenticate"] == "Bearer"
    assert post(ingest_stack, deal("g1"), key="sp_not_a_key").status_code == 401
    viewer = ingest_stack.create_key("viewer")[1]
    forbidden = post(ingest_stack, deal("g1"), key=viewer)
    assert forbidden.status_code == 403 and "viewer" in forbidden.json()["detail"]
    ingest = ingest_stack.create_key("ingest")[1]
    assert post(ingest_stack, deal("g1"), key=ingest).status_code == 202
    # the audit trail is readable with viewer and ingest keys
    r = httpx.get(f"{ingest_stack.ingest}/v1/events/g1", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200


def test_audit_trail_shows_the_event_its_sequence_and_publication(ingest_stack: Stack) -> None:
    post(ingest_stack, deal("h1"))
    post(ingest_stack, deal("h2"))

    def published() -> dict | None:  # type: ignore[type-arg]
        body = httpx.get(f"{ingest_stack.ingest}/v1/events/h2", headers=ingest_stack.headers).json()
        return body if body["status"] == "published" else None

    body = wait_until(published, timeout=20, what="h2 published by the relay")
    first = httpx.get(f"{ingest_stack.ingest}/v1/events/h1", headers=ingest_stack.headers).json()
    assert body["seq"] > first["seq"]
    assert body["event"]["amount"] == "100.00" and body["event"]["deal_id"] == "d-h2"
    assert body["accepted_at"] and body["published_at"]
    missing = httpx.get(f"{ingest_stack.ingest}/v1/events/nope", headers=ingest_stack.headers)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")


def test_metrics_count_outcomes(ingest_stack: Stack) -> None:
    post(ingest_stack, [deal("m1"), activity("m2")])
    post(ingest_stack, deal("m1"))
    post(ingest_stack, [deal("m3", amount="-1")])
    text = httpx.get(f"{ingest_stack.ingest}/metrics").text
    assert 'salespulse_ingest_events_total{outcome="accepted",type="deal"} 1.0' in text
    assert 'salespulse_ingest_events_total{outcome="accepted",type="activity"} 1.0' in text
    assert 'salespulse_ingest_events_total{outcome="duplicate",type="deal"} 1.0' in text
    assert 'salespulse_ingest_events_total{outcome="rejected",type="unknown"} 1.0' in text
    assert "salespulse_ingest_ledger_commit_seconds_count" in text
    assert 'route="/v1/events"' in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_strict_roster_rejects_unknown_reps(stack_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(database_url, SALESPULSE_STRICT_ROSTER="true")
    stack.prepare()
    stack.start_service("ingest")
    stack.start_service("api")
    stack.wait_healthy("ingest", "/v1/health")
    stack.wait_healthy("api", "/v1/health")
    put = httpx.put(f"{stack.api}/v1/reps/rep-1", json={"name": "Ada"}, headers=stack.headers)
    assert put.status_code == 200, put.text
    r = post(stack, [deal("s1"), activity("s2", rep="ghost")])
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"index": 1, "field": "rep_id", "message": "unknown rep 'ghost': add it with PUT /v1/reps/ghost first"}
    ]
    r = wait_until(
        lambda: (x := post(stack, [deal("s1")])).status_code == 202 and x, timeout=10, what="known rep accepted"
    )
    assert r.json() == {"accepted": 1, "duplicates": 0}
