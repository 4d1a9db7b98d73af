"""A team battle on a real stack (docs/plans-and-boards.md, Team battles): two teams' members' deals in the
battle's window summed head to head, over REST and on the board's socket, the gap moving as deals arrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets

from tests.support.clock import TEST_CLOCK
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

NOW = TEST_CLOCK.now().replace(microsecond=0)


def iso(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "battle").start()
    try:
        http = httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10)
        for team, reps in (("east", ("ana", "bo")), ("west", ("cy", "dee"))):
            http.put(f"/v1/teams/{team}", json={"name": team.title()}).raise_for_status()
            for rep in reps:
                http.put(f"/v1/reps/{rep}", json={"name": rep.title(), "team_id": team}).raise_for_status()
        http.put("/v1/reps/solo", json={"name": "Solo"}).raise_for_status()  # in no battling team
        window = {"starts_at": iso(NOW - timedelta(hours=1)), "ends_at": iso(NOW + timedelta(hours=3))}
        board = {"title": "East vs West", "metric": "revenue", "window": window, "battle": {"teams": ["east", "west"]}}
        http.put("/v1/boards/battle", json=board).raise_for_status()
        yield stack
    finally:
        stack.stop()


def won(event_id: str, rep: str, amount: str, minutes_ago: int = 5) -> dict[str, Any]:
    at = iso(NOW - timedelta(minutes=minutes_ago))
    return {"event_id": event_id, "type": "deal", "occurred_at": at, "deal_id": f"d-{event_id}", "owner_id": rep,
            "stage": "won", "amount": amount, "closed_at": at}


def post(stack: Stack, events: list[dict[str, Any]]) -> None:
    r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert r.status_code == 202, r.text


def battle(stack: Stack) -> dict[str, Any]:
    r = httpx.get(f"{stack.api}/v1/boards/battle/standings", headers=stack.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["battle"]  # type: ignore[no-any-return]


def test_teams_go_head_to_head_with_the_running_gap(stack: Stack) -> None:
    assert httpx.get(f"{stack.api}/v1/boards/battle", headers=stack.headers).json()["scope"] == {
        "teams": ["east", "west"]}
    post(stack, [won("b1", "ana", "1000.00"), won("b2", "bo", "250.50"), won("b3", "cy", "900.00"),
                 won("b4", "solo", "5000.00"),  # not in a battling team
                 won("b5", "dee", "400.00", minutes_ago=120)])  # before the window
    wait_until(lambda: battle(stack)["teams"][1]["value"] == 900.0, timeout=20, what="west's deal in the battle")
    found = battle(stack)
    assert [(t["team_id"], t["name"], t["value"], t["rank"]) for t in found["teams"]] == [
        ("east", "East", 1250.5, 1), ("west", "West", 900.0, 2)]
    assert (found["leader"], found["gap"]) == ("east", 350.5)

    async def pushed_after_west_takes_the_lead() -> dict[str, Any]:
        url = f"{stack.ws}/v1/ws/boards/battle?token={stack.admin_key}"
        async with websockets.connect(url) as ws:
            first = json.loads(await ws.recv())
            assert first["battle"]["leader"] == "east"
            post(stack, [won("b6", "dee", "600.00")])
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "standings" and message["battle"]["leader"] == "west":
                    return message  # type: ignore[no-any-return]

    message = asyncio.run(asyncio.wait_for(pushed_after_west_takes_the_lead(), 30))
    assert message["battle"]["gap"] == 249.5  # 1,500.00 against 1,250.50
    assert {e["rep_id"] for e in message["entries"]} == {"ana", "bo", "cy", "dee"}
