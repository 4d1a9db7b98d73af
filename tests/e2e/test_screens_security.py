"""What the screens promise about security: a strict Content-Security-Policy on every page and asset, no
framing, no referrer (the key is in the URL), nothing served outside the screens' own files, and a clear
message instead of a retry storm when the key is missing or refused."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.e2e.screens import screen_url
from tests.support.stack import ROOT, Stack

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


def test_a_tv_trades_its_key_for_a_private_cookie_and_closes_when_the_key_is_revoked(
    floor: Stack, open_page: Any
) -> None:
    key_id, key = floor.create_key("screen", "lobby tv", "--boards", "floor")
    page = open_page()
    page.goto(f"{floor.api}/screens/board/floor?token={key}")
    page.wait_for_selector(".board[data-connection='live']", timeout=20_000)
    assert "token=" not in page.url and key not in page.url  # out of the address bar and the history
    cookie = next(c for c in page.context.cookies() if c["name"] == "sp_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != key
    assert "sp_session" not in page.evaluate("document.cookie")  # page scripts cannot read it
    # The session reads what the key may read, nothing more, and changes nothing.
    as_session = {"Cookie": f"sp_session={cookie['value']}"}
    assert httpx.get(f"{floor.api}/v1/boards/floor/standings", headers=as_session, timeout=10).status_code == 200
    assert httpx.get(f"{floor.api}/v1/reps/ada/kpis", headers=as_session, timeout=10).status_code == 403
    assert httpx.put(f"{floor.api}/v1/teams/east", json={"name": "X"}, headers=as_session,
                     timeout=10).status_code == 401
    revoked = subprocess.run([sys.executable, "-m", "services.cli.main", "keys", "revoke", key_id],
                             env=floor.env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    page.wait_for_selector(".board[data-connection='refused']", timeout=20_000)
    assert "revoked" in page.inner_text(".banner")
    assert httpx.get(f"{floor.api}/v1/boards/floor/standings", headers=as_session, timeout=10).status_code == 401


def test_a_refused_key_is_shown_on_the_board_and_retried_only_slowly(floor: Stack, open_page: Any) -> None:
    page = open_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(screen_url(floor, "/screens/board/floor").replace(floor.admin_key, "sp_wrong_key"))
    page.wait_for_selector(".board[data-connection='refused']", timeout=10_000)
    assert "Not connected" in page.inner_text(".banner")
    page.wait_for_timeout(3_000)
    assert len(sockets) == 1
