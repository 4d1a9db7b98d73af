"""Badges, streaks and team battles in headless Chromium (docs/achievements.md, docs/plans-and-boards.md): a badge
earned end to end shows on the rep's page and is celebrated on the TV; the streak board ranks current and longest
streaks, marking the ones about to break; a team battle shows head to head, alone and as a rotation slide."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.floor import FLOOR_CLOCK, post
from tests.e2e.screens import format_on_page, screen_url, wait_ready
from tests.support.stack import Stack, sqlite_stack

pytestmark = pytest.mark.integration

NOW = FLOOR_CLOCK.now().replace(microsecond=0)  # Friday 27 November 2026, 15:00 UTC


def iso(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def calls(rep: str, *days_ago: int) -> list[dict[str, Any]]:
    """Two calls at 14:00 UTC on each of those days before today."""
    return [{"event_id": f"{rep}-call-{d}-{n}", "type": "activity", "rep_id": rep, "kind": "call",
             "occurred_at": iso((NOW - timedelta(days=d)).replace(hour=14, minute=n))}
            for d in days_ago for n in (0, 1)]


def won(event_id: str, rep: str, amount: str) -> dict[str, Any]:
    at = iso(NOW - timedelta(minutes=30))
    return {"event_id": event_id, "type": "deal", "occurred_at": at, "deal_id": f"d-{event_id}", "owner_id": rep,
            "stage": "won", "amount": amount, "closed_at": at}


@pytest.fixture(scope="module")
def floor(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "badges-e2e", clock=FLOOR_CLOCK,
                         SALESPULSE_NOTIFY_DIGEST_SCHEDULE="off")
    try:
        stack.start()
        stack.start_service("notifier")
        stack.wait_healthy("notifier", "/v1/ready")
        http = httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10)
        for team, name in (("east", "East Coast"), ("west", "West Coast")):
            http.put(f"/v1/teams/{team}", json={"name": name}).raise_for_status()
        for rep, name, team in (("ada", "Ada Lovelace", "east"), ("bob", "Bob Okafor", "east"),
                                ("dee", "Dee Patel", "west")):
            http.put(f"/v1/reps/{rep}", json={"name": name, "team_id": team}).raise_for_status()
        http.put("/v1/boards/floor", json={"title": "Revenue this month", "metric": "revenue",
                                           "period": "month"}).raise_for_status()
        battle = {"title": "East vs West this month", "metric": "revenue", "period": "month",
                  "battle": {"teams": ["east", "west"]}}
        http.put("/v1/boards/battle", json=battle).raise_for_status()
        http.put("/v1/achievements/first-deal", json={
            "name": "First deal of the month", "badge": "\U0001F947", "description": "Won a deal this month",
            "rule": {"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1}}).raise_for_status()
        http.put("/v1/streaks/calls", json={"name": "2 calls a day", "rule": {"metric": "activities.call",
                                                                              "at_least": 2}}).raise_for_status()
        # Ada: calls Tuesday to Friday (4 days, met today); Bob: Wednesday and Thursday (2, at risk today).
        post(stack, calls("ada", 3, 2, 1) + calls("bob", 2, 1) + [
            {**c, "occurred_at": iso(NOW - timedelta(minutes=50 - n))} for n, c in enumerate(calls("ada", 0))])
        post(stack, [won("w1", "bob", "1000.00"), won("w2", "dee", "2500.00")])
        yield stack
    finally:
        stack.stop()


def test_a_badge_earned_is_celebrated_on_the_tv_and_shown_on_the_reps_page(floor: Stack, open_page: Any) -> None:
    board, rep = open_page(), open_page(width=390, height=844)
    board.goto(screen_url(floor, "/screens/board/floor", celebrate="30"))
    rep.goto(screen_url(floor, "/screens/rep/ada"))
    for page in (board, rep):
        wait_ready(page)
        page.wait_for_selector("[data-state='live']")
    post(floor, [won("w3", "ada", "3000.00")])  # Ada's first deal of the month
    board.wait_for_selector("#celebration.show[data-rep-id='ada'][data-kind='achievement']", timeout=20_000)
    overlay = board.inner_text("#celebration")
    assert board.text_content("#celebration .kicker") == "Badge earned"
    assert "Ada Lovelace" in overlay and "First deal of the month" in overlay
    assert board.text_content("#celebration .celebration-badge") == "\U0001F947"

    rep.wait_for_selector("#badges li.earned[data-achievement='first-deal']", timeout=20_000)
    badge = rep.inner_text("#badges li.earned[data-achievement='first-deal']")
    assert "First deal of the month" in badge and "\U0001F947" in badge
    rep.wait_for_selector("#notifications li .what", timeout=20_000)
    assert "Earned First deal of the month" in rep.inner_text("#notifications")
    streak = rep.get_attribute("#streaks li.streak[data-streak-id='calls']", "data-current")
    assert streak == "4" and "Met today" in rep.inner_text("#streaks")


def test_the_streak_board_ranks_current_and_longest_streaks_and_marks_those_at_risk(
    floor: Stack, open_page: Any
) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/streaks/calls"))
    wait_ready(page)
    rows = page.eval_on_selector_all(
        "#streak-current .entry",
        "rows => rows.map(r => [r.dataset.repId, r.dataset.rank, r.dataset.atRisk,"
        " r.querySelector('.value').textContent])",
    )
    assert rows == [["ada", "1", "false", "4 \U0001F525"], ["bob", "2", "true", "2 \U0001F525today?"]]
    assert page.text_content("#streak-title") == "\U0001F525 2 calls a day"
    longest = page.eval_on_selector_all("#streak-longest .entry", "rows => rows.map(r => r.dataset.repId)")
    assert longest == ["ada", "bob"]


def test_a_team_battle_shows_head_to_head_alone_and_in_a_rotation(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/board/battle"))
    wait_ready(page)
    page.wait_for_selector(".battle:not([hidden]) .battle-team[data-team-id='west']")
    teams = page.eval_on_selector_all(
        ".battle-team", "ts => ts.map(t => [t.dataset.teamId, t.querySelector('.battle-value').textContent])")
    east = float(httpx.get(f"{floor.api}/v1/boards/battle/standings", headers=floor.headers).json()[
        "battle"]["teams"][0]["value"])
    shown = format_on_page(page, "formatMetric", "revenue", 2500, {"cents": False})
    assert teams[1] == ["west", shown] and teams[0][0] == "east" and east >= 1000
    gap = page.text_content(".battle-gap") or ""
    assert gap == "All square" or " leads by $" in gap

    rotation = open_page()
    rotation.goto(screen_url(floor, "/screens/rotate", boards="battle,floor", every="60"))
    wait_ready(rotation)
    rotation.wait_for_selector(".board[data-board-id='battle']:not([hidden]) .battle:not([hidden])")
    assert rotation.is_hidden(".board[data-board-id='floor']")


def open_board_with_a_socket(page: Any, stack: Stack, **query: str) -> list[Any]:
    """Open the floor board, its socket relayed so the test can hand it a celebration; returns the relays."""
    sockets: list[Any] = []

    def relay(route: Any) -> None:
        route.connect_to_server()  # standings still come from the real gateway
        sockets.append(route)

    page.route_web_socket("**/v1/ws/boards/floor*", relay)
    page.goto(screen_url(stack, "/screens/board/floor", celebrate="2", **query))
    wait_ready(page)
    return sockets


def celebrate(sockets: list[Any], rep_id: str) -> None:
    now = FLOOR_CLOCK.now()
    sockets[-1].send(json.dumps({
        "type": "celebration", "kind": "achievement", "notification_id": f"ac_{rep_id}", "rep_id": rep_id,
        "name": rep_id.title(), "period_key": f"{now:%Y-%m}", "at": now.isoformat(),
        "achievement": {"achievement_id": "first-deal", "name": "First deal", "badge": "\U0001F947"}}))


def test_the_celebration_sound_plays_when_asked_for_and_stays_silent_in_quiet_hours(
    floor: Stack, open_page: Any
) -> None:
    asset = httpx.get(f"{floor.api}/screens/static/celebrate.wav")
    assert asset.status_code == 200 and asset.headers["content-type"] == "audio/wav" and asset.content[:4] == b"RIFF"

    loud = open_page()
    sockets = open_board_with_a_socket(loud, floor, sound="on", quiet="off")
    loud.mouse.click(10, 10)  # someone set the TV up: a gesture, as a kiosk browser's autoplay flag stands for
    celebrate(sockets, "ada")
    loud.wait_for_selector("body[data-sounds-played='1']", timeout=10_000)
    assert loud.get_attribute("body", "data-sound") == "on"
    policy = httpx.get(screen_url(floor, "/screens/board/floor")).headers["content-security-policy"]
    assert "media-src 'self'" in policy

    # 15:00 on the business clock (UTC here) is inside 14:00-16:00: the overlay shows, the board stays silent.
    hushed = open_page()
    sockets = open_board_with_a_socket(hushed, floor, sound="on", quiet="14:00-16:00")
    hushed.mouse.click(10, 10)
    celebrate(sockets, "bob")
    hushed.wait_for_selector("body[data-sounds-skipped='1']", timeout=10_000)
    hushed.wait_for_selector("#celebration.show[data-rep-id='bob']")
    assert hushed.get_attribute("body", "data-sounds-played") is None

    # Off by default: the sound is not even fetched.
    fetched: list[str] = []
    quiet = open_page()
    quiet.on("request", lambda request: fetched.append(request.url))
    sockets = open_board_with_a_socket(quiet, floor)
    celebrate(sockets, "dee")
    quiet.wait_for_selector("#celebration.show[data-rep-id='dee']", timeout=10_000)
    assert quiet.get_attribute("body", "data-sound") == "off"
    assert not [url for url in fetched if url.endswith(".wav")]
