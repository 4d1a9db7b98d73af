"""A won deal travels ingest → ledger → Kafka → scoring → rep-snapshots → gateway (WebSocket and REST)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


def won_deal(event_id: str, rep_id: str, amount: str, closed_at: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "type": "deal",
        "occurred_at": closed_at,
        "deal_id": f"deal-{event_id}",
        "owner_id": rep_id,
        "stage": "won",
        "amount": amount,
        "closed_at": closed_at,
    }


async def _receive_until(ws: websockets.ClientConnection, predicate, timeout: float) -> dict:  # type: ignore[no-untyped-def]
    async def loop() -> dict:  # type: ignore[type-arg]
        while True:
            message = json.loads(await ws.recv())
            if predicate(message):
                return message

    return await asyncio.wait_for(loop(), timeout)


def test_won_deal_reaches_websocket_and_rest(stack_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(database_url, SALESPULSE_TIMEZONE="America/New_York").start()
    rep = "rep-ada"
    # 02:30 UTC on 1 Dec is still 30 Nov in New York: the deal belongs to November there.
    closed_at = "2026-12-01T02:30:00+00:00"

    async def scenario() -> dict:  # type: ignore[type-arg]
        url = f"{stack.ws}/v1/ws/reps/{rep}?token={stack.admin_key}"
        async with websockets.connect(url) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["type"] == "progress" and first["rep_id"] == rep
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{stack.ingest}/v1/events",
                    json=won_deal("e1", rep, "1234.56", closed_at),
                    headers=stack.headers,
                )
                assert response.status_code == 202, response.text
                assert response.json() == {"accepted": 1, "duplicates": 0}
            return await _receive_until(
                ws, lambda m: m["type"] == "progress" and m["kpis"]["year"]["kpis"]["revenue"] > 0, timeout=20
            )

    pushed = asyncio.run(scenario())
    assert pushed["rep_id"] == rep

    def november() -> dict | None:  # type: ignore[type-arg]
        r = httpx.get(
            f"{stack.api}/v1/reps/{rep}/kpis", params={"period": "month", "date": "2026-11-15"}, headers=stack.headers
        )
        return r.json() if r.status_code == 200 and r.json()["kpis"]["revenue"] > 0 else None

    body = wait_until(november, timeout=10, what="November revenue over REST")
    assert body["period_key"] == "2026-11"
    assert body["kpis"]["revenue"] == 1234.56
    assert body["kpis"]["deals_won"] == 1
    assert body["kpis"]["win_rate"] == 1.0

    december = httpx.get(
        f"{stack.api}/v1/reps/{rep}/kpis", params={"period": "month", "date": "2026-12-01"}, headers=stack.headers
    ).json()
    assert december["kpis"]["revenue"] == 0
    assert december["kpis"]["win_rate"] is None

    # The same event again is a duplicate: counted once, never an error.
    again = httpx.post(
        f"{stack.ingest}/v1/events", json=won_deal("e1", rep, "1234.56", closed_at), headers=stack.headers
    )
    assert again.status_code == 202 and again.json() == {"accepted": 0, "duplicates": 1}

    unknown = httpx.get(f"{stack.api}/v1/reps/nobody/kpis", headers=stack.headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
