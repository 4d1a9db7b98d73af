"""The sales-ops console in headless Chromium, as an admin without curl runs the floor: sign in with an admin key,
add a team and three reps from a CSV (a bad row reported, nothing half-saved), create a board and see its
preview, create a TV key and open the board with it, revoke the key and watch the TV close saying why — and the
same pages at phone width and from the keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.screens import wait_ready
from tests.support.clock import TEST_CLOCK, now_stamp
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

GOOD_ROWS = "amy,Amy Adams,north,amy@example.com\nbob,Bob Brown,north,\ncat,Cat Cruz,north,\n"
BAD_ROW = "dan,Dan Doe,north,dan-at-example\n"


@pytest.fixture(scope="module")
def shop(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "console-e2e").start()
    try:
        yield stack
    finally:
        stack.stop()


def sign_in(page: Any, shop: Stack, path: str = "/console/") -> None:
    page.goto(f"{shop.api}{path}")
    page.wait_for_selector("#signin")
    page.fill("#signin-key", shop.admin_key)
    page.keyboard.press("Enter")  # the form submits from the keyboard
    page.wait_for_selector("nav.console-nav")
    wait_ready(page)


def rep(api: str, headers: dict[str, str], rep_id: str) -> int:
    return httpx.get(f"{api}/v1/reps/{rep_id}", headers=headers, timeout=10).status_code


def test_a_team_and_three_reps_from_a_csv_with_a_bad_row_reported_and_nothing_half_saved(
    shop: Stack, open_page: Any
) -> None:
    page = open_page()
    sign_in(page, shop, "/console/roster")
    assert not [c for c in page.context.cookies() if c["name"] == "sp_console" and not c["httpOnly"]]
    page.fill("#team-id", "north")
    page.fill("#team-name", "North")
    page.click("#team-form button[type=submit]")
    page.wait_for_selector("#teams tr[data-team='north']")

    upload = "rep_id,name,team_id,email\n" + GOOD_ROWS + BAD_ROW
    page.set_input_files("#csv-file", files=[{"name": "reps.csv", "mimeType": "text/csv", "buffer": upload.encode()}])
    page.click("#csv-check")
    page.wait_for_selector("#csv-problems li")
    assert "line 5" in page.inner_text("#csv-problems") and "email" in page.inner_text("#csv-problems")
    assert page.is_disabled("#csv-save")  # nothing is saved while any row is wrong
    assert page.locator("#csv-changes tr[data-action='add']").count() == 3
    assert all(rep(shop.api, shop.headers, r) == 404 for r in ("amy", "bob", "cat", "dan"))

    fixed = "rep_id,name,team_id,email\n" + GOOD_ROWS
    page.set_input_files("#csv-file", files=[{"name": "reps.csv", "mimeType": "text/csv", "buffer": fixed.encode()}])
    page.click("#csv-check")
    page.wait_for_selector("#csv-save:not([disabled])")
    assert page.inner_text("#csv-save") == "Save 3 reps"
    page.click("#csv-save")
    page.wait_for_selector("#reps tr[data-rep='cat']")
    assert "3 added" in page.inner_text("#message")
    stored = httpx.get(f"{shop.api}/v1/reps/amy", headers=shop.headers, timeout=10).json()
    assert stored["team_id"] == "north" and stored["email"] == "amy@example.com"
    assert rep(shop.api, shop.headers, "dan") == 404
    assert page.inner_text("#teams tr[data-team='north'] td.num") == "3"

    page.fill("#rep-search", "cruz")
    assert page.locator("#reps tbody tr").count() == 1


def test_a_rep_seen_in_events_is_added_to_the_roster_in_one_click(shop: Stack, open_page: Any) -> None:
    event = {"event_id": "console-e2e-zoe", "type": "activity", "occurred_at": now_stamp(TEST_CLOCK),
             "rep_id": "zoe", "kind": "call"}
    assert httpx.post(f"{shop.ingest}/v1/events", json=event, headers=shop.headers, timeout=10).status_code == 202
    wait_until(lambda: httpx.get(f"{shop.api}/v1/reps/zoe/kpis", params={"period": "day"}, headers=shop.headers,
                                 timeout=10).status_code == 200, timeout=30, what="zoe scored")
    page = open_page()
    sign_in(page, shop, "/console/roster")
    page.click("button[data-add='zoe']")
    page.wait_for_selector("#reps tr[data-rep='zoe']")
    assert rep(shop.api, shop.headers, "zoe") == 200
    assert page.input_value("#rep-id") == "zoe"  # ready to be given a name and a team


def test_a_board_is_previewed_then_saved_and_put_on_a_tv_whose_key_is_then_revoked(
    shop: Stack, open_page: Any
) -> None:
    headers = shop.headers
    httpx.put(f"{shop.api}/v1/teams/north", json={"name": "North"}, headers=headers, timeout=10).raise_for_status()
    httpx.put(f"{shop.api}/v1/reps/amy", json={"name": "Amy Adams", "team_id": "north"}, headers=headers,
              timeout=10).raise_for_status()
    calls = [{"event_id": f"console-e2e-call-{i}", "type": "activity", "occurred_at": now_stamp(TEST_CLOCK),
              "rep_id": "amy", "kind": "call"} for i in range(3)]
    assert httpx.post(f"{shop.ingest}/v1/events", json=calls, headers=headers, timeout=10).status_code == 202

    def scored() -> bool:
        answer = httpx.get(f"{shop.api}/v1/reps/amy/kpis", params={"period": "day"}, headers=headers, timeout=10)
        return answer.status_code == 200 and answer.json()["kpis"]["activities"] == 3

    wait_until(scored, timeout=30, what="amy's three calls scored")
    page = open_page()
    sign_in(page, shop, "/console/boards")
    page.fill("#b-board_id", "north-calls")
    page.fill("#b-title", "North calls today")
    page.select_option("#b-metric", "activities")
    page.select_option("#b-period", "day")
    page.fill("#b-teams", "north")
    page.wait_for_function(
        "() => document.querySelector('#preview-title').textContent === 'North calls today' && "
        "document.querySelector(\"#preview tr[data-rep='amy'] td:nth-child(4)\")?.textContent === '3'"
    )
    assert page.inner_text("#preview-title") == "North calls today"
    assert httpx.get(f"{shop.api}/v1/boards/north-calls", headers=headers, timeout=10).status_code == 404
    page.click("#board-save")
    page.wait_for_selector("#boards tr[data-board='north-calls']")
    assert httpx.get(f"{shop.api}/v1/boards/north-calls", headers=headers, timeout=10).json()["metric"] == "activities"

    page.click("#boards tr[data-board='north-calls'] a:has-text('TV key')")
    page.wait_for_selector("#k-boards input[value='north-calls']:checked")
    page.click("#key-create button[type=submit]")
    page.wait_for_selector("#created:not([hidden])")
    url = page.input_value("#created-url")
    assert url.startswith(f"{shop.api}/screens/board/north-calls?token=sp_")
    assert page.get_attribute("#created-qr", "src").startswith("data:image/svg+xml")
    key_id = page.get_attribute("#created", "data-key-id")
    page.wait_for_selector(f"#keys tr[data-key='{key_id}'] td:has-text('boards north-calls')")

    tv = open_page()
    tv.goto(url)
    tv.wait_for_selector(".board[data-connection='live']", timeout=20_000)
    assert "North calls today" in tv.inner_text(".board-title")

    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f"button[data-revoke='{key_id}']")
    page.wait_for_selector(f"#keys tr[data-key='{key_id}']", state="detached")
    tv.wait_for_selector(".board[data-connection='refused']", timeout=20_000)
    assert "revoked" in tv.inner_text(".banner")


@pytest.mark.parametrize("path", ["/console/", "/console/roster", "/console/boards", "/console/keys"])
def test_every_console_page_fits_a_phone_and_works_from_the_keyboard(shop: Stack, open_page: Any, path: str) -> None:
    page = open_page(width=390, height=844)
    sign_in(page, shop, path)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"{path} is {overflow}px wider than a phone"
    # Tab reaches every link, button and field in order, each one showing it has the focus.
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.tagName + ':' + (document.activeElement.id || "
                                     "document.activeElement.textContent.trim().slice(0, 20))"))
    assert len(set(reached)) >= 8 and not any(r.startswith("BODY") for r in reached)
    current = page.get_attribute("nav.console-nav a[aria-current='page']", "href")
    assert current == path


def test_without_a_session_the_console_asks_for_an_admin_key_and_refuses_others(shop: Stack, open_page: Any) -> None:
    _, viewer = shop.create_key("viewer", "wall")
    page = open_page()
    page.goto(f"{shop.api}/console/keys")
    page.wait_for_selector("#signin")
    assert page.is_hidden("main")
    page.fill("#signin-key", viewer)
    page.click("#signin button[type=submit]")
    page.wait_for_function("() => document.querySelector('#signin-problem').textContent.includes('admin')")
    page.goto(f"{shop.api}/console/?token={shop.admin_key}")  # a link with the key signs in and drops it
    page.wait_for_selector("nav.console-nav")
    assert "token=" not in page.url
    page.click("#sign-out")
    page.wait_for_selector("#signin")


def test_the_plan_editor_opened_from_the_console_uses_its_session(shop: Stack, open_page: Any) -> None:
    page = open_page()
    sign_in(page, shop)
    page.click("nav.console-nav a:has-text('Plans')")
    wait_ready(page)
    assert page.is_hidden("#key-form") and page.is_visible("#plan-form")  # no key asked for again
    page.fill("#f-plan_id", "console-plan")
    page.fill("#f-name", "Calls")
    page.select_option("#f-metric", "activities")
    page.fill("#f-effective_from", "2026-01-01")
    page.fill("#f-quota", "10")
    page.fill("#tiers tbody tr:first-child .t-id", "base")
    page.fill("#tiers tbody tr:first-child .t-name", "Base")
    page.fill("#tiers tbody tr:first-child .t-threshold", "0")
    page.fill("#tiers tbody tr:first-child .t-rate", "1")
    page.click("#preview")  # a POST: the console's CSRF token goes with it
    page.wait_for_selector("#publish:not([disabled])")
    page.click("#publish")
    page.wait_for_function("() => document.querySelector('#message').textContent.startsWith('Published')")
    stored = httpx.get(f"{shop.api}/v1/plans/console-plan", headers=shop.headers, timeout=10)
    assert stored.status_code == 200 and stored.json()["metric"] == "activities"
