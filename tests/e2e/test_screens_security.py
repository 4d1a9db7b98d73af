"""What the screens promise about security: a strict Content-Security-Policy on every page and asset, no
framing, no referrer (the key is in the URL), nothing served outside the screens' own files, and a clear
message instead of a retry storm when the key is missing or refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.screens import screen_url
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

SCREENS = ["/screens/", "/screens/board/floor", "/screens/rotate", "/screens/rep/ada", "/screens/team/east"]
ASSETS = ["/screens/static/common.js", "/screens/static/board.js", "/screens/static/screens.css",
          "/screens/static/icon.svg"]


@pytest.mark.parametrize("path", SCREENS + ASSETS)
def test_every_screen_and_asset_carries_a_strict_policy(floor: Stack, path: str) -> None:
    response = httpx.get(f"{floor.api}{path}", timeout=10)
    assert response.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1) for directive in response.headers["content-security-policy"].split(";")
    )
    host = floor.api.removeprefix("http://")
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == f"'self' ws://{host} wss://{host}"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_pages_are_served_without_a_key_but_hold_no_data(floor: Stack) -> None:
    page = httpx.get(f"{floor.api}/screens/board/floor", timeout=10)
    assert page.headers["content-type"].startswith("text/html")
    assert "Revenue this month" not in page.text  # every figure comes from /v1 with the page's key
    assert page.headers["cache-control"] == "no-store"
    assert '"fiscal_year_start_month": 1' in page.text.replace("&quot;", '"')


@pytest.mark.parametrize(
    "path", ["/screens/static/app.py", "/screens/static/..%2Froutes%2Fscreens.py", "/screens/static/board.html",
             "/screens/static/.hidden.js", "/screens/static/nope.js"],
)
def test_nothing_but_the_screens_own_assets_is_served(floor: Stack, path: str) -> None:
    response = httpx.get(f"{floor.api}{path}", timeout=10)
    assert response.status_code == 404


def test_a_screen_without_a_key_says_how_to_add_one(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(f"{floor.api}/screens/board/floor")
    page.wait_for_selector("#notice:not([hidden])")
    assert "needs an API key" in page.inner_text("#notice") and "?token=" in page.inner_text("#notice")


def test_a_refused_key_is_shown_on_the_board_and_retried_only_slowly(floor: Stack, open_page: Any) -> None:
    page = open_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(screen_url(floor, "/screens/board/floor").replace(floor.admin_key, "sp_wrong_key"))
    page.wait_for_selector(".board[data-connection='refused']", timeout=10_000)
    assert "Not connected" in page.inner_text(".banner")
    page.wait_for_timeout(3_000)
    assert len(sockets) == 1
