"""The CRM data set replayed through the real stack ends in exactly the KPIs the contract defines.

The feed is the demo history (15,011 deal snapshots) plus what real CRMs do: re-sent events, reversals
(won → open → won again, or lost; with a new owner or close date), stale versions sent after newer ones,
ties broken by event_id, unversioned snapshots, splits, and activities (tests/support/crm_feed.py). It goes
through ingest as NDJSON, and every rep's weekly, monthly and fiscal-quarterly KPIs from the gateway are
compared with the independent computation there.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def _unique(events: Iterable[Event]) -> list[Event]:
    return list({event["event_id"]: event for event in events}.values())


