"""A restart costs what changed since the last checkpoint, not the whole history (issue 22), and stays exact.

The CRM feed's first part is folded and checkpointed; the rest arrives while scoring is down. Then the broker
dies and comes back empty (everything it held is gone: events, credits, snapshots, changelogs, offsets), and the
operator's procedure runs (`salespulse replay`, docs/operations.md): only the events after the checkpoint are
republished, and every rep's KPIs in every period equal the contract's answer for the whole feed. A kill -9 of
the scoring worker afterwards restores the checkpoint plus the changelog after it, and a new activity lands on
the complete state.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.crm_feed import STACK_ENV, crm_feed, expected_kpis, post_feed, wait_for_kpis
from tests.support.metrics import metric, scrape
from tests.support.stack import ROOT, Stack, free_port, ledger_count, random_admin_key, start_broker_process, wait_until

pytestmark = pytest.mark.integration


def _checkpoint_seq(stack: Stack) -> float:
    return metric(scrape(stack), "salespulse_scoring_checkpoint_seq")


def test_a_broker_that_comes_back_empty_is_refilled_only_after_the_checkpoint(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    broker = start_broker_process(port)
    stack = Stack(
        bootstrap=f"127.0.0.1:{port}",
        database_url=database_url,
        data_dir=tmp_path / "data",
        topic_prefix="cp.",
        admin_key=random_admin_key(),
        extra_env={**STACK_ENV, "SALESPULSE_SCORING_CHECKPOINT_INTERVAL": "0.5"},
    )
    try:
        feed = crm_feed()
        batches = feed.batches(2500)
        first, rest = batches[:5], batches[5:]
        stack.start()
        post_feed(stack, first)
        wait_for_kpis(stack, expected_kpis([event for batch in first for event in batch]))
        checkpointed = ledger_count(database_url)
        wait_until(lambda: _checkpoint_seq(stack) >= checkpointed, timeout=60, interval=0.2,
                   what=f"a checkpoint at ledger seq {checkpointed}")

        stack.kill("scoring")  # the rest of the feed reaches the ledger only: the checkpoint cannot move past it
        post_feed(stack, rest)
        total = ledger_count(database_url)
        assert total > checkpointed

        broker.kill()
        broker.wait(timeout=10)
        stack.stop()
        broker = start_broker_process(port)
        replay = subprocess.run([sys.executable, "-m", "services.cli.main", "replay"], env=stack.env(), cwd=ROOT,
                                capture_output=True, text=True, timeout=120, check=True).stdout
        assert f"replaying from {checkpointed + 1}" in replay, replay
        republished = int(re.search(r"replay done: ([\d,]+) events", replay).group(1).replace(",", ""))  # type: ignore[union-attr]
        assert republished == total - checkpointed

        for name in ("ingest", "scoring", "api"):
            stack.start_service(name)
        stack.wait_healthy("api", "/v1/ready", timeout=120)
        expected = expected_kpis(feed.events)
        wait_for_kpis(stack, expected)
        # Scoring folded the tail only: the events of the checkpoint were never redelivered to it.
        folded = metric(scrape(stack), "salespulse_scoring_events_total", agent="deal-state")
        assert folded <= sum(1 for batch in rest for event in batch if event["type"] == "deal")

        # kill -9 of the worker on the same broker: checkpoint + the changelog after it, then a new activity.
        wait_until(lambda: _checkpoint_seq(stack) >= total, timeout=60, interval=0.2,
                   what=f"a checkpoint at ledger seq {total}")
        stack.kill("scoring")
        stack.start_service("scoring")
        stack.wait_healthy("scoring", "/metrics")
        rep = next(event["rep_id"] for event in feed.events if event["type"] == "activity")
        call = {"event_id": "after-restart-call", "type": "activity", "rep_id": rep, "kind": "call",
                "occurred_at": next(e["occurred_at"] for e in feed.events if e.get("rep_id") == rep)}
        post_feed(stack, [[call]])
        wait_for_kpis(stack, expected_kpis([*feed.events, call]))
    finally:
        stack.stop()
        broker.kill()
        broker.wait(timeout=10)
