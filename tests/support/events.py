"""Event builders and the plain "post to ingest" the integration tests share."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.support.clock import now_stamp
from tests.support.stack import Stack

__all__ = ["AE_PLAN", "activity", "deal", "post", "recv_json", "won"]

FIXED_DAY = "2026-11-20T10:00:00Z"
"""A fixed instant in the past of every test clock, for events whose period does not matter."""


def deal(event_id: str, **over: object) -> dict[str, object]:
    """A won deal of 100.00 for rep-1 on FIXED_DAY; `over` replaces any field."""
    body: dict[str, object] = {
        "event_id": event_id,
        "type": "deal",
        "occurred_at": FIXED_DAY,
        "deal_id": f"d-{event_id}",
        "owner_id": "rep-1",
        "stage": "won",
        "amount": "100.00",
        "closed_at": FIXED_DAY,
    }
    body.update(over)
    return body


def activity(event_id: str, rep: str = "rep-1", when: str = FIXED_DAY) -> dict[str, object]:
    return {"event_id": event_id, "type": "activity", "occurred_at": when, "rep_id": rep, "kind": "call"}


def won(event_id: str, rep: str, amount: str) -> dict[str, object]:
    """A deal won now (the test clock's now)."""
    now = now_stamp()
    return {
        "event_id": event_id,
        "type": "deal",
        "occurred_at": now,
        "deal_id": f"d-{event_id}",
        "owner_id": rep,
        "stage": "won",
        "amount": amount,
        "closed_at": now,
    }


def post(stack: Stack, events: list[dict[str, object]]) -> None:
    r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert r.status_code == 202, r.text


async def recv_json(ws: websockets.ClientConnection, timeout: float = 10) -> dict:  # type: ignore[type-arg]
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


AE_PLAN: dict[str, Any] = {
    "plan_id": "ae-revenue",
    "name": "AE revenue accelerator",
    "metric": "revenue",
    "period": "month",
    "effective_from": "2026-01-01",
    "quota": 1000,
    "tiers": [
        {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05},
        {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.08, "reward": "Shout-out at all-hands"},
        {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25, "rate": 0.12, "reward": "1 extra day of PTO"},
    ],
}
"""A monthly revenue plan with three tiers, as the notifier tests use it."""
