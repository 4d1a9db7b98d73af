"""A scoring worker killed with SIGKILL at each risky step of a batch (after its credits were sent, after its
table was written, after a rep's state, its history or its minute days were written) is replaced, and the KPIs
end exactly as if nothing happened: the replacement meets messages the dead worker had already applied and
counts none twice.

The feed and the independent expectation are the replay test's (CONTRACT §1–3, not services.scoring).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.crm_feed import NOW, STACK_ENV, crm_feed, expected_kpis, post_feed, stamp, wait_for_kpis
from tests.support.metrics import metric, scrape
from tests.support.scoring_stack import sqlite_url, start_api, start_scoring, start_without_scoring
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "crash_at",
    [
        "deal-state:credits-sent:2",
        "deal-state:table-written:2",
        "rep-kpis:state-written:2",
        "rep-kpis:history-written:2",
        "rep-kpis:days-written:2",
    ],
)
def test_a_worker_killed_at_any_step_of_a_batch_is_replaced_without_loss_or_double_count(
    stack_factory: Any, tmp_path: Any, crash_at: str
) -> None:
    feed = crm_feed()
    expected = expected_kpis(feed.events)
    stack = start_without_scoring(stack_factory(sqlite_url(tmp_path), **STACK_ENV))
    start_scoring(stack, "scoring", SALESPULSE_SCORING_CRASH_AT=crash_at)
    crashed = stack.services["scoring"]

    post_feed(stack, feed.batches(2500))
    wait_until(lambda: crashed.proc.poll() is not None, timeout=60, what=f"the worker to crash at {crash_at}")
    assert crashed.proc.returncode == -9, stack.tail("scoring")
    assert f"crash point {crash_at.rsplit(':', 1)[0]} reached" in stack.tail("scoring", 200)
    stack.kill("scoring")

    start_scoring(stack, "scoring-2")
    # The gateway starts after the worker: it rebuilds everything from the snapshots topic.
    api = start_api(stack)
    wait_for_kpis(stack, expected, api=api, timeout=120)

    # The replacement really met the risky case: it saw messages the crashed worker had already applied.
    samples = scrape(stack, "scoring-2")
    agent = "rep-kpis" if crash_at.startswith("rep-kpis") or "credits-sent" in crash_at else "deal-state"
    assert metric(samples, "salespulse_scoring_duplicates_total", agent=agent) > 0


def test_periods_a_killed_worker_left_bound_for_history_reach_it_though_no_new_event_touches_the_rep(
    stack_factory: Any, tmp_path: Any
) -> None:
    """Killed after storing a state whose outbox holds periods bound for SQL history, before writing them
    there. Every event of that batch is a duplicate for the replacement, so no batch of its touches the rep:
    restoring the state must write the outbox before a snapshot shows those periods as history. And it is the
    group's first batch: nothing was committed, so the replacement must start at the beginning of the
    partitions, also after Faust dropped what it fetched during recovery."""
    # One rep, one batch: a call every other day for 300 days, more weeks than the state keeps (27).
    first = NOW - timedelta(days=300)
    events = [
        {"event_id": f"outbox-{n}", "type": "activity", "occurred_at": stamp(first + timedelta(days=2 * n)),
         "rep_id": "ines-outbox", "kind": "call"}
        for n in range(150)
    ]
    expected = expected_kpis(events)
    stack = start_without_scoring(stack_factory(sqlite_url(tmp_path), **STACK_ENV))
    # The worker waits a second after an event for more, so the 150 posted together are folded in one batch.
    start_scoring(stack, "scoring", SALESPULSE_SCORING_CRASH_AT="rep-kpis:state-written:1",
                  SALESPULSE_SCORING_BATCH_WITHIN="1")
    crashed = stack.services["scoring"]
    post_feed(stack, [events])
    wait_until(lambda: crashed.proc.poll() is not None, timeout=60, what="the worker to crash after the state")
    assert crashed.proc.returncode == -9, stack.tail("scoring")
    stack.kill("scoring")

    start_scoring(stack, "scoring-2")
    api = start_api(stack)
    wait_for_kpis(stack, expected, api=api, timeout=60)
    # Every event the replacement met was a duplicate (the state it restored held them all); a rebalance
    # while the group has committed nothing may deliver the batch to it more than once.
    samples = scrape(stack, "scoring-2")
    duplicates = metric(samples, "salespulse_scoring_duplicates_total", agent="rep-kpis")
    assert duplicates == metric(samples, "salespulse_scoring_events_total", agent="rep-kpis")
    assert duplicates >= len(events)


@pytest.mark.parametrize("crash_at", ["rollup:pending-written:1", "rollup:credits-sent:1"])
def test_a_worker_killed_in_a_roll_up_reconcile_is_replaced_and_the_manager_counts_each_deal_once(
    stack_factory: Any, tmp_path: Any, crash_at: str
) -> None:
    """Deals of reps on no team are credited; then the roster puts the reps on a managed team (a rep's first
    team applies from the start), which moves those deals' roll-up to the manager: the worker is killed after
    storing the move as pending, or after sending its credits. The replacement finishes the same reconcile,
    and the manager's plan counts every deal exactly once (docs/plans-and-boards.md, Manager roll-up)."""
    amounts = {"kim-roll": ["1200.00", "800.50"], "lee-roll": ["300.25"]}
    events = [
        {"event_id": f"roll-{rep}-{n}", "type": "deal", "occurred_at": stamp(NOW - timedelta(days=n + 1)),
         "deal_id": f"roll-{rep}-{n}", "owner_id": rep, "stage": "won", "amount": amount,
         "closed_at": stamp(NOW - timedelta(days=n + 1))}
        for rep, values in amounts.items() for n, amount in enumerate(values)
    ]
    expected = expected_kpis(events)
    stack = start_without_scoring(stack_factory(sqlite_url(tmp_path), **STACK_ENV))
    start_scoring(stack, "scoring", SALESPULSE_SCORING_CRASH_AT=crash_at)
    crashed = stack.services["scoring"]
    api = start_api(stack)
    post_feed(stack, [events])
    wait_for_kpis(stack, expected, api=api, timeout=60)  # credited, rolled up to nobody

    plan = {"name": "Boss", "metric": "revenue", "period": "year", "effective_from": "2020-01-01",
            "participants": {"managers": ["boss-roll"]}, "quota": 10000,
            "tiers": [{"tier_id": "t", "name": "T", "threshold": 1.0, "rate": 0.01}]}
    with httpx.Client(base_url=api, headers=stack.headers, timeout=10) as client:
        client.put("/v1/reps/boss-roll", json={"name": "Boss"}).raise_for_status()
        client.put("/v1/teams/roll", json={"name": "Roll", "manager_rep_id": "boss-roll"}).raise_for_status()
        client.put("/v1/plans/boss", json=plan).raise_for_status()
        for rep in amounts:
            client.put(f"/v1/reps/{rep}", json={"name": rep, "team_id": "roll"}).raise_for_status()
    wait_until(lambda: crashed.proc.poll() is not None, timeout=60, what=f"the worker to crash at {crash_at}")
    assert crashed.proc.returncode == -9, stack.tail("scoring")
    stack.kill("scoring")

    start_scoring(stack, "scoring-2")
    total = float(sum(Decimal(amount) for values in amounts.values() for amount in values))

    def managed() -> float | None:
        r = httpx.get(f"{api}/v1/reps/boss-roll/progress", params={"date": NOW.date().isoformat()},
                      headers=stack.headers, timeout=10)
        plans = {p["plan_id"]: p["value"] for p in r.json().get("plans", [])} if r.status_code == 200 else {}
        return plans.get("boss")

    wait_until(lambda: managed() == total, timeout=90, what="the manager's roll-up after the replacement")
    samples = scrape(stack, "scoring-2")
    if crash_at.startswith("rollup:credits-sent"):
        # The replacement sent the same reconcile again; the manager's state had it and ignored it.
        assert metric(samples, "salespulse_scoring_duplicates_total", agent="rep-kpis") > 0
    # One more deal, folded after whatever the replacement did first: the roll-up moves by exactly its amount.
    marker = {**events[0], "event_id": "roll-marker", "deal_id": "roll-marker", "amount": "1.00"}
    post_feed(stack, [[marker]])
    wait_until(lambda: managed() == total + 1.0, timeout=60, what="the marker deal on top, nothing counted twice")


@pytest.mark.parametrize("crash_at", ["rollup:pending-written:1", "rollup:credits-sent:1"])
def test_a_worker_killed_while_a_rate_arrives_for_held_deals_is_replaced_and_counts_each_deal_once(
    stack_factory: Any, tmp_path: Any, crash_at: str
) -> None:
    """EUR deals with no rate are held; then a rate arrives, and the reconcile that counts them (the roll-up's,
    docs/plans-and-boards.md, Currencies) is killed after storing its moves as pending, or after sending their
    credits. The replacement finishes it, and each deal is counted exactly once at the rate."""
    amounts = {"fx-kim": ["1200.00", "800.50"], "fx-lee": ["300.25"]}
    events = [
        {"event_id": f"fx-{rep}-{n}", "type": "deal", "occurred_at": stamp(NOW - timedelta(days=n + 1)),
         "deal_id": f"fx-{rep}-{n}", "owner_id": rep, "stage": "won", "amount": amount, "currency": "EUR",
         "closed_at": stamp(NOW - timedelta(days=n + 1))}
        for rep, values in amounts.items() for n, amount in enumerate(values)
    ]
    rates = {"EUR": {(NOW - timedelta(days=30)).date(): Decimal("1.2345")}}
    stack = start_without_scoring(stack_factory(sqlite_url(tmp_path), **STACK_ENV))
    start_scoring(stack, "scoring", SALESPULSE_SCORING_CRASH_AT=crash_at)
    crashed = stack.services["scoring"]
    api = start_api(stack)
    post_feed(stack, [events])

    def held() -> list[str]:
        r = httpx.get(f"{api}/v1/fx-rates/held", headers=stack.headers, timeout=10)
        return sorted(h["deal_id"] for h in r.json()["held"]) if r.status_code == 200 else []

    wait_until(lambda: held() == sorted(e["deal_id"] for e in events), timeout=60, what="the EUR deals held")
    rows = [{"currency": "EUR", "date": day.isoformat(), "rate": str(rate)} for day, rate in rates["EUR"].items()]
    httpx.put(f"{api}/v1/fx-rates", json={"rates": rows}, headers=stack.headers, timeout=10).raise_for_status()
    wait_until(lambda: crashed.proc.poll() is not None, timeout=60, what=f"the worker to crash at {crash_at}")
    assert crashed.proc.returncode == -9, stack.tail("scoring")
    stack.kill("scoring")

    start_scoring(stack, "scoring-2")
    wait_for_kpis(stack, expected_kpis(events, rates=rates), api=api, timeout=90)
    wait_until(lambda: held() == [], timeout=30, what="the held list emptied")
    if crash_at.startswith("rollup:credits-sent"):
        # The replacement sent the same reconcile again; the reps' states had it and ignored it.
        assert metric(scrape(stack, "scoring-2"), "salespulse_scoring_duplicates_total", agent="rep-kpis") > 0
    marker = {**events[0], "event_id": "fx-marker", "deal_id": "fx-marker", "amount": "1.00"}
    post_feed(stack, [[marker]])
    wait_for_kpis(stack, expected_kpis([*events, marker], rates=rates), api=api, timeout=60)
