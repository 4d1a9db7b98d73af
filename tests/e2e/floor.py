"""A small sales floor for the screen tests: teams, reps, two plans, three boards and this month's wins.

East is the steady team whose figures the tests read; North is where live tests post events, so a test that
moves ranks never changes what another test expects to see. The floor's stack runs on FLOOR_CLOCK, late in a
month, and every event here is stamped by it.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from services.common.clock import Clock
from tests.support.stack import Stack, wait_until

__all__ = ["FLOOR_CLOCK", "PLANS", "REPS", "TEAMS", "activity", "post", "seed_config", "seed_floor", "won"]

FLOOR_CLOCK = Clock(datetime(2026, 11, 27, 15, 0, tzinfo=UTC), ticking=True)
"""The floor's "now": a Friday afternoon late in November (89 % of the month gone, so Ada and Bob are behind
pace), ticking from the start of the test process; the screens, the gateway and the tests all read it."""

TEAMS = [
    {"team_id": "east", "name": "East Coast", "manager_rep_id": None},
    {"team_id": "west", "name": "West Coast", "manager_rep_id": None},
    {"team_id": "north", "name": "North", "manager_rep_id": None},
]
REPS = [
    {"rep_id": "ada", "name": "Ada Lovelace", "team_id": "east"},
    {"rep_id": "bob", "name": "Bob Okafor", "team_id": "east"},
    {"rep_id": "cy", "name": "Cyrus Young", "team_id": "east"},
    {"rep_id": "eve", "name": "Eve Tanaka", "team_id": "east"},
    {"rep_id": "dee", "name": "Dee Patel", "team_id": "west"},
    {"rep_id": "nia", "name": "Nia Brooks", "team_id": "north"},
    {"rep_id": "oli", "name": "Oli Svensson", "team_id": "north"},
    {"rep_id": "pam", "name": "Pam Ruiz", "team_id": "north"},
]
PLANS = [
    {
        "plan_id": "ae-revenue",
        "name": "AE revenue accelerator",
        "metric": "revenue",
        "period": "month",
        "effective_from": "2020-01-01",
        "quota": 10000,
        "currency": "USD",
        "tiers": [
            {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05, "reward": None},
            {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.08,
             "reward": "Shout-out at the all-hands"},
            {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25, "rate": 0.12,
             "reward": "1 extra day of PTO"},
        ],
    },
    {
        "plan_id": "call-spiff",
        "name": "Call SPIFF",
        "metric": "activities",
        "period": "month",
        "effective_from": "2020-01-01",
        "quota": 20,
        "tiers": [
            {"tier_id": "on-track", "name": "On track", "threshold": 0.5, "rate": 0, "reward": None},
            {"tier_id": "gold", "name": "Gold", "threshold": 1.0, "rate": 0, "reward": "Golden headset"},
        ],
    },
]
BOARDS = [
    {"board_id": "floor", "title": "Revenue this month", "metric": "revenue", "period": "month",
     "scope": {"teams": ["east", "west"]}, "size": 10, "plan_id": "ae-revenue"},
    {"board_id": "calls", "title": "Most activities this month", "metric": "activities", "period": "month",
     "scope": {"teams": ["east", "west"]}, "size": 10, "plan_id": "call-spiff"},
    {"board_id": "north", "title": "North: revenue this month", "metric": "revenue", "period": "month",
     "scope": {"teams": ["north"]}, "size": 10, "plan_id": "ae-revenue"},
]
# This month's wins (USD) and calls, chosen so each tier state shows up: Dee at the top tier, Cyrus past
# Target, Ada and Bob in Base (behind pace late in a month), Eve with nothing yet.
WINS = {"ada": ["8000.00"], "bob": ["3000.00", "1500.00"], "cy": ["11000.00"], "dee": ["13000.00"]}
CALLS = {"ada": 12, "cy": 4}

_ids = itertools.count(1)


def _now() -> str:
    return FLOOR_CLOCK.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def won(rep: str, amount: str, *, event_id: str | None = None) -> dict[str, Any]:
    """A deal won now by `rep` (its own deal)."""
    event_id = event_id or f"e2e-won-{rep}-{next(_ids)}-{time.time_ns()}"
    now = _now()
    return {"event_id": event_id, "type": "deal", "occurred_at": now, "deal_id": f"d-{event_id}", "owner_id": rep,
            "stage": "won", "amount": amount, "closed_at": now}


def activity(rep: str, kind: str = "call") -> dict[str, Any]:
    event_id = f"e2e-act-{rep}-{next(_ids)}-{time.time_ns()}"
    return {"event_id": event_id, "type": "activity", "occurred_at": _now(), "rep_id": rep, "kind": kind}


def post(stack: Stack, events: list[dict[str, Any]]) -> None:
    """Post events to ingest; returns once they are durable (202)."""
    response = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert response.status_code == 202, response.text


def seed_config(stack: Stack) -> None:
    """PUT teams, reps, plans and boards through the gateway, then set each team's manager."""
    with httpx.Client(base_url=stack.api, headers=stack.headers, timeout=30) as client:
        for team in TEAMS:
            client.put(f"/v1/teams/{team['team_id']}", json=team).raise_for_status()
        for rep in REPS:
            client.put(f"/v1/reps/{rep['rep_id']}", json=rep).raise_for_status()
        client.put("/v1/teams/east", json={**TEAMS[0], "manager_rep_id": "ada"}).raise_for_status()
        for plan in PLANS:
            client.put(f"/v1/plans/{plan['plan_id']}", json=plan).raise_for_status()
        for board in BOARDS:
            client.put(f"/v1/boards/{board['board_id']}", json=board).raise_for_status()


def seed_floor(stack: Stack) -> None:
    """Configuration plus this month's wins and calls; waits until the gateway shows them."""
    assert stack.clock is FLOOR_CLOCK, "the floor's events are dated by FLOOR_CLOCK: start its stack with that clock"
    seed_config(stack)
    events = [won(rep, amount) for rep, amounts in WINS.items() for amount in amounts]
    events += [activity(rep) for rep, count in CALLS.items() for _ in range(count)]
    post(stack, events)

    def standings_complete() -> bool:
        response = httpx.get(f"{stack.api}/v1/boards/floor/standings", headers=stack.headers, timeout=5)
        values = {e["rep_id"]: e["value"] for e in response.json()["entries"]}
        calls = httpx.get(f"{stack.api}/v1/reps/ada/kpis?period=month", headers=stack.headers, timeout=5)
        return values.get("dee") == 13000.0 and values.get("bob") == 4500.0 and calls.json()["kpis"]["activities"] == 12

    wait_until(standings_complete, timeout=60, what="the seeded wins in the floor standings")
