"""Achievements on a real stack (docs/achievements.md): configured over HTTP, judged by scoring on the rep's KPIs,
earned once per (rep, achievement, period) through duplicate events and corrections, shown as badges on the rep's
answers and socket, and celebrated on the boards the rep is on — except a board whose celebrations are muted.

Expectations come from the rules, never read back from the product."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets

from tests.support.clock import TEST_CLOCK
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

NOW = TEST_CLOCK.now().replace(microsecond=0)
MONTH = NOW.strftime("%Y-%m")
FIRST_DEAL = {"name": "First deal of the month", "badge": "\U0001F947", "description": "Won a deal this month",
              "rule": {"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1}}
BIG_DEAL = {"name": "Deal over $50,000", "badge": "\U0001F48E",
            "rule": {"kind": "deal", "period": "month", "at_least": 50000}}
DEMOS = {"name": "Five demos in a day", "badge": "\U0001F3AF",
         "rule": {"kind": "total", "metric": "activities.demo", "period": "day", "at_least": 5}}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "badges").start()
    try:
        stack.start_service("notifier")
        stack.wait_healthy("notifier", "/v1/health")
        http = httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10)
        http.put("/v1/teams/east", json={"name": "East"}).raise_for_status()
        for rep in ("ana", "bo", "cy"):
            http.put(f"/v1/reps/{rep}", json={"name": rep.title(), "team_id": "east"}).raise_for_status()
        for board_id, muted in (("floor", False), ("quiet", True)):
            board = {"title": board_id, "metric": "revenue", "period": "month", "scope": {"teams": ["east"]}}
            if muted:
                board["celebrations"] = False
            http.put(f"/v1/boards/{board_id}", json=board).raise_for_status()
        for achievement_id, body in (("first-deal", FIRST_DEAL), ("big-deal", BIG_DEAL), ("demos", DEMOS)):
            http.put(f"/v1/achievements/{achievement_id}", json=body).raise_for_status()
        yield stack
    finally:
        stack.stop()


def post(stack: Stack, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def won(event_id: str, deal_id: str, rep: str, amount: str, version: int, stage: str = "won") -> dict[str, Any]:
    at = iso(NOW - timedelta(minutes=10))
    return {"event_id": event_id, "type": "deal", "occurred_at": at, "deal_id": deal_id, "version": version,
            "owner_id": rep, "stage": stage, "amount": amount, "closed_at": at}


def badges(stack: Stack, rep: str) -> list[tuple[str, str]]:
    r = httpx.get(f"{stack.api}/v1/reps/{rep}/achievements", headers=stack.headers, timeout=10)
    assert r.status_code == 200, r.text
    return sorted((a["achievement_id"], a["period_key"]) for a in r.json()["achievements"])


def test_an_achievement_that_cannot_be_judged_is_refused_and_the_list_serves_what_is_stored(stack: Stack) -> None:
    http = httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10)
    r = http.put("/v1/achievements/bad", json={"name": "Bad", "rule": {"kind": "total", "metric": "calls",
                                                                       "period": "day", "at_least": 3}})
    assert r.status_code == 422 and "unknown metric 'calls'" in r.json()["detail"]
    assert r.json()["errors"][0]["field"].startswith("rule")
    r = http.put("/v1/achievements/other", json={**FIRST_DEAL, "achievement_id": "first-deal"})
    assert r.status_code == 422 and "make them equal" in r.json()["detail"]
    assert http.get("/v1/achievements/bad").status_code == 404
    listed = {a["achievement_id"]: a for a in http.get("/v1/achievements").json()}
    assert set(listed) >= {"first-deal", "big-deal", "demos"} and listed["big-deal"]["badge"] == "\U0001F48E"


def test_badges_are_earned_once_through_duplicates_and_corrections(stack: Stack) -> None:
    post(stack, [won("a1", "d-a", "ana", "40000.00", 1)])
    wait_until(lambda: badges(stack, "ana") == [("first-deal", MONTH)], timeout=20, what="ana's first deal badge")
    # Corrected to 60,000: the deal, not the correction's 20,000, is over the bar.
    post(stack, [won("a2", "d-a", "ana", "60000.00", 2)])
    wait_until(lambda: badges(stack, "ana") == [("big-deal", MONTH), ("first-deal", MONTH)], timeout=20,
               what="ana's big deal badge")
    # The same events again, then the deal lost and won again: nothing is earned twice, nothing taken back.
    assert post(stack, [won("a1", "d-a", "ana", "40000.00", 1), won("a2", "d-a", "ana", "60000.00", 2)])[
        "duplicates"] == 2
    post(stack, [won("a3", "d-a", "ana", "60000.00", 3, stage="lost")])
    post(stack, [won("a4", "d-a", "ana", "70000.00", 4)])
    day = NOW.date().isoformat()

    def demo(n: int) -> dict[str, Any]:
        return {"event_id": f"demo-{n}", "type": "activity", "occurred_at": iso(NOW - timedelta(minutes=n)),
                "rep_id": "bo", "kind": "demo"}

    post(stack, [demo(n) for n in range(4)])
    post(stack, [demo(4), demo(2)])  # the fifth, and a duplicate of the third
    wait_until(lambda: badges(stack, "bo") == [("demos", day)], timeout=20, what="bo's five demos")
    wait_until(lambda: _revenue(stack, "ana") == 70000.0, timeout=20, what="ana's deal won again")
    assert badges(stack, "ana") == [("big-deal", MONTH), ("first-deal", MONTH)]

    def recorded() -> list[str] | None:
        log = httpx.get(f"{stack.api}/v1/notifications", params={"rep_id": "ana"}, headers=stack.headers).json()
        found = sorted(e["achievement"]["achievement_id"] for e in log if e["kind"] == "achievement")
        return found if len(found) >= 2 else None

    assert wait_until(recorded, timeout=20, what="ana's badges in the notification log") == ["big-deal", "first-deal"]


def _revenue(stack: Stack, rep: str) -> float:
    r = httpx.get(f"{stack.api}/v1/reps/{rep}/kpis", params={"period": "month"}, headers=stack.headers)
    return float(r.json()["kpis"]["revenue"])


def test_a_badge_is_pushed_to_the_reps_screen_and_celebrated_on_boards_that_are_not_muted(stack: Stack) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        key = stack.admin_key
        floor_seen: list[dict[str, Any]] = []
        quiet_seen: list[dict[str, Any]] = []
        async with websockets.connect(f"{stack.ws}/v1/ws/boards/floor?token={key}") as floor, \
                websockets.connect(f"{stack.ws}/v1/ws/boards/quiet?token={key}") as quiet, \
                websockets.connect(f"{stack.ws}/v1/ws/reps/cy?token={key}") as rep:
            for ws in (floor, quiet):
                assert json.loads(await ws.recv())["type"] == "standings"
            post(stack, [won("c1", "d-c", "cy", "1200.00", 1)])

            async def until_celebration() -> None:
                while True:
                    message = json.loads(await floor.recv())
                    floor_seen.append(message)
                    if message["type"] == "celebration" and message["rep_id"] == "cy":
                        return

            await asyncio.wait_for(until_celebration(), 30)
            # Pushes to a screen leave in order: a standings change posted after the celebration reaches the muted
            # board after anything the celebration would have put before it.
            post(stack, [won("c2", "d-c2", "cy", "1.00", 1)])

            async def until_standings_with(value: float) -> None:
                while True:
                    message = json.loads(await quiet.recv())
                    quiet_seen.append(message)
                    if message["type"] == "standings" and any(e["value"] == value for e in message["entries"]):
                        return

            await asyncio.wait_for(until_standings_with(1201.0), 30)

            async def progress_with_badge() -> dict[str, Any]:
                while True:
                    message = json.loads(await rep.recv())
                    if message["type"] == "progress" and message.get("achievements"):
                        return message  # type: ignore[no-any-return]

            progress = await asyncio.wait_for(progress_with_badge(), 30)
        return floor_seen, quiet_seen, progress

    floor_seen, quiet_seen, progress = asyncio.run(scenario())
    party = next(m for m in floor_seen if m["type"] == "celebration" and m["rep_id"] == "cy")
    assert party["kind"] == "achievement" and party["rep_id"] == "cy" and party["name"] == "Cy"
    assert party["achievement"]["achievement_id"] == "first-deal" and party["achievement"]["badge"] == "\U0001F947"
    assert "plan_id" not in party and "tier" not in party
    assert [m for m in quiet_seen if m["type"] == "celebration"] == []
    assert [(a["achievement_id"], a["period_key"], a["name"]) for a in progress["achievements"]] == [
        ("first-deal", MONTH, "First deal of the month")]


def test_a_scoring_worker_killed_and_the_events_replayed_earn_nothing_twice(stack: Stack) -> None:
    before = httpx.get(f"{stack.api}/v1/notifications", params={"limit": 500}, headers=stack.headers).json()
    earned = {(e["rep_id"], e["achievement"]["achievement_id"]) for e in before if e["kind"] == "achievement"}
    assert ("ana", "big-deal") in earned
    stack.kill("scoring")  # SIGKILL: restored from its checkpoint and the changelog, then fed the same events again
    stack.start_service("scoring")
    stack.wait_healthy("scoring", "/metrics")
    assert post(stack, [won("a1", "d-a", "ana", "40000.00", 1), won("a2", "d-a", "ana", "60000.00", 2)])[
        "duplicates"] == 2
    post(stack, [won("e1", "d-e", "eve", "75000.00", 1)])  # a marker: a badge earned after the restart

    def eve_badge() -> bool:
        r = httpx.get(f"{stack.api}/v1/reps/eve/achievements", headers=stack.headers, timeout=10)
        return r.status_code == 200 and any(a["achievement_id"] == "big-deal" for a in r.json()["achievements"])

    wait_until(eve_badge, timeout=60, what="the marker's badge, earned by the restarted worker")

    def log() -> list[dict[str, Any]] | None:
        found = httpx.get(f"{stack.api}/v1/notifications", params={"limit": 500}, headers=stack.headers).json()
        return found if any(e["rep_id"] == "eve" and e["kind"] == "achievement" for e in found) else None

    after = wait_until(log, timeout=30, what="the marker's badge recorded")
    keys = [(e["rep_id"], e["achievement"]["achievement_id"], e["period_key"])
            for e in after if e["kind"] == "achievement"]
    assert len(keys) == len(set(keys))
    assert {(r, a) for r, a, _ in keys} == earned | {("eve", "big-deal"), ("eve", "first-deal")}
    assert badges(stack, "ana") == [("big-deal", MONTH), ("first-deal", MONTH)]
