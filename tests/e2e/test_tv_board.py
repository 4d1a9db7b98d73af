"""The sales-floor TV board in headless Chromium against a whole stack: standings, tier progress, rank movement,
live updates, rotation and the celebration overlay."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import httpx
import pytest

from tests.e2e.floor import FLOOR_CLOCK, post, won
from tests.e2e.screens import report, screen_url, wait_ready
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.integration

ROWS_JS = """sel => [...document.querySelectorAll(sel)].map(row => ({
    rep: row.dataset.repId,
    rank: row.querySelector('.rank').textContent,
    name: row.querySelector('.name').textContent,
    team: row.querySelector('.team').textContent,
    value: row.querySelector('.value').textContent,
    tier: row.querySelector('.tier').textContent,
    next: row.querySelector('.next').textContent,
    fill: row.querySelector('.fill').style.width,
    move: row.querySelector('.move').textContent,
    classes: row.className,
}))"""


def rows(page: Any, board: str | None = None) -> list[dict[str, str]]:
    scope = f".board[data-board-id='{board}']" if board else ".board:not([hidden])"
    return page.evaluate(ROWS_JS, f"{scope} .entry")


def standings(stack: Stack, board: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.api}/v1/boards/{board}/standings", headers=stack.headers, timeout=10)
    response.raise_for_status()
    return response.json()["entries"]  # type: ignore[no-any-return]


def money(amount: float) -> str:
    return f"${amount:,.0f}"


def test_board_ranks_the_floor_with_values_and_progress_to_the_next_tier(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/board/floor"))
    wait_ready(page)
    page.wait_for_function(
        "() => document.querySelector('.entry[data-rep-id=dee] .team')?.textContent === 'West Coast'"
    )

    shown = rows(page)
    assert [(r["rank"], r["name"], r["value"]) for r in shown] == [
        ("1", "Dee Patel", "$13,000"),
        ("2", "Cyrus Young", "$11,000"),
        ("3", "Ada Lovelace", "$8,000"),
        ("4", "Bob Okafor", "$4,500"),
        ("5", "Eve Tanaka", "$0"),
    ]
    by_rep = {r["rep"]: r for r in shown}
    assert (by_rep["dee"]["tier"], by_rep["dee"]["next"], by_rep["dee"]["fill"]) == (
        "130% · Accelerator", "Top tier", "100%",
    )
    # Cyrus is 10 of the 25 points from Target (100 %) to Accelerator (125 %): 40 % along that band.
    assert (by_rep["cy"]["tier"], by_rep["cy"]["next"], by_rep["cy"]["fill"]) == (
        "110% · Target", "→ Accelerator 125%", "40%",
    )
    assert (by_rep["ada"]["tier"], by_rep["ada"]["next"], by_rep["ada"]["fill"]) == (
        "80% · Base", "→ Target 100%", "80%",
    )
    assert by_rep["ada"]["team"] == "East Coast"
    assert page.text_content(".board-title") == "Revenue this month"
    assert page.text_content(".board-period").startswith(FLOOR_CLOCK.now().strftime("%B %Y"))
    assert page.text_content(".updated").startswith("Updated ")
    assert page.get_attribute(".status", "data-state") == "live"
    assert page.text_content(".columns .col-value") == "Revenue"


def test_board_shows_an_ingested_event_within_about_a_second(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/board/north"))
    wait_ready(page)
    to_dom, after_202 = [], []
    for _ in range(5):
        value = next((e["value"] for e in standings(floor, "north") if e["rep_id"] == "nia"), 0.0)
        expected = money(value + 1250)
        started = time.time()
        post(floor, [won("nia", "1250.00")])
        accepted = time.time()
        seen_at = page.wait_for_function(
            """want => {
                const cell = document.querySelector(".entry[data-rep-id='nia'] .value");
                return cell && cell.textContent === want ? Date.now() : false;
            }""",
            arg=expected,
            polling="raf",
            timeout=10_000,
        ).json_value()
        to_dom.append(seen_at - started * 1000)
        after_202.append(seen_at - accepted * 1000)
        time.sleep(0.3)
    report(
        "TV board: POST /v1/events → value on screen",
        f"median {statistics.median(to_dom):.0f} ms, max {max(to_dom):.0f} ms over {len(to_dom)} events "
        f"(after the 202: median {statistics.median(after_202):.0f} ms, max {max(after_202):.0f} ms)",
    )


NORTH = ("nia", "oli", "pam")


def spread_ranks(stack: Stack, board: str, reps: tuple[str, ...]) -> list[dict[str, Any]]:
    """Wins that leave `reps` ranked 1, 2, 3 … in that order, whatever the board held before; waits until the
    board's standings show it and returns them. A test that needs distinct ranks seeds them itself rather than
    lean on what earlier tests posted."""
    values = {rep: 0.0 for rep in reps} | {e["rep_id"]: e["value"] for e in standings(stack, board)}
    wanted, above = {}, 0.0
    for rep in reversed(reps):  # the last rep ends lowest, each one above the next by at least 100
        wanted[rep] = max(values[rep], above) + 100
        above = wanted[rep]
    post(stack, [won(rep, f"{wanted[rep] - values[rep]:.2f}") for rep in reps])

    def spread() -> list[dict[str, Any]] | None:
        entries = standings(stack, board)
        ranks = {e["rep_id"]: e["rank"] for e in entries if e["value"] >= wanted.get(e["rep_id"], 0.0)}
        return entries if [ranks.get(rep) for rep in reps] == list(range(1, len(reps) + 1)) else None

    return wait_until(spread, timeout=20, what=f"{', '.join(reps)} ranked in that order on {board}")


def test_a_rep_who_overtakes_gets_an_up_arrow_and_the_one_passed_a_down_arrow(floor: Stack, open_page: Any) -> None:
    before = spread_ranks(floor, "north", NORTH)
    page = open_page()
    page.goto(screen_url(floor, "/screens/board/north"))
    wait_ready(page)
    page.wait_for_selector(f".entry[data-rep-id='{NORTH[-1]}'][data-rank='{len(NORTH)}']", timeout=10_000)
    leader, last = before[0], before[-1]
    assert leader["rep_id"] != last["rep_id"]
    post(floor, [won(last["rep_id"], f"{leader['value'] + 5000:.2f}")])

    climber = f".entry[data-rep-id='{last['rep_id']}']"
    page.wait_for_selector(f"{climber}[data-rank='1']", timeout=10_000)
    shown = {r["rep"]: r for r in rows(page)}
    assert shown[last["rep_id"]]["move"] == f"↑{last['rank'] - 1}"
    assert "moved-up" in shown[last["rep_id"]]["classes"]
    assert shown[leader["rep_id"]]["move"] == "↓1"
    assert "moved-down" in shown[leader["rep_id"]]["classes"]


def test_rotation_shows_each_board_in_turn(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/rotate", boards="floor,calls", every="3"))
    wait_ready(page)
    page.wait_for_function("() => document.body.dataset.board === 'floor'")
    assert page.text_content(".board:not([hidden]) .board-title") == "Revenue this month"
    page.wait_for_function("() => document.body.dataset.board === 'calls'", timeout=10_000)
    assert page.text_content(".board:not([hidden]) .board-title") == "Most activities this month"
    page.wait_for_function(
        "() => document.querySelector(\".board:not([hidden]) .entry[data-rep-id='ada'] .tier\")"
        "?.textContent.includes('On track')"
    )
    calls = rows(page)
    assert [(r["rank"], r["name"], r["value"]) for r in calls[:2]] == [
        ("1", "Ada Lovelace", "12"), ("2", "Cyrus Young", "4"),
    ]
    assert (calls[0]["tier"], calls[0]["next"]) == ("60% · On track", "→ Gold 100%")
    assert page.text_content(".rotation-dot.current") == "Most activities this month"
    page.wait_for_function("() => document.body.dataset.board === 'floor'", timeout=10_000)


def test_celebrations_show_name_tier_and_reward_one_after_another(floor: Stack, open_page: Any) -> None:
    """Celebration messages injected into the real board socket (the notifier that emits them is not built
    yet; tests/e2e/test_celebration_end_to_end_TODO.py drives a real crossing once it is)."""
    page = open_page()
    sockets: list[Any] = []

    def relay(route: Any) -> None:
        route.connect_to_server()  # standings still come from the real gateway
        sockets.append(route)

    page.route_web_socket("**/v1/ws/boards/floor*", relay)
    page.goto(screen_url(floor, "/screens/board/floor", celebrate="2"))
    wait_ready(page)
    now = FLOOR_CLOCK.now()
    crossing = {"type": "celebration", "plan_id": "ae-revenue", "period_key": f"{now:%Y-%m}", "at": now.isoformat()}
    first = {**crossing, "rep_id": "cy", "name": "Cyrus Young",
             "tier": {"tier_id": "target", "name": "Target", "threshold": 1.0}}
    second = {**crossing, "rep_id": "dee", "name": "Dee Patel",
              "tier": {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25}}
    for message in (first, second, first):  # the repeat is the same crossing: shown once
        sockets[-1].send(json.dumps(message))

    page.wait_for_selector("#celebration.show[data-rep-id='cy']", timeout=5_000)
    overlay = page.inner_text("#celebration")
    assert "Cyrus Young" in overlay and "Target" in overlay and "Shout-out at the all-hands" in overlay
    assert "AE revenue accelerator" in overlay and "+1 more" in overlay
    page.wait_for_selector("#celebration.show[data-rep-id='dee']", timeout=5_000)
    overlay = page.inner_text("#celebration")
    assert "Dee Patel" in overlay and "Accelerator" in overlay and "1 extra day of PTO" in overlay
    page.wait_for_selector("#celebration", state="hidden", timeout=5_000)
    assert page.get_attribute("#celebration", "data-shown") == "2"
    assert rows(page)[0]["name"] == "Dee Patel"  # the board is still live underneath
