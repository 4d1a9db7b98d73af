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


def test_a_board_kept_per_rep_ends_where_a_fresh_computation_does(stack: Stack) -> None:
    """The gateway updates a watched board's standings for the reps that changed only (services/api/tally.py):
    after interleaved changes that move reps in and out of a top 3, a rename and a rep leaving the board's team,
    the last push equals the standings computed afresh and the ranking the events imply."""
    http = httpx.Client(headers=stack.headers, timeout=10)
    http.put(f"{stack.api}/v1/teams/tally", json={"name": "Tally"}).raise_for_status()
    reps = [f"t{i}" for i in range(8)]
    for rep in reps:
        http.put(f"{stack.api}/v1/reps/{rep}", json={"name": f"Rep {rep}", "team_id": "tally"}).raise_for_status()
    board = {"title": "Top 3", "metric": "activities", "period": "year", "size": 3, "scope": {"teams": ["tally"]}}
    http.put(f"{stack.api}/v1/boards/top3", json=board).raise_for_status()
    # Each rep's calls, posted round-robin so the lead changes hands: t7 ends first, t6 second, ...
    calls = {rep: 2 + i for i, rep in enumerate(reps)}

    def expected(counts: dict[str, int], names: dict[str, str]) -> list[tuple[int, str, str, int]]:
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]
        return [(position, rep, names[rep], count) for position, (rep, count) in enumerate(ordered, start=1)]

    async def scenario() -> dict:  # type: ignore[type-arg]
        url = f"{stack.ws}/v1/ws/boards/top3?token={stack.admin_key}"
        async with websockets.connect(url) as ws, httpx.AsyncClient(headers=stack.headers, timeout=10) as client:
            latest: dict = json.loads(await ws.recv())  # type: ignore[type-arg]
            number = 0
            for round_ in range(max(calls.values())):
                for rep in reps:
                    if round_ < calls[rep]:
                        event = {"event_id": f"tally-{number}", "type": "activity", "rep_id": rep, "kind": "call",
                                 "occurred_at": now_stamp(stack.clock)}
                        assert (await client.post(f"{stack.ingest}/v1/events", json=event)).status_code == 202
                        number += 1
                if round_ == 3:  # a rename mid-run, and the leader so far leaves the team
                    await client.put(f"{stack.api}/v1/reps/t1", json={"name": "Renamed", "team_id": "tally"})
                    await client.put(f"{stack.api}/v1/reps/t7", json={"name": "Rep t7", "team_id": "gone"})
            names = {rep: ("Renamed" if rep == "t1" else f"Rep {rep}") for rep in reps}
            counts = {rep: n for rep, n in calls.items() if rep != "t7"}
            want = expected(counts, names)
            deadline = time.monotonic() + 20
            while _shown(latest) != want:
                assert time.monotonic() < deadline, (_shown(latest), want)
                message = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
                if message["type"] == "standings":
                    latest = message
            return latest

    pushed = asyncio.run(scenario())
    fresh = http.get(f"{stack.api}/v1/boards/top3/standings").json()
    fields = ("rank", "rep_id", "name", "team_id", "value")
    assert [[e[f] for f in fields] for e in pushed["entries"]] == [[e[f] for f in fields] for e in fresh["entries"]]
    assert [entry["rep_id"] for entry in pushed["entries"]] == ["t6", "t5", "t4"]


def _shown(message: dict) -> list[tuple[int, str, str, int]]:  # type: ignore[type-arg]
    return [(e["rank"], e["rep_id"], e["name"], int(e["value"])) for e in message.get("entries", [])]
