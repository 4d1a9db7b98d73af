"""CRM connectors end to end on the real broker: a local fake of HubSpot and of Pipedrive (their documented HTTP
interfaces) send webhooks to ingest as the vendors would; what the deals go through in the CRM must give
exactly the KPIs that the equivalent contract events give. Each CRM deal has a twin: the same story told as
contract events posted to `POST /v1/events` for twin reps, and the two sets of KPIs are compared.

Then duplicated, replayed and reordered deliveries, a 429 storm and forged or stale webhooks change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.connectors.core import epoch_ms
from tests.support.connectors import (
    CLOSED,
    Twin,
    connect,
    connectors,
    drained,
    kpis,
    metric,
    revenue,
    same_as_twins,
    summary,
)
from tests.support.fake_crm import FakeHubSpot, FakePipedrive
from tests.support.stack import ROOT, Stack, free_port, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

EMAILS = {"101": "ana@example.com", "102": "ben@example.com"}


@pytest.fixture(scope="module")
def crm(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, FakeHubSpot, FakePipedrive]]:
    stack = sqlite_stack(broker, tmp_path_factory, "crm")
    hub = FakeHubSpot(clock=stack.clock, owners=dict(EMAILS))
    pipe = FakePipedrive(clock=stack.clock, users={int(k): v for k, v in EMAILS.items()})
    stack.ports["ingest"] = free_port()
    hub.webhook_url = f"http://127.0.0.1:{stack.ports['ingest']}/v1/connectors/hubspot/webhook"
    pipe.webhook_url = f"http://127.0.0.1:{stack.ports['ingest']}/v1/connectors/pipedrive/webhook"
    stack.extra_env.update({
        "SALESPULSE_HUBSPOT_CLIENT_SECRET": hub.secret,
        "SALESPULSE_HUBSPOT_TOKEN": "hubspot-private-app-token",
        "SALESPULSE_HUBSPOT_API_URL": hub.url,
        "SALESPULSE_PIPEDRIVE_WEBHOOK_USER": pipe.user,
        "SALESPULSE_PIPEDRIVE_WEBHOOK_PASSWORD": pipe.password,
        "SALESPULSE_PIPEDRIVE_TOKEN": pipe.token,
        "SALESPULSE_PIPEDRIVE_API_URL": pipe.url,
        "SALESPULSE_CONNECTOR_RETRY_MAX_SECONDS": "2",
    })
    stack.start()
    try:
        yield stack, hub, pipe
    finally:
        stack.stop()
        hub.close()
        pipe.close()


def test_hubspot_deal_lifecycle_gives_the_kpis_of_the_equivalent_events(crm: tuple[Stack, FakeHubSpot, Any]) -> None:
    stack, hub, _ = crm
    twin = Twin(stack)
    a = hub.create(dealname="Acme", dealstage="appointmentscheduled", amount="1000", hubspot_owner_id="101",
                   closedate="2026-12-20T00:00:00Z", dealtype="newbusiness")
    twin.deal("A", "ana", "open", "1000")
    hub.update(a, dealstage="closedwon", closedate=CLOSED)
    twin.deal("A", "ana", "won", "1000")
    same_as_twins(stack, "ana", what="a deal moved to Closed Won")
    assert kpis(stack, "ana")["month"]["revenue"] == 1000

    hub.update(a, amount="1500.25")
    twin.deal("A", "ana", "won", "1500.25")
    hub.update(a, hubspot_owner_id="102")
    twin.deal("A", "ben", "won", "1500.25")
    same_as_twins(stack, "ana", "ben", what="amount changed, then the deal reassigned")

    b = hub.create(dealname="Bolt", dealstage="closedwon", amount="700", hubspot_owner_id="101", closedate=CLOSED,
                   dealtype="renewal")
    twin.deal("B", "ana", "won", "700", kind="renewal")
    c = hub.create(dealname="Cobalt", dealstage="closedlost", amount="300", hubspot_owner_id="102", closedate=CLOSED)
    twin.deal("C", "ben", "lost", "300")
    hub.update(a, dealstage="contractsent")  # reopened
    twin.deal("A", "ben", "open", "1500.25")
    same_as_twins(stack, "ana", "ben", what="a renewal won, a deal lost, a deal reopened")
    hub.delete(b)
    twin.deal("B", "ana", "open", "0")
    same_as_twins(stack, "ana", "ben", what="a won deal deleted")
    assert kpis(stack, "ana")["month"]["revenue"] == 0 and kpis(stack, "ben")["month"]["deals_lost"] == 1
    assert c

    # Every delivery again, newest first, then once more: duplicates and reordering change nothing.
    before = {rep: kpis(stack, rep) for rep in ("ana", "ben")}
    accepted = metric(stack, "salespulse_connector_records_total", connector="hubspot", outcome="accepted")
    for raw in [*reversed(hub.deliveries), *hub.deliveries]:
        assert hub.post_signed(raw).status_code == 200
    drained(stack, "hubspot")
    assert {rep: kpis(stack, rep) for rep in ("ana", "ben")} == before
    assert metric(stack, "salespulse_connector_records_total", connector="hubspot", outcome="accepted") == accepted

    # A 429 storm: the connector waits as told and loses nothing.
    hub.fail_next(5, 429, retry_after=0.3)
    hub.update(c, dealstage="closedwon", amount="300")
    twin.deal("C", "ben", "won", "300")
    same_as_twins(stack, "ana", "ben", what="a change fetched through a 429 storm")
    assert hub.answered(429) == 5
    assert metric(stack, "salespulse_connector_api_errors_total", connector="hubspot", status="429") == 5
    assert metric(stack, "salespulse_connector_lag_seconds_count", connector="hubspot") > 0


def test_forged_stale_and_malformed_hubspot_webhooks_are_refused(crm: tuple[Stack, FakeHubSpot, Any]) -> None:
    stack, hub, _ = crm
    raw = json.dumps([{"objectId": 1, "occurredAt": 1, "subscriptionType": "deal.creation"}]).encode()
    refused = metric(stack, "salespulse_connector_deliveries_total", connector="hubspot", outcome="rejected_signature")
    forged = hub.post_signed(raw, secret="not-the-client-secret")
    assert forged.status_code == 401 and "signature does not match" in forged.json()["detail"]
    stale = hub.post_signed(raw, timestamp_ms=epoch_ms(stack.clock.now()) - 5 * 60 * 1000 - 1000)
    assert stale.status_code == 401 and "more than 5 minutes" in stale.json()["detail"]
    unsigned = httpx.post(hub.webhook_url, content=raw, timeout=10)
    assert unsigned.status_code == 401
    tampered = raw.replace(b'"objectId": 1', b'"objectId": 2')
    stamp = str(epoch_ms(stack.clock.now()))
    from services.connectors.hubspot import sign_v3

    signature = sign_v3(hub.secret, "POST", hub.webhook_url, raw, stamp)
    answer = httpx.post(hub.webhook_url, content=tampered, timeout=10,
                        headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp})
    assert answer.status_code == 401
    assert metric(stack, "salespulse_connector_deliveries_total", connector="hubspot",
                  outcome="rejected_signature") == refused + 4
    secrets = (hub.secret, "hubspot-private-app-token", "pipedrive-webhook-password", "pipedrive-api-token")
    status_text = httpx.get(f"{stack.ingest}/v1/connectors", headers=stack.headers, timeout=10).text
    metrics_text = httpx.get(f"{stack.ingest}/metrics", timeout=10).text
    log_text = (stack.data_dir / "ingest.log").read_text(errors="replace")
    for secret in secrets:  # no credential is logged or returned
        assert secret not in status_text and secret not in metrics_text and secret not in log_text
    malformed = hub.post_signed(b'{"not": "an array"}')
    assert malformed.status_code == 400 and "JSON array" in malformed.json()["detail"]
    assert connectors(stack)["hubspot"]["pending"] == 0


def test_a_record_the_mapping_cannot_place_is_kept_with_its_reason(crm: tuple[Stack, FakeHubSpot, Any]) -> None:
    stack, hub, _ = crm
    hub.create(dealname="Orphan", dealstage="closedwon", amount="10", hubspot_owner_id="999", closedate=CLOSED)
    wait_until(lambda: connectors(stack)["hubspot"]["rejected"] >= 1, timeout=30, what="the orphan deal refused")
    rejection = connectors(stack)["hubspot"]["recent_rejections"][0]
    assert "owner '999' is not mapped to a rep" in rejection["error"] and "owners.table" in rejection["error"]
    viewer = httpx.get(f"{stack.ingest}/v1/connectors", timeout=10)
    assert viewer.status_code == 401
    requeued = httpx.post(f"{stack.ingest}/v1/connectors/hubspot/requeue", headers=stack.headers, timeout=10)
    assert requeued.status_code == 200 and requeued.json()["requeued"] >= 1
    wait_until(lambda: connectors(stack)["hubspot"]["rejected"] >= 1, timeout=30, what="refused again, unchanged")


def test_pipedrive_lifecycle_merges_and_reordered_deliveries(crm: tuple[Stack, Any, FakePipedrive]) -> None:
    stack, _, pipe = crm
    twin = Twin(stack)
    d = pipe.create(owner_id=101, value=400, status="open")
    twin.deal("D", "cara", "open", "400")  # no KPIs yet either way
    pipe.update(d, status="won", close_time="2026-12-05 10:00:00")
    twin.deal("D", "ana", "won", "400")
    e = pipe.create(owner_id=101, value=600.5, status="won", close_time=CLOSED)
    twin.deal("E", "ana", "won", "600.5")
    f = pipe.create(owner_id=102, value=250, status="lost", close_time=CLOSED)
    twin.deal("F", "ben", "lost", "250")
    same_as_twins(stack, "ana", "ben", what="Pipedrive deals won and lost")

    # D merged into E: Pipedrive deletes D (merged_to_id E) and changes E.
    pipe.delete(d, merged_to=e)
    twin.deal("D", "ana", "open", "0")
    pipe.update(e, value=1000.5)
    twin.deal("E", "ana", "won", "1000.5")
    pipe.update(f, owner_id=101)
    twin.deal("F", "ana", "lost", "250")
    same_as_twins(stack, "ana", "ben", what="a merge and a reassignment")
    pipe.update(f, status="open")  # reopened
    twin.deal("F", "ana", "open", "250")
    same_as_twins(stack, "ana", "ben", what="a lost deal reopened")
    assert kpis(stack, "ana")["month"]["revenue"] == 1000.5  # the merged deal does not count twice

    before = {rep: kpis(stack, rep) for rep in ("ana", "ben")}
    for raw in reversed(pipe.deliveries):  # every older snapshot again, newest first
        assert pipe.post(raw).status_code == 200
    drained(stack, "pipedrive")
    assert {rep: kpis(stack, rep) for rep in ("ana", "ben")} == before

    # Two changes within one second of Pipedrive's clock: the same version, other content. The later one wins.
    with pipe.lock:
        same_second = dict(pipe.deals[e], value=1100.5)
    pipe.deliver("change", e, "2026-12-05T10:00:00.900Z", same_second, {"value": 1000.5})
    twin.deal("E", "ana", "won", "1100.5")
    same_as_twins(stack, "ana", "ben", what="a second change within the same second")

    wrong = pipe.post(pipe.deliveries[0], auth=(pipe.user, "guess"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
    assert httpx.post(pipe.webhook_url, content=b"{}", timeout=10).status_code == 401


def test_hubspot_backfill_resumes_after_a_kill_and_is_safe_to_run_twice(
    crm: tuple[Stack, FakeHubSpot, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    stack, _, _ = crm
    old = FakeHubSpot(clock=stack.clock, owners={"201": "dora@example.com"}, secret="unused")
    try:
        for number in range(450):  # no webhook: deals that were in HubSpot before salespulse
            old.create(dealname=f"Old {number}", dealstage="closedwon", amount=f"{number}.50", hubspot_owner_id="201",
                       closedate="2026-11-10T12:00:00Z")
        old.delay = 0.25  # each API call takes a while, so the kill lands mid-way
        env = {"SALESPULSE_HUBSPOT_TOKEN": "token", "SALESPULSE_HUBSPOT_API_URL": old.url}
        first = connect(stack, "hubspot", "--since", "2026-01-01", **env)
        state = stack.data_dir / "cli" / "connectors" / "hubspot-backfill.json"
        wait_until(lambda: state.exists() and json.loads(state.read_text())["read"] >= 100, timeout=60,
                   what="the backfill's first pages")
        first.kill()
        first.wait(timeout=10)
        read_before = json.loads(state.read_text())["read"]
        assert read_before < 450
        old.delay = 0.0
        second = connect(stack, "hubspot", "--since", "2026-01-01", **env)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert f"resuming the hubspot backfill after {read_before:,} records" in err
        assert "records/s" in err
        assert summary(out)["read"] == 450 - read_before
        expected = sum(Decimal(f"{n}.50") for n in range(450))
        wait_until(lambda: Decimal(str(revenue(stack, "dora"))) == expected,
                   timeout=30, what="every old deal counted once")
        again = connect(stack, "hubspot", "--since", "2026-01-01", "--restart", **env)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert summary(out) == {"read": 450, "accepted": 0, "duplicates": 450, "rejected": 0}
    finally:
        old.close()


def test_pipedrive_backfill_reads_every_page(crm: tuple[Stack, Any, FakePipedrive]) -> None:
    stack, _, _ = crm
    old = FakePipedrive(clock=stack.clock, users={301: "eli@example.com"}, token="old-token")
    try:
        for number in range(120):
            status = "won" if number % 3 else "lost"
            old.create(owner_id=301, value=10, status=status, close_time="2026-11-10T12:00:00Z")
        env = {"SALESPULSE_PIPEDRIVE_TOKEN": "old-token", "SALESPULSE_PIPEDRIVE_API_URL": old.url}
        run = connect(stack, "pipedrive", "--since", "2026-01-01", **env)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert summary(out) == {"read": 120, "accepted": 120, "duplicates": 0, "rejected": 0}
        wait_until(lambda: revenue(stack, "eli") == 800.0, timeout=30, what="80 won deals of 10")
        wrong = connect(stack, "pipedrive", **{**env, "SALESPULSE_PIPEDRIVE_TOKEN": "wrong"})
        out, err = wrong.communicate(timeout=60)
        assert wrong.returncode == 1 and "401" in err
    finally:
        old.close()


def test_ingest_refuses_to_start_with_a_broken_mapping(tmp_path: Any) -> None:
    mapping = tmp_path / "hubspot.yaml"
    mapping.write_text("connector: hubspot\nfields: {amount: amount}\nstages: {won: [closedwon]}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    env.update({"SALESPULSE_DATA_DIR": str(tmp_path), "SALESPULSE_HUBSPOT_CLIENT_SECRET": "s",
                "SALESPULSE_HUBSPOT_TOKEN": "t", "SALESPULSE_HUBSPOT_MAPPING": str(mapping)})
    run = subprocess.run([sys.executable, "-m", "services.cli.main", "ingest"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "error: the mapping hubspot.yaml cannot be used" in run.stderr
    assert "fields.owner: required" in run.stderr and "fields.closed_at: required" in run.stderr


def test_an_address_that_keeps_forging_webhooks_is_held_off(crm: tuple[Stack, FakeHubSpot, Any]) -> None:
    stack, hub, _ = crm
    stack.start_service("ingest", instance="ingest-strict", SALESPULSE_RATE_AUTH_FAILURES="0.01",
                        SALESPULSE_RATE_AUTH_FAILURES_BURST="3")
    try:
        stack.wait_healthy("ingest-strict", "/v1/health")
        url = f"http://127.0.0.1:{stack.ports['ingest-strict']}/v1/connectors/hubspot/webhook"
        forged = {"X-HubSpot-Signature-v3": "bm90IGEgc2lnbmF0dXJl", "X-HubSpot-Request-Timestamp":
                  str(epoch_ms(stack.clock.now()))}
        answers = [httpx.post(url, content=b"[]", headers=forged, timeout=10) for _ in range(4)]
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
        assert int(answers[-1].headers["retry-after"]) >= 1 and "SALESPULSE_RATE_AUTH_FAILURES" in answers[-1].text
    finally:
        stack.kill("ingest-strict")


def test_the_console_overview_shows_each_connector_and_its_last_event(crm: tuple[Stack, FakeHubSpot, Any]) -> None:
    """docs/console.md, Health: each connector set up is listed (events or not), with what waits and what was
    refused, beside the last event each one sent."""
    stack, hub, _ = crm
    hub.create(dealname="Overview", dealstage="closedwon", amount="10", hubspot_owner_id="101", closedate=CLOSED,
               dealtype="newbusiness")

    def listed() -> dict[str, Any] | None:
        overview = httpx.get(f"{stack.api}/v1/overview", headers=stack.headers, timeout=10).json()
        sources = {s["source"] for s in overview["sources"]}
        return overview if "hubspot" in sources else None

    overview = wait_until(listed, timeout=60, what="a HubSpot event counted by source")
    connectors = {c["connector"]: c for c in overview["connectors"]}
    assert connectors["hubspot"]["enabled"] and connectors["pipedrive"]["enabled"]
    assert "salesforce" not in connectors  # not set up here, and nothing of it in the inbox
    assert all(isinstance(c["rejected"], int) and isinstance(c["pending"], int) for c in connectors.values())
    hubspot = next(s for s in overview["sources"] if s["source"] == "hubspot")
    assert hubspot["events_today"] >= 1 and hubspot["last_accepted_at"] is not None
