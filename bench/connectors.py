"""Connector latency: a deal changed in a (local fake) CRM → the TV board's socket shows it.

    .venv/bin/python -m bench.connectors [--changes 200]

A stack with the HubSpot and Pipedrive connectors pointed at the local fakes of tests/support/fake_crm.py and a
revenue board; one screen holds the board's WebSocket. Each change sets a won deal's amount in the fake CRM,
which sends its webhook to ingest as the vendor would (HubSpot: ids only, so ingest reads the deal back from the
fake's API; Pipedrive: the whole deal); the clock runs from just before the CRM's change to the first
`standings` message showing the new value. The same-run reference is the same change posted straight to
`POST /v1/events` as a contract event."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable

import httpx
import websockets

from bench.common import Figure, bench_stack, print_figures
from tests.support.fake_crm import FakeHubSpot, FakePipedrive
from tests.support.stack import free_port

QUIET = 0.3
"""Seconds between one change shown and the next change: more than the board's 250 ms push window, so each
change meets a quiet board (back to back, every change would wait out the window the previous push opened)."""


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if len(values) > 1 else values[0]


async def measure(ws_url: str, rep: str, changes: int, change: Callable[[int], None]) -> list[float]:
    """Seconds from each change to the board message showing `rep` at the new value (amounts 1000 + i)."""
    latencies = []
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.recv()
        for i in range(1, changes + 1):
            want = 1000 + i
            began = time.monotonic()
            await asyncio.to_thread(change, want)
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                entry = next((e for e in message.get("entries", []) if e["rep_id"] == rep), None)
                if message.get("type") == "standings" and entry and entry["value"] == want:
                    latencies.append(time.monotonic() - began)
                    break
            await asyncio.sleep(QUIET)  # a floor between deals: the next change does not meet the push window
    return latencies


def run(changes: int = 200) -> list[Figure]:
    figures: list[Figure] = []
    with bench_stack("sqlite") as stack:
        hub = FakeHubSpot(clock=stack.clock, owners={"1": "hub@example.com"})
        pipe = FakePipedrive(clock=stack.clock, users={2: "pipe@example.com"})
        stack.ports["ingest"] = free_port()
        hub.webhook_url = f"http://127.0.0.1:{stack.ports['ingest']}/v1/connectors/hubspot/webhook"
        pipe.webhook_url = f"http://127.0.0.1:{stack.ports['ingest']}/v1/connectors/pipedrive/webhook"
        stack.extra_env.update({
            "SALESPULSE_HUBSPOT_CLIENT_SECRET": hub.secret, "SALESPULSE_HUBSPOT_TOKEN": "t",
            "SALESPULSE_HUBSPOT_API_URL": hub.url, "SALESPULSE_PIPEDRIVE_WEBHOOK_USER": pipe.user,
            "SALESPULSE_PIPEDRIVE_WEBHOOK_PASSWORD": pipe.password, "SALESPULSE_PIPEDRIVE_TOKEN": pipe.token,
            "SALESPULSE_PIPEDRIVE_API_URL": pipe.url,
        })
        try:
            stack.start()
            board = {"title": "Floor", "metric": "revenue", "period": "year", "size": 10}
            httpx.put(f"{stack.api}/v1/boards/floor", json=board, headers=stack.headers).raise_for_status()
            ws = f"{stack.ws}/v1/ws/boards/floor?token={stack.admin_key}"
            closed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            deal = hub.create(dealstage="closedwon", amount="1000", hubspot_owner_id="1", closedate=closed)
            pipe_deal = pipe.create(owner_id=2, value=1000, status="won", close_time=closed)
            direct = {"n": 0}

            def post(amount: int) -> None:
                direct["n"] += 1
                event = {"event_id": f"direct-{direct['n']}", "type": "deal", "occurred_at": closed,
                         "deal_id": "direct", "version": direct["n"], "owner_id": "direct", "stage": "won",
                         "amount": amount, "closed_at": closed}
                httpx.post(f"{stack.ingest}/v1/events", json=event, headers=stack.headers).raise_for_status()

            runs: dict[str, list[float]] = {}
            runs["direct"] = asyncio.run(measure(ws, "direct", changes, post))
            runs["hubspot"] = asyncio.run(measure(ws, "hub", changes, lambda a: hub.update(deal, amount=str(a))))
            runs["pipedrive"] = asyncio.run(measure(ws, "pipe", changes, lambda a: pipe.update(pipe_deal, value=a)))
        finally:
            hub.close()
            pipe.close()
    reference = runs["direct"]
    for crm in ("hubspot", "pipedrive"):
        for q in (0.5, 0.99):
            figures.append(Figure(
                "connectors", f"{crm} change → TV board socket p{int(q * 100)}, {changes} changes",
                quantile(runs[crm], q) * 1000, "ms", target=None, higher_is_better=False,
                reference=quantile(reference, q) * 1000,
                reference_label=f"the same change posted to /v1/events, p{int(q * 100)}",
            ))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200)
    print_figures(run(parser.parse_args().changes))


if __name__ == "__main__":
    main()
