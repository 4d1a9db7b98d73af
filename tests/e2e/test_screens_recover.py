"""Screens recover by themselves when the gateway goes away: they say they are reconnecting, keep trying with
backoff, and once the gateway is back (same port) they are live again and show new events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.floor import FLOOR_CLOCK, post, seed_floor, won
from tests.e2e.screens import report, screen_url, wait_ready
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_board_and_rep_page_reconnect_after_the_gateway_restarts(
    stack_factory: Any, tmp_path: Path, open_page: Any
) -> None:
    stack: Stack = stack_factory(f"sqlite+aiosqlite:///{tmp_path / 'recover.db'}", clock=FLOOR_CLOCK).start()
    seed_floor(stack)
    board, rep = open_page(), open_page(width=390, height=844)
    board.goto(screen_url(stack, "/screens/board/floor"))
    rep.goto(screen_url(stack, "/screens/rep/ada"))
    for page in (board, rep):
        wait_ready(page)
        page.wait_for_selector("[data-state='live']")

    stack.kill("api")
    board.wait_for_selector(".board[data-connection='reconnecting']", timeout=10_000)
    assert board.is_visible(".banner") and "reconnecting" in board.inner_text(".banner").lower()
    assert "Reconnecting" in board.inner_text(".status")
    rep.wait_for_selector("#status[data-state='reconnecting']", timeout=10_000)
    assert board.inner_text(".entry[data-rep-id='dee'] .value") == "$13,000"  # the last standings stay up

    stack.start_service("api")
    stack.wait_healthy("api", "/v1/ready")
    healthy = time.monotonic()
    board.wait_for_selector(".board[data-connection='live']", timeout=30_000)
    rep.wait_for_selector("#status[data-state='live']", timeout=30_000)
    report("screens: gateway ready → board live again", f"{(time.monotonic() - healthy) * 1000:.0f} ms")
    assert board.is_hidden(".banner")

    post(stack, [won("ada", "6000.00")])
    board.wait_for_selector(".entry[data-rep-id='ada'][data-rank='1']", timeout=10_000)
    assert board.inner_text(".entry[data-rep-id='ada'] .value") == "$14,000"
    rep.wait_for_function(
        "() => document.querySelector(\".plan[data-plan-id='ae-revenue'] .attainment\")?.textContent === '140%'",
        timeout=10_000,
    )
