"""Tier crossings end to end: a win posted to ingest lifts a rep past a tier; scoring, the notifier and the
gateway carry it to the floor's TV board as a celebration (name, tier, reward) and to the rep's own page as a
notification, live and after a reload (GET /v1/notifications)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.floor import FLOOR_CLOCK, post, seed_floor, won
from tests.e2e.screens import report, screen_url, wait_ready
from tests.support.stack import Stack, sqlite_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def notifying(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The test floor on a whole stack plus the notifier."""
    stack = sqlite_stack(
        broker, tmp_path_factory, "celebrate", clock=FLOOR_CLOCK, SALESPULSE_NOTIFY_DIGEST_SCHEDULE="off"
    )
    try:
        stack.start()
        stack.start_service("notifier")
        stack.wait_healthy("notifier", "/v1/ready")
        seed_floor(stack)
        yield stack
    finally:
        stack.stop()


def open_board_and_rep(open_page: Any, stack: Stack, rep_id: str) -> tuple[Any, Any]:
    board, rep = open_page(), open_page(width=390, height=844)
    board.goto(screen_url(stack, "/screens/board/floor", celebrate="30"))
    rep.goto(screen_url(stack, f"/screens/rep/{rep_id}"))
    for page in (board, rep):
        wait_ready(page)
        page.wait_for_selector("[data-state='live']")
    return board, rep


def test_a_win_that_lifts_a_rep_past_target_is_celebrated_and_notified(notifying: Stack, open_page: Any) -> None:
    board, rep = open_board_and_rep(open_page, notifying, "bob")
    started = time.time()
    post(notifying, [won("bob", "6000.00")])  # 4,500 + 6,000 = 105 % of the 10,000 quota: Target
    board.wait_for_selector("#celebration.show[data-rep-id='bob']", timeout=20_000)
    report("celebration: POST /v1/events → overlay on the board", f"{(time.time() - started) * 1000:.0f} ms")
    overlay = board.inner_text("#celebration")
    assert "Bob Okafor" in overlay and "Target" in overlay and "Shout-out at the all-hands" in overlay
    assert "AE revenue accelerator" in overlay

    rep.wait_for_selector("#notifications li.fresh", timeout=20_000)
    listed = rep.inner_text("#notifications")
    assert "Reached Target in AE revenue accelerator" in listed and "Reward: Shout-out at the all-hands" in listed


def test_a_win_past_two_tiers_is_celebrated_tier_by_tier_and_listed_newest_first(
    notifying: Stack, open_page: Any
) -> None:
    board, rep = open_board_and_rep(open_page, notifying, "eve")
    post(notifying, [won("eve", "13000.00")])  # 0 → 130 %: Target and Accelerator at once

    board.wait_for_selector("#celebration.show[data-rep-id='eve']", timeout=20_000)
    overlay = board.inner_text("#celebration")
    assert "Eve Tanaka" in overlay and "Target" in overlay and "Shout-out at the all-hands" in overlay
    board.wait_for_function(  # Accelerator waits its turn behind Target
        "() => document.querySelector('#celebration .celebration-more')?.textContent === '+1 more'", timeout=10_000
    )
    board.wait_for_function(
        "() => document.querySelector('#celebration .celebration-tier')?.innerText.includes('Accelerator')",
        timeout=40_000,
    )
    assert "1 extra day of PTO" in board.inner_text("#celebration")

    rep.wait_for_function(
        "() => document.querySelector('#notifications').innerText.includes('Reached Accelerator')", timeout=20_000
    )
    rep.reload()
    wait_ready(rep)
    rep.wait_for_selector("#notifications[data-available='true']")
    listed = rep.inner_text("#notifications")
    assert listed.index("Reached Accelerator") < listed.index("Reached Target")  # newest first
