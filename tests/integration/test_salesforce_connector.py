"""The Salesforce connector end to end: a local fake org answers REST (SOQL, User) and speaks the Pub/Sub API
over real gRPC (Subscribe with flow control and replay ids, GetSchema, Avro payloads). Opportunities changed in
the fake give the KPIs of their twin contract events, splits included; an update of an unmapped field fetches
nothing; a GAP event re-reads the record; and after a kill -9 of ingest the subscription resumes after the
stored replay id, so changes made while it was down arrive once."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.support.connectors import Twin, connect, connectors, kpis, metric, revenue, same_as_twins, summary
from tests.support.fake_crm import FakeSalesforce
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

ANA, BEN = "005000000000001AAA", "005000000000002AAA"


def opp(number: int) -> str:
    return f"006{number:012d}AAA"


@pytest.fixture(scope="module")
def org(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, FakeSalesforce]]:
    stack = sqlite_stack(broker, tmp_path_factory, "sforg")
    fake = FakeSalesforce(clock=stack.clock, users={ANA: "ana@example.com", BEN: "ben@example.com"})
    stack.extra_env.update({
        "SALESPULSE_SALESFORCE_INSTANCE_URL": fake.url,
        "SALESPULSE_SALESFORCE_TOKEN": fake.token,
        "SALESPULSE_SALESFORCE_TENANT_ID": "00D000000000001AAA",
        "SALESPULSE_SALESFORCE_PUBSUB_ADDRESS": f"127.0.0.1:{fake.grpc_port}",
        "SALESPULSE_SALESFORCE_PUBSUB_TLS": "false",
    })
    stack.start()
    wait_until(lambda: fake.subscribes, timeout=30, what="ingest subscribed to the change events")
    try:
        yield stack, fake
    finally:
        stack.stop()
        fake.close()


def test_opportunity_changes_give_the_kpis_of_the_equivalent_events(org: tuple[Stack, FakeSalesforce]) -> None:
    stack, fake = org
    twin = Twin(stack)
    fake.create(opp(1), Name="Acme", StageName="Prospecting", Amount="1000", CloseDate="2026-12-20", OwnerId=ANA)
    twin.deal("S1", "ana", "open", "1000")
    fake.update(opp(1), StageName="Closed Won", CloseDate="2026-12-05")
    twin.deal("S1", "ana", "won", "1000")
    same_as_twins(stack, "ana", what="an Opportunity moved to Closed Won")
    assert kpis(stack, "ana")["month"]["revenue"] == 1000

    fetched = metric(stack, "salespulse_connector_records_total", connector="salesforce", outcome="fetched")
    fake.update(opp(1), Description="called the buyer")  # a field the mapping does not read: nothing to fetch
    fake.update(opp(1), Amount="1250.75")
    twin.deal("S1", "ana", "won", "1250.75")
    same_as_twins(stack, "ana", what="an amount change")
    assert metric(stack, "salespulse_connector_records_total", connector="salesforce", outcome="fetched") == fetched + 1

    fake.splits[opp(2)] = [(ANA, 60), (BEN, 40), (ANA, 20, "Overlay")]  # Salesforce's example: revenue and overlay
    fake.create(opp(2), Name="Bolt", StageName="Closed Won", Amount="500", CloseDate="2026-12-05", OwnerId=ANA,
                Type="Existing Customer - Replacement")
    twin.deal("S2", "ana", "won", "500", kind="renewal",
              splits=[{"rep_id": "twin-ana", "share": "0.6"}, {"rep_id": "twin-ben", "share": "0.4"},
                      {"rep_id": "twin-ana", "share": "0.2", "role": "overlay"}])
    fake.update(opp(1), OwnerId=BEN)
    twin.deal("S1", "ben", "won", "1250.75")
    same_as_twins(stack, "ana", "ben", what="a split renewal and a reassignment")

    fake.update(opp(1), gap=True, StageName="Closed Lost")  # Salesforce could not send the change: re-read it
    twin.deal("S1", "ben", "lost", "1250.75")
    fake.delete(opp(2))
    twin.deal("S2", "ana", "open", "0")
    same_as_twins(stack, "ana", "ben", what="a GAP update re-read and a deletion")
    fake.update(opp(1), StageName="Negotiation/Review")  # reopened
    twin.deal("S1", "ben", "open", "1250.75")
    same_as_twins(stack, "ana", "ben", what="a lost Opportunity reopened")

    # Salesforce delivers at least once: the same change events again (with new replay ids) change nothing.
    before = {rep: kpis(stack, rep) for rep in ("ana", "ben")}
    with fake.changed:
        again = [payload for _, payload in fake.events[-6:]]
    for payload in again:
        fake.republish(payload)
    wait_until(lambda: connectors(stack)["salesforce"]["pending"] == 0 and
               metric(stack, "salespulse_connector_deliveries_total", connector="salesforce", outcome="accepted")
               >= len(fake.events), timeout=30, what="the repeated change events handled")
    assert {rep: kpis(stack, rep) for rep in ("ana", "ben")} == before
    assert connectors(stack)["salesforce"]["rejected"] == 0


def test_a_restarted_ingest_resumes_after_the_stored_replay_id(org: tuple[Stack, FakeSalesforce]) -> None:
    stack, fake = org
    twin = Twin(stack)
    fake.create(opp(10), Name="Cobalt", StageName="Closed Won", Amount="300", CloseDate="2026-12-05", OwnerId=BEN)
    twin.deal("S10", "ben", "won", "300")
    same_as_twins(stack, "ana", "ben", what="before the kill")
    subscribed = len(fake.subscribes)
    stack.kill("ingest", signal.SIGKILL)
    fake.update(opp(10), Amount="450")  # while ingest is down
    fake.create(opp(11), Name="Dune", StageName="Closed Won", Amount="50", CloseDate="2026-12-05", OwnerId=ANA)
    stack.start_service("ingest")
    stack.wait_healthy("ingest", "/v1/health")
    twin.deal("S10", "ben", "won", "450")
    twin.deal("S11", "ana", "won", "50")
    same_as_twins(stack, "ana", "ben", what="changes made while ingest was down")
    resumed = fake.subscribes[subscribed]
    assert resumed and int.from_bytes(resumed, "big") >= 1  # CUSTOM, after a replay id it had stored


def test_salesforce_backfill_reads_opportunities_changed_since_a_day(org: tuple[Stack, FakeSalesforce]) -> None:
    stack, fake = org
    for number in range(100, 130):
        with fake.lock:  # already in the org before salespulse: no change events
            fake.opportunities[opp(number)] = {"attributes": {"type": "Opportunity"}, "Id": opp(number),
                                               "LastModifiedDate": "2026-11-02T09:00:00.000+0000",
                                               "StageName": "Closed Won", "Amount": "10", "CloseDate": "2026-11-02",
                                               "OwnerId": ANA}
    run = connect(stack, "salesforce", "--since", "2026-11-01", **{
        "SALESPULSE_SALESFORCE_INSTANCE_URL": fake.url, "SALESPULSE_SALESFORCE_TOKEN": fake.token,
        "SALESPULSE_SALESFORCE_TENANT_ID": "00D000000000001AAA"})
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    counts = summary(out)
    assert counts["read"] == len(fake.opportunities) and counts["rejected"] == 0
    wait_until(lambda: revenue(stack, "ana", "2026-11-02") == 300, timeout=30,
               what="30 won Opportunities of 10 in November")
