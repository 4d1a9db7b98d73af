"""The CRM data set replayed through the real stack ends in exactly the KPIs the contract defines.

The feed is the demo history (15,011 deal snapshots) plus what real CRMs do: re-sent events, reversals
(won → open → won again, or lost; with a new owner or close date), stale versions sent after newer ones,
ties broken by event_id, unversioned snapshots, splits, and activities (tests/support/crm_feed.py). It goes
through ingest as NDJSON, and every rep's weekly, monthly and fiscal-quarterly KPIs from the gateway are
compared with the independent computation there.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import httpx
import pytest

from tests.support.crm_feed import STACK_ENV, Event, crm_feed, expected_kpis, post_feed, wait_for_kpis
from tests.support.metrics import metric, scrape
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


def test_crm_replay_with_duplicates_reversals_and_stale_versions_ends_in_the_contract_kpis(
    stack_factory, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    feed = crm_feed()
    expected = expected_kpis(feed.events)
    # The feed exercises the ordering rule: taking the last snapshot sent instead gives other totals.
    assert expected_kpis(feed.events, last_arrival_wins=True).totals != expected.totals
    stack = stack_factory(database_url, **STACK_ENV).start()

    accepted, duplicates = post_feed(stack, feed.batches(2500))
    assert (accepted, duplicates) == (feed.unique, feed.resent)

    wait_for_kpis(stack, expected)

    # The worker's /metrics tell the same story (its own registry; no rep ids in labels).
    metrics = scrape(stack)
    for agent in ("deal-state", "rep-kpis"):
        assert metric(metrics, "salespulse_scoring_events_total", agent=agent) > 0
        assert metric(metrics, "salespulse_scoring_batch_size_count", agent=agent) > 0
        assert metric(metrics, "salespulse_scoring_batch_size_sum", agent=agent) > 0
        assert metric(metrics, "salespulse_scoring_batch_processing_seconds_count", agent=agent) > 0
        assert metric(metrics, "salespulse_scoring_batch_processing_seconds_sum", agent=agent) > 0
        assert metric(metrics, "salespulse_scoring_event_age_seconds_count", agent=agent) > 0
    # Every deal event passed the deal-state agent once; activities and credit messages the rep agent.
    assert metric(metrics, "salespulse_scoring_events_total", agent="deal-state") == sum(
        1 for event in _unique(feed.events) if event["type"] == "deal"
    )
    # 200 stale version 3s, 150 stale version 1s, 200 version 1s after their version 2, 60 originals after
    # their tie winner and 30 unversioned openings after their close.
    assert metric(metrics, "salespulse_scoring_stale_snapshots_total") == 200 + 150 + 200 + 60 + 30
    assert metric(metrics, "salespulse_scoring_duplicates_total") == 0  # ingest dropped the re-sent ones
    assert metric(metrics, "salespulse_scoring_dead_letters_total") == 0
    # One worker owns every source partition; once its commits catch up, no partition lags.
    topics = [f"{stack.topic_prefix}{name}" for name in ("events.deals", "credits", "events.activities")]
    for topic in topics:
        assert metric(metrics, "salespulse_scoring_assigned_partitions", topic=topic) == 4

    def caught_up() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        samples = scrape(stack)
        lags = samples.get("salespulse_scoring_consumer_lag_messages", [])
        return samples if len(lags) == 12 and all(value == 0 for _, value in lags) else None

    wait_until(caught_up, timeout=30, interval=0.2, what="zero consumer lag on all 12 source partitions")

    # Statements over the data set (issue 21): a fiscal quarter closed, each statement's lines summing to its
    # value and its payout equal to live progress; the same plan as a what-if draft gives identical figures.
    plan = {"plan_id": "q-revenue", "name": "Quarterly revenue", "metric": "revenue", "period": "quarter",
            "effective_from": "2025-01-01", "quota": 150000,
            "tiers": [{"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.04},
                      {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.07},
                      {"tier_id": "accel", "name": "Accelerator", "threshold": 1.3, "rate": 0.1}]}
    with httpx.Client(base_url=stack.api, headers=stack.headers, timeout=120) as http:
        http.put("/v1/plans/q-revenue", json=plan).raise_for_status()
        wait_until(lambda: http.get("/v1/plans/q-revenue").status_code == 200, timeout=10, what="the plan")
        day = "2025-11-15"  # in FY2026-Q3 (the fiscal year starts in April)
        live = {}
        for rep in sorted({key[0] for key in expected.totals}):
            answer = http.get(f"/v1/reps/{rep}/progress", params={"date": day}).json()
            live[rep] = next(p for p in answer["plans"] if p["plan_id"] == "q-revenue")
        draft = http.post("/v1/plans/what-if", json={"plan": plan, "period_key": "FY2026-Q3"}).json()
        assert all(row["draft"] == row["live"] for row in draft["participants"])
        closed = http.post("/v1/plans/q-revenue/periods/FY2026-Q3/close")
        assert closed.status_code == 200, closed.text
        for rep, progress in live.items():
            listed = http.get(f"/v1/reps/{rep}/statements").json()["statements"]
            entry = next(s for s in listed if s["plan_id"] == "q-revenue" and s["period_key"] == "FY2026-Q3")
            statement = http.get(f"/v1/statements/{entry['statement_id']}").json()
            assert sum(Decimal(line["credit"]) for line in statement["lines"]) == Decimal(statement["value"]), rep
            assert Decimal(statement["payout"]) == Decimal(str(progress["payout"])), rep
            assert float(statement["value"]) == progress["value"], rep
            row = next(r for r in draft["participants"] if r["rep_id"] == rep)
            assert row["live"]["payout"] == statement["payout"], rep


def _unique(events: Iterable[Event]) -> list[Event]:
    return list({event["event_id"]: event for event in events}.values())


