"""Streaks on a real stack in New York time (docs/achievements.md, Streaks): working days Monday to Friday less a
holiday, days of the business timezone, current and longest streaks per rep, the streak board, and milestones
recorded once each through duplicate events. The stack's clock is pinned to Wednesday 9 December 2026, 07:00 in
New York (tests/support/clock.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.clock import TEST_NOW
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

STREAK = {"name": "2 calls a day", "rule": {"metric": "activities.call", "at_least": 2},
          "holidays": ["2026-12-07"], "milestones": [2, 3]}
"""Monday 7 December is a holiday: it neither breaks a streak nor counts in one."""


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "streaks", SALESPULSE_TIMEZONE="America/New_York").start()
    try:
        stack.start_service("notifier")
        stack.wait_healthy("notifier", "/v1/health")
        http = httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10)
        for rep in ("ana", "bo", "cy", "dee"):
            http.put(f"/v1/reps/{rep}", json={"name": rep.title()}).raise_for_status()
        http.put("/v1/streaks/calls", json=STREAK).raise_for_status()
        yield stack
    finally:
        stack.stop()


def calls(rep: str, *instants: str) -> list[dict[str, Any]]:
    """Two calls at each UTC instant."""
    return [{"event_id": f"{rep}-{at}-{n}", "type": "activity", "occurred_at": at, "rep_id": rep, "kind": "call"}
            for at in instants for n in range(2)]


def post(stack: Stack, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def streak_of(stack: Stack, rep: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.api}/v1/reps/{rep}/streaks", headers=stack.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["streaks"][0]  # type: ignore[no-any-return]


def test_streaks_skip_weekends_and_holidays_in_the_business_timezone(stack: Stack) -> None:
    assert TEST_NOW.isoformat() == "2026-12-09T12:00:00+00:00"  # Wednesday, 07:00 in New York
    events = (
        calls("ana", "2026-12-03T15:00:00Z", "2026-12-04T15:00:00Z", "2026-12-08T15:00:00Z")  # Thu, Fri, (hol.) Tue
        + calls("bo", "2026-12-04T15:00:00Z", "2026-12-07T15:00:00Z", "2026-12-08T15:00:00Z")  # Fri, holiday, Tue
        + calls("cy", "2026-12-07T15:00:00Z")  # the holiday only
        # 02:00 UTC on Tuesday is 21:00 on Monday, the holiday, in New York: Friday's streak is broken by Tuesday.
        + calls("dee", "2026-12-04T15:00:00Z", "2026-12-08T02:00:00Z")
    )
    post(stack, events)
    wait_until(lambda: streak_of(stack, "ana")["current"] == 3, timeout=20, what="ana's three-day streak")
    ana, bo, cy, dee = (streak_of(stack, rep) for rep in ("ana", "bo", "cy", "dee"))
    # Wednesday is a working day nobody has met yet: a live streak is at risk.
    assert (ana["current"], ana["longest"], ana["since"], ana["at_risk"]) == (3, 3, "2026-12-03", True)
    assert (bo["current"], bo["since"], bo["at_risk"]) == (2, "2026-12-04", True)
    assert (cy["current"], cy["longest"], cy["at_risk"]) == (0, 0, False)
    assert (dee["current"], dee["longest"], dee["at_risk"]) == (0, 1, False)

    # Wednesday's calls (06:00 in New York) keep ana's streak going; sent twice, counted once.
    assert post(stack, calls("ana", "2026-12-09T11:00:00Z"))["accepted"] == 2
    assert post(stack, calls("ana", "2026-12-09T11:00:00Z"))["duplicates"] == 2
    wait_until(lambda: streak_of(stack, "ana")["met_today"], timeout=20, what="ana's Wednesday")
    assert (streak_of(stack, "ana")["current"], streak_of(stack, "ana")["at_risk"]) == (4, False)

    board = httpx.get(f"{stack.api}/v1/streaks/calls/standings", headers=stack.headers, timeout=10).json()
    assert board["as_of"] == "2026-12-09" and board["badge"] == "\U0001F525"
    assert [(e["rank"], e["rep_id"], e["current"]) for e in board["current"]] == [(1, "ana", 4), (2, "bo", 2)]
    assert [(e["rank"], e["rep_id"], e["longest"]) for e in board["longest"]] == [
        (1, "ana", 4), (2, "bo", 2), (3, "dee", 1)]


def test_a_tvs_screen_key_opens_the_streak_board_it_names_and_no_other(stack: Stack) -> None:
    _, tv = stack.create_key("screen", "tv", "--boards", "calls,floor")
    _, other = stack.create_key("screen", "other-tv", "--boards", "floor")
    for key, status in ((tv, 200), (other, 403)):
        r = httpx.get(f"{stack.api}/v1/streaks/calls/standings", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == status, r.text
    assert "reads only boards floor" in r.json()["detail"]


def test_each_milestone_is_recorded_once(stack: Stack) -> None:
    def milestones() -> Counter[tuple[str, int]] | None:
        log = httpx.get(f"{stack.api}/v1/notifications", headers=stack.headers, timeout=10).json()
        found = Counter((e["rep_id"], e["streak"]["days"]) for e in log if e["kind"] == "streak")
        return found if len(found) >= 3 else None

    found = wait_until(milestones, timeout=30, what="the milestones in the notification log")
    assert found == {("ana", 2): 1, ("ana", 3): 1, ("bo", 2): 1}
    log = httpx.get(f"{stack.api}/v1/notifications", params={"rep_id": "ana"}, headers=stack.headers).json()
    assert {e["streak"]["since"] for e in log if e["kind"] == "streak"} == {"2026-12-03"}
