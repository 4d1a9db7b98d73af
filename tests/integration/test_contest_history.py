"""Contests are exact for any window, whenever asked (CONTRACT §5): a contest whose window ended 60 days before
the newest event — its minutes long gone from scoring's hot state to history — and one defined after its
window had passed both rank every rep by what happened in the window, late corrections included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

WINDOW_START = datetime(2026, 8, 3, 14, 0, tzinfo=UTC)
WINDOW = {"starts_at": "2026-08-03T14:00:00Z", "ends_at": "2026-08-03T16:00:00Z"}
NEWEST = WINDOW_START + timedelta(days=90)  # the window ended 60+ days before this (scoring keeps 35 days)
CALLS = {"ana": 7, "ben": 4, "cal": 4}


def call(event_id: str, rep: str, at: datetime, kind: str = "call") -> dict[str, Any]:
    return {"event_id": event_id, "type": "activity", "occurred_at": at.isoformat(), "rep_id": rep, "kind": kind}


def won(event_id: str, rep: str, amount: str, at: datetime, stage: str = "won", version: int = 1) -> dict[str, Any]:
    return {"event_id": event_id, "type": "deal", "occurred_at": at.isoformat(), "deal_id": "blitz-deal",
            "version": version, "owner_id": rep, "stage": stage, "amount": amount, "closed_at": at.isoformat()}


def post(stack: Stack, events: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert response.status_code == 202, response.text


def board(stack: Stack, board_id: str, metric: str) -> None:
    body = {"title": f"Blitz {metric}", "metric": metric, "window": WINDOW, "size": 10}
    httpx.put(f"{stack.api}/v1/boards/{board_id}", json=body, headers=stack.headers, timeout=30).raise_for_status()


def values(stack: Stack, board_id: str) -> dict[str, float]:
    response = httpx.get(f"{stack.api}/v1/boards/{board_id}/standings", headers=stack.headers, timeout=10)
    response.raise_for_status()
    return {e["rep_id"]: e["value"] for e in response.json()["entries"] if e["value"]}


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "contests").start()
    try:
        board(stack, "blitz-calls", "activities.call")  # defined before the window's events arrive
        events = [call(f"in-{rep}-{i}", rep, WINDOW_START + timedelta(minutes=7 * i))
                  for rep, count in CALLS.items() for i in range(count)]
        events += [call("before", "ben", WINDOW_START - timedelta(seconds=1)),  # just outside
                   call("after", "ben", WINDOW_START + timedelta(hours=2)),
                   won("blitz-won", "cal", "900.00", WINDOW_START + timedelta(minutes=30))]
        post(stack, events)
        # Activity long after the window: every rep's hot minutes move on and the window's go to history.
        post(stack, [call(f"newest-{rep}", rep, NEWEST) for rep in CALLS])

        def moved_on() -> bool:
            r = httpx.get(f"{stack.api}/v1/reps/cal/kpis", params={"period": "day", "date": NEWEST.date().isoformat()},
                          headers=stack.headers, timeout=10)
            return r.status_code == 200 and r.json()["kpis"]["activities"] == 1

        wait_until(moved_on, timeout=60, what="the newest events scored")
        yield stack
    finally:
        stack.stop()


def test_a_contest_that_ended_60_days_before_the_newest_event_still_ranks_the_window(stack: Stack) -> None:
    assert wait_until(lambda: values(stack, "blitz-calls") == CALLS or None, timeout=30,
                      what="the contest's calls") is True
    standings = httpx.get(f"{stack.api}/v1/boards/blitz-calls/standings", headers=stack.headers, timeout=10).json()
    assert [(e["rank"], e["rep_id"]) for e in standings["entries"][:3]] == [(1, "ana"), (2, "ben"), (2, "cal")]


def test_a_contest_defined_after_its_window_passed_counts_what_happened_in_it(stack: Stack) -> None:
    board(stack, "blitz-revenue", "revenue")
    assert wait_until(lambda: values(stack, "blitz-revenue") == {"cal": 900.0} or None, timeout=30,
                      what="the late-defined contest's revenue") is True
    # A late correction of a deal in the window reaches the finished contest too.
    post(stack, [won("blitz-reversed", "cal", "900.00", WINDOW_START + timedelta(minutes=30), stage="lost",
                     version=2)])
    assert wait_until(lambda: values(stack, "blitz-revenue") == {} or None, timeout=30,
                      what="the reversal in the finished contest") is True
