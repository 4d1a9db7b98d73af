"""The admin API behind the sales-ops console (docs/console.md) on a real stack: the console session (an admin
key traded for an HttpOnly cookie; writes need its CSRF token too), keys created, listed and revoked, a CSV of
reps previewed and saved all or nothing, reps seen in events but not on the roster, a board previewed without
being saved, and the health overview counting events per source."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.clock import TEST_CLOCK, now_stamp
from tests.support.stack import ROOT, Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "console").start()
    try:
        http = httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10)
        http.put("/v1/teams/east", json={"name": "East"}).raise_for_status()
        http.put("/v1/teams/west", json={"name": "West"}).raise_for_status()
        board = {"title": "Revenue", "metric": "revenue", "period": "month"}
        http.put("/v1/boards/floor", json=board).raise_for_status()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def admin(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10)


def post_events(stack: Stack, *events: dict[str, Any]) -> None:
    answer = httpx.post(f"{stack.ingest}/v1/events", json=list(events), headers=stack.headers, timeout=10)
    assert answer.status_code == 202, answer.text


def activity(event_id: str, rep: str, source: str | None = None) -> dict[str, Any]:
    event = {"event_id": event_id, "type": "activity", "occurred_at": now_stamp(TEST_CLOCK), "rep_id": rep,
             "kind": "call"}
    if source is not None:
        event["source"] = source
    return event


# --- the console session ----------------------------------------------------------------------------------------


def test_an_admin_key_opens_a_console_session_whose_writes_need_the_csrf_token(stack: Stack) -> None:
    opened = httpx.post(f"{stack.api}/v1/console/session", headers=stack.headers, timeout=10)
    assert opened.status_code == 200, opened.text
    cookie = opened.cookies["sp_console"]
    assert cookie != stack.admin_key
    set_cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    csrf = opened.json()["csrf"]
    jar = {"Cookie": f"sp_console={cookie}"}
    read = httpx.get(f"{stack.api}/v1/console/session", headers=jar, timeout=10)
    assert read.status_code == 200 and read.json()["csrf"] == csrf
    assert httpx.get(f"{stack.api}/v1/keys", headers=jar, timeout=10).status_code == 200  # reads: the cookie alone
    team = {"name": "North"}
    refused = httpx.put(f"{stack.api}/v1/teams/north", json=team, headers=jar, timeout=10)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    other = csrf[:-1] + ("1" if csrf.endswith("0") else "0")  # one hex digit off
    wrong = httpx.put(f"{stack.api}/v1/teams/north", json=team, headers={**jar, "X-CSRF-Token": other}, timeout=10)
    assert wrong.status_code == 403
    assert httpx.get(f"{stack.api}/v1/teams/north", headers=stack.headers, timeout=10).status_code == 404
    saved = httpx.put(f"{stack.api}/v1/teams/north", json=team, headers={**jar, "X-CSRF-Token": csrf}, timeout=10)
    assert saved.status_code == 200, saved.text
    closed = httpx.delete(f"{stack.api}/v1/console/session", headers={**jar, "X-CSRF-Token": csrf}, timeout=10)
    assert closed.status_code == 204

    def ended() -> bool:
        return httpx.get(f"{stack.api}/v1/keys", headers=jar, timeout=10).status_code == 401

    wait_until(ended, timeout=10, what="the signed-out session refused")


def test_only_an_admin_key_opens_the_console(stack: Stack) -> None:
    _, viewer = stack.create_key("viewer", "wall")
    answer = httpx.post(f"{stack.api}/v1/console/session", headers={"Authorization": f"Bearer {viewer}"}, timeout=10)
    assert answer.status_code == 403 and "admin" in answer.json()["detail"]
    assert httpx.post(f"{stack.api}/v1/console/session", timeout=10).status_code == 401
    # A screen's read-only session cookie is no console session.
    screen = httpx.post(f"{stack.api}/v1/session", headers={"Authorization": f"Bearer {viewer}"}, timeout=10)
    jar = {"Cookie": f"sp_session={screen.cookies['sp_session']}"}
    assert httpx.get(f"{stack.api}/v1/console/session", headers=jar, timeout=10).status_code == 403


# --- keys -------------------------------------------------------------------------------------------------------


def test_a_tv_key_is_shown_once_with_its_address_and_qr_then_listed_and_revoked(
    stack: Stack, admin: httpx.Client
) -> None:
    unknown = admin.post("/v1/keys", json={"name": "Lobby", "role": "screen", "boards": ["nope"]})
    assert unknown.status_code == 422 and "nope" in unknown.json()["detail"]
    missing = admin.post("/v1/keys", json={"name": "Lobby", "role": "screen"})
    assert missing.status_code == 422 and "boards" in missing.json()["detail"]
    created = admin.post("/v1/keys", json={"name": "Lobby", "role": "screen", "boards": ["floor"], "expires_in": "30d"})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["url"] == f"{stack.api}/screens/board/floor?token={key['key']}"
    assert key["qr_svg"].startswith("data:image/svg+xml") and key["scope"] == "boards floor"
    assert created.headers["cache-control"] == "no-store"
    as_tv = {"Authorization": f"Bearer {key['key']}"}
    assert httpx.get(f"{stack.api}/v1/boards/floor/standings", headers=as_tv, timeout=10).status_code == 200
    listed = {k["key_id"]: k for k in admin.get("/v1/keys").json()}
    entry = listed[key["key_id"]]
    assert entry["state"] == "active" and entry["role"] == "screen" and entry["boards"] == ["floor"]
    assert entry["last_used_at"] is not None and entry["expires_at"] is not None
    assert "key" not in entry and all(key["key"] not in str(k) for k in listed.values())
    assert admin.delete(f"/v1/keys/{key['key_id']}").status_code == 204
    assert admin.delete(f"/v1/keys/{key['key_id']}").status_code == 404
    revoked = {k["key_id"]: k for k in admin.get("/v1/keys").json()}[key["key_id"]]
    assert revoked["state"] == "revoked" and revoked["revoked_at"] is not None

    def refused() -> bool:
        return httpx.get(f"{stack.api}/v1/boards/floor/standings", headers=as_tv, timeout=10).status_code == 401

    wait_until(refused, timeout=10, what="the revoked key refused")


def test_a_rotation_key_opens_the_rotation_and_scoped_keys_name_their_pages(admin: httpx.Client, stack: Stack) -> None:
    admin.put("/v1/boards/calls", json={"title": "Calls", "metric": "activities", "period": "day"}).raise_for_status()
    rotation = admin.post("/v1/keys", json={"name": "Hall", "role": "screen", "boards": ["floor", "calls"],
                                            "screen": "/screens/rotate?boards=floor,calls&every=15"}).json()
    assert rotation["url"].startswith(f"{stack.api}/screens/rotate?boards=floor,calls&every=15&token=")
    admin.put("/v1/reps/ana", json={"name": "Ana", "team_id": "east"}).raise_for_status()
    rep = admin.post("/v1/keys", json={"name": "Ana's phone", "role": "rep", "rep_id": "ana"}).json()
    assert rep["url"].startswith(f"{stack.api}/screens/rep/ana?token=")
    manager = admin.post("/v1/keys", json={"name": "East lead", "role": "manager", "team_id": "east"}).json()
    assert manager["url"].startswith(f"{stack.api}/screens/team/east?token=")
    ingest = admin.post("/v1/keys", json={"name": "CRM", "role": "ingest"}).json()
    assert ingest["url"] is None and ingest["qr_svg"] is None
    bad = admin.post("/v1/keys", json={"name": "x", "role": "rep", "rep_id": "ana", "expires_in": "soon"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "expires_in"
    elsewhere = admin.post("/v1/keys", json={"name": "x", "role": "screen", "boards": ["floor"],
                                             "screen": "https://evil.example/"})
    assert elsewhere.status_code == 422


# --- the roster -------------------------------------------------------------------------------------------------

GOOD = "rep_id,name,team_id,email\ncsv-a,Ann Able,east,ann@example.com\ncsv-b,Ben Best,east,\ncsv-c,Cy Cole,west,\n"


def upload(admin: httpx.Client, text: str | bytes, *, dry_run: bool) -> httpx.Response:
    return admin.post("/v1/roster/import", params={"dry_run": str(dry_run).lower()},
                      content=text if isinstance(text, bytes) else text.encode(),
                      headers={"Content-Type": "text/csv"})


def test_a_csv_with_a_bad_row_is_previewed_with_every_problem_and_saves_nothing(admin: httpx.Client) -> None:
    bad = GOOD + "csv-d,Di Dell,east,not-an-email\ncsv-e,Ed,south,\ncsv-a,Ann Again,east,\n"
    preview = upload(admin, bad, dry_run=True)
    assert preview.status_code == 200, preview.text
    result = preview.json()
    assert (result["rows"], result["added"], result["saved"]) == (6, 3, False)  # a, b and c; d, e, a again refused
    problems = {(e["row"], e["field"]) for e in result["errors"]}
    assert problems == {(5, "email"), (6, "team_id"), (7, "rep_id")}
    assert "line 2" in next(e["message"] for e in result["errors"] if e["row"] == 7)
    refused = upload(admin, bad, dry_run=False)
    assert refused.status_code == 422 and "nothing was saved" in refused.json()["detail"]
    assert len(refused.json()["errors"]) == 3
    for rep in ("csv-a", "csv-b", "csv-c"):
        assert admin.get(f"/v1/reps/{rep}").status_code == 404


def test_a_good_csv_adds_then_changes_only_what_differs_and_keeps_a_rep_s_team_history(admin: httpx.Client) -> None:
    saved = upload(admin, GOOD, dry_run=False)
    assert saved.status_code == 200, saved.text
    assert (saved.json()["added"], saved.json()["saved"]) == (3, True)
    assert admin.get("/v1/reps/csv-a").json()["email"] == "ann@example.com"
    moved = "rep_id,name,team_id\ncsv-a,Ann Able,west\ncsv-b,Ben Best,east\n"  # no e-mail column: e-mails stay
    preview = upload(admin, moved, dry_run=True).json()
    assert [(c["rep_id"], c["action"]) for c in preview["changes"]] == [("csv-a", "change"), ("csv-b", "unchanged")]
    assert preview["changes"][0]["fields"] == {"team_id": {"from": "east", "to": "west"}}
    assert upload(admin, moved, dry_run=False).status_code == 200
    ann = admin.get("/v1/reps/csv-a").json()
    assert ann["team_id"] == "west" and ann["email"] == "ann@example.com"
    assert [spell["team_id"] for spell in ann["team_history"]] == ["east"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("id,name\nx,X\n", 422, "rep_id"),
        ("rep_id,name,shoe_size\nx,X,9\n", 422, "shoe_size"),
        (b"rep_id,name\nx,\xff\n", 400, "UTF-8"),
        ("rep_id,name\nx,X,extra\n", 200, "cells"),
        ("rep_id,name\n,Nameless\n", 200, "rep_id"),
    ],
)
def test_a_csv_that_cannot_be_read_says_what_to_change(admin: httpx.Client, body: Any, status: int, words: str) -> None:
    answer = upload(admin, body, dry_run=True)
    assert answer.status_code == status, answer.text
    text = answer.json()["detail"] if status != 200 else str(answer.json()["errors"])
    assert words in text


def test_reps_in_events_but_not_on_the_roster_are_listed_until_added(stack: Stack, admin: httpx.Client) -> None:
    post_events(stack, activity("console-unknown-1", "zed"))

    def listed() -> list[str]:
        return [r["rep_id"] for r in admin.get("/v1/roster/unknown-reps").json()]

    wait_until(lambda: "zed" in listed(), timeout=30, what="zed listed as not on the roster")
    assert "ana" not in listed()
    admin.put("/v1/reps/zed", json={"name": "zed"}).raise_for_status()
    wait_until(lambda: "zed" not in listed(), timeout=10, what="zed no longer listed")


# --- a board before it is saved ---------------------------------------------------------------------------------


def test_a_draft_board_is_previewed_on_live_numbers_without_being_saved(stack: Stack, admin: httpx.Client) -> None:
    admin.put("/v1/reps/bo", json={"name": "Bo", "team_id": "west"}).raise_for_status()
    post_events(stack, activity("console-preview-1", "bo"), activity("console-preview-2", "bo"))
    draft = {"board_id": "draft", "title": "West calls", "metric": "activities", "period": "day",
             "scope": {"teams": ["west"]}}

    def bo_counted() -> dict[str, Any] | None:
        answer = admin.post("/v1/boards/preview", json=draft)
        assert answer.status_code == 200, answer.text
        entries = {e["rep_id"]: e for e in answer.json()["entries"]}
        return answer.json() if entries.get("bo", {}).get("value") == 2 else None

    standings = wait_until(bo_counted, timeout=30, what="bo's two calls in the preview")
    assert standings["title"] == "West calls" and "ana" not in {e["rep_id"] for e in standings["entries"]}
    assert admin.get("/v1/boards/draft").status_code == 404
    invalid = admin.post("/v1/boards/preview", json={**draft, "window": {"starts_at": "2026-12-01T00:00:00Z",
                                                                           "ends_at": "2026-12-02T00:00:00Z"}})
    assert invalid.status_code == 422 and "exactly one of period" in invalid.json()["detail"]
    no_plan = admin.post("/v1/boards/preview", json={**draft, "plan_id": "ghost"})
    assert no_plan.status_code == 422 and "ghost" in no_plan.json()["detail"]


# --- health at a glance -----------------------------------------------------------------------------------------


def test_the_overview_counts_events_per_source_today_and_names_the_last(stack: Stack, admin: httpx.Client) -> None:
    # Sources of this test's own (other tests' events are counted within a second of their publication too).
    before = admin.get("/v1/overview").json()
    post_events(stack, activity("console-src-1", "ana", "sheet"), activity("console-src-2", "ana", "sheet"),
                activity("console-src-3", "ana", "zoho"), activity("console-src-4", "ana"))

    def moved() -> dict[str, Any] | None:
        now = admin.get("/v1/overview").json()
        by_source = {s["source"]: s["events_today"] for s in now["sources"]}
        counted = (by_source.get("sheet"), by_source.get("zoho"), "api" in by_source)
        return now if counted == (2, 1, True) else None

    overview = wait_until(moved, timeout=30, what="four events counted by source")
    by_source = {s["source"]: s for s in overview["sources"]}
    assert by_source["zoho"]["last_event_id"] == "console-src-3"
    assert overview["events_today"] >= before["events_today"] + 4
    assert overview["today"] == TEST_CLOCK.now().date().isoformat()  # the services' clock, not the machine's
    assert overview["pipeline"]["caught_up"] is True
    assert overview["notifications"]["failed"] == 0
    assert set(overview["links"]) >= {"ready", "connectors", "notifications"}


def test_a_replay_of_the_ledger_counts_no_event_twice(stack: Stack, admin: httpx.Client) -> None:
    """`salespulse replay` republishes the ledger; the per-source counts stay what they were (docs/console.md)."""
    post_events(stack, activity("console-replay-1", "ana", "csv"))

    def settled() -> dict[str, Any] | None:
        overview = admin.get("/v1/overview").json()
        csv = next((s for s in overview["sources"] if s["source"] == "csv"), None)
        done = overview["pipeline"]["waiting_to_publish"] == 0 and csv and csv["last_event_id"] == "console-replay-1"
        return overview if done else None

    before = wait_until(settled, timeout=30, what="the event counted")
    replayed = subprocess.run([sys.executable, "-m", "services.cli.main", "replay", "--from-seq", "1"],
                              env=stack.env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    # The replay moved the relay's cursor back to the start before it returned: nothing waiting means the whole
    # ledger went out again.
    after = wait_until(settled, timeout=60, what="the ledger republished")
    assert after["events_today"] == before["events_today"]
    assert {s["source"]: s["events_today"] for s in after["sources"]} == {
        s["source"]: s["events_today"] for s in before["sources"]}

