"""A board's standings are pushed at most once every 250 ms (CONTRACT.md §6), and a burst of changes ends in a
push that shows all of them; a change after a quiet spell is not held back to a window's end (its latency is
measured in bench/connectors.py, not asserted here)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.support.clock import now_stamp
from tests.support.stack import Stack, sqlite_stack

pytestmark = pytest.mark.integration

WINDOW = 0.25
JITTER = 0.05
"""Messages leave the gateway at least WINDOW apart; the network may bring two of them this much closer."""


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "pushes").start()
    try:
        board = {"title": "Floor", "metric": "activities", "period": "year", "size": 10}
        httpx.put(f"{stack.api}/v1/boards/floor", json=board, headers=stack.headers, timeout=10).raise_for_status()
        yield stack
    finally:
        stack.stop()


def test_a_burst_is_coalesced_and_its_last_change_shown(stack: Stack) -> None:
    async def scenario() -> list[tuple[float, dict[str, int]]]:
        received: list[tuple[float, dict[str, int]]] = []
        url = f"{stack.ws}/v1/ws/boards/floor?token={stack.admin_key}"
        async with websockets.connect(url) as ws, httpx.AsyncClient(headers=stack.headers, timeout=10) as http:
            await ws.recv()  # the first standings

            async def read() -> None:  # records each message as it arrives
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] != "standings":
                        continue
                    values = {e["rep_id"]: int(e["value"]) for e in message["entries"]}
                    received.append((time.monotonic(), values))
                    if sum(values.values()) == 40:
                        return

            reader = asyncio.create_task(read())
            for number in range(40):  # 40 changes over about 1.2 s
                event = {"event_id": f"burst-{number}", "type": "activity", "occurred_at": now_stamp(stack.clock),
                         "rep_id": f"r{number % 4}", "kind": "call"}
                assert (await http.post(f"{stack.ingest}/v1/events", json=event)).status_code == 202
                await asyncio.sleep(0.03)  # the load's pace, not a synchronisation
            await asyncio.wait_for(reader, 15)
        return received

    received = asyncio.run(scenario())
    gaps = [later - earlier for (earlier, _), (later, _) in zip(received, received[1:], strict=False)]
    assert all(gap >= WINDOW - JITTER for gap in gaps), gaps
    assert len(received) < 40  # coalesced: fewer pushes than changes
    assert received[-1][1] == {"r0": 10, "r1": 10, "r2": 10, "r3": 10}
