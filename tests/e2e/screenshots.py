"""`make screens`: screenshots of every screen, taken in headless Chromium from a whole stack fed with the demo
sales floor (services/demo), into docs/screens/*.png.

Run with `python -m tests.e2e.screenshots [--out DIR]`. It starts its own broker and stack on free ports in a
temporary directory and leaves nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from services.demo.floor import live_events, run_floor, seed_config
from tests.e2e.browser import launch, new_page
from tests.e2e.screens import screen_url, wait_ready
from tests.support.stack import ROOT, Stack, free_port, start_broker_process, wait_until

TV = (1920, 1080)
PHONE = (390, 844)
LIVE_EVENTS = 4_000
"""Live events on top of the history, so that today and this week have figures too."""


def log(text: str) -> None:
    print(f"screens: {text}", flush=True)


def start_notifier(stack: Stack) -> None:
    """The notifier, so the rep page lists the tiers reached; the pictures are still taken without it."""
    try:
        stack.start_service("notifier")
        stack.wait_healthy("notifier", "/v1/ready", timeout=60)
    except AssertionError as exc:
        log(f"no notifier ({exc}); the rep page will list no notifications")


def feed_demo_floor(stack: Stack) -> None:
    """The demo's roster, plans and boards, its CRM history, and a burst of live floor events."""
    asyncio.run(seed_config(stack.api, stack.admin_key, clock=stack.clock))
    asyncio.run(run_floor(stack.ingest, stack.admin_key, rate=0, history=True, log=log, clock=stack.clock))
    events = list(itertools.islice(live_events(stack.clock.now(), random.Random(7), clock=stack.clock), LIVE_EVENTS))
    headers = {**stack.headers, "Content-Type": "application/x-ndjson"}
    for start in range(0, len(events), 1_000):
        body = b"\n".join(orjson.dumps(event) for event in events[start : start + 1_000])
        httpx.post(f"{stack.ingest}/v1/events", content=body, headers=headers, timeout=60).raise_for_status()
    log(f"{len(events):,} live events posted")


def call_history(stack: Stack) -> None:
    """Calls over the last four weeks for the streak board: the demo floor's history has deals, not calls, and its
    live calls are all today's. Each rep keeps a habit of their own (most days, some days), drawn at random."""
    rng = random.Random(11)
    today = stack.clock.now().date()
    events = []
    for rep in get(stack, "/v1/reps"):
        habit = rng.choice((0.97, 0.9, 0.8, 0.6, 0.4))
        for back in range(1, 29):
            day = today - timedelta(days=back)
            if day.weekday() >= 5 or rng.random() > habit:
                continue
            for n in range(3):
                at = datetime(day.year, day.month, day.day, 15, 10 * n, tzinfo=UTC).isoformat().replace("+00:00", "Z")
                events.append({"event_id": f"calls-{rep['rep_id']}-{day}-{n}", "type": "activity",
                               "rep_id": rep["rep_id"], "kind": "call", "occurred_at": at})
    body = b"\n".join(orjson.dumps(event) for event in events)
    headers = {**stack.headers, "Content-Type": "application/x-ndjson"}
    httpx.post(f"{stack.ingest}/v1/events", content=body, headers=headers, timeout=60).raise_for_status()
    log(f"{len(events):,} calls of the last four weeks posted")


def get(stack: Stack, path: str) -> Any:
    response = httpx.get(f"{stack.api}{path}", headers=stack.headers, timeout=30)
    response.raise_for_status()
    return response.json()


def wait_settled(stack: Stack) -> None:
    """Until the quarter's standings stop changing: scoring has folded everything posted."""
    last: list[Any] = [None]

    def settled() -> bool:
        now = get(stack, "/v1/boards/floor-quarter/standings")["entries"]
        same = now == last[0] and any(entry["value"] for entry in now)
        last[0] = now
        return same

    wait_until(settled, timeout=180, interval=3.0, what="the demo floor folded into the standings")


def featured_rep(stack: Stack) -> dict[str, Any]:
    """The rep whose page shows the most: the best attainment that still has a tier to go."""
    best: tuple[float, str] | None = None
    for entry in get(stack, "/v1/boards/floor-quarter/standings")["entries"]:
        attainment = entry.get("attainment") or 0
        if attainment < 1.25 and (best is None or attainment > best[0]):
            best = (attainment, entry["rep_id"])
    rep_id = best[1] if best else get(stack, "/v1/reps")[0]["rep_id"]
    return get(stack, f"/v1/reps/{rep_id}")  # type: ignore[no-any-return]


def shoot(page: Any, out: Path, name: str, settle_ms: int = 1_500) -> None:
    page.wait_for_timeout(settle_ms)  # let transitions finish
    path = out / f"{name}.png"
    page.screenshot(path=str(path))
    log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def board_with_a_climb(browser: Any, stack: Stack, out: Path) -> None:
    """The quarter's board just after a rep climbed two places (arrow and highlight)."""
    page = new_page(browser, width=TV[0], height=TV[1])
    page.goto(screen_url(stack, "/screens/board/floor-quarter"))
    wait_ready(page)
    page.wait_for_selector(".entry .progress:not([hidden])")
    page.wait_for_timeout(1_500)
    entries = get(stack, "/v1/boards/floor-quarter/standings")["entries"]
    climber, passed = entries[3], entries[1]
    amount = passed["value"] - climber["value"] + 1_850
    now = stack.clock.now().isoformat().replace("+00:00", "Z")
    event = {"event_id": f"screens-{uuid.uuid4().hex[:10]}", "type": "deal", "occurred_at": now,
             "deal_id": f"screens-{uuid.uuid4().hex[:8]}", "owner_id": climber["rep_id"], "stage": "won",
             "amount": f"{amount:.2f}", "closed_at": now}
    httpx.post(f"{stack.ingest}/v1/events", json=event, headers=stack.headers, timeout=30).raise_for_status()
    page.wait_for_selector(f".entry[data-rep-id='{climber['rep_id']}'][data-rank='2']", timeout=15_000)
    shoot(page, out, "board", settle_ms=900)
    page.context.close()


def board_with_a_socket(browser: Any, stack: Stack, board_id: str) -> tuple[Any, list[Any]]:
    """A TV page of the board whose socket is relayed, so a celebration can be handed to it; the relays."""
    page = new_page(browser, width=TV[0], height=TV[1])
    sockets: list[Any] = []

    def relay(route: Any) -> None:
        route.connect_to_server()
        sockets.append(route)

    page.route_web_socket("**/v1/ws/boards/*", relay)
    page.goto(screen_url(stack, f"/screens/board/{board_id}", celebrate="60"))
    wait_ready(page)
    return page, sockets


def celebration(browser: Any, stack: Stack, out: Path) -> None:
    """The overlay as a board shows it on a tier crossing (the message is handed to the page's socket)."""
    page, sockets = board_with_a_socket(browser, stack, "floor-quarter")
    top = get(stack, "/v1/boards/floor-quarter/standings")["entries"][0]
    reached = top.get("tier") or {"tier_id": "target", "name": "Target", "threshold": 1.0}
    quarter = get(stack, f"/v1/reps/{top['rep_id']}/kpis?period=quarter")["period_key"]
    sockets[-1].send(json.dumps({
        "type": "celebration", "rep_id": top["rep_id"], "name": top["name"], "plan_id": "ae-revenue",
        "period_key": quarter, "tier": reached, "at": stack.clock.now().isoformat(),
    }))
    page.wait_for_selector("#celebration.show")
    shoot(page, out, "celebration", settle_ms=1_800)
    page.context.close()


def badge_celebration(browser: Any, stack: Stack, out: Path) -> None:
    """The overlay of a badge earned, as a board shows it (the message is handed to the page's socket)."""
    page, sockets = board_with_a_socket(browser, stack, "floor")
    top = get(stack, "/v1/boards/floor/standings")["entries"][0]
    month = get(stack, f"/v1/reps/{top['rep_id']}/kpis?period=month")["period_key"]
    badge = next(a for a in get(stack, "/v1/achievements") if a["achievement_id"] == "big-deal")
    sockets[-1].send(json.dumps({
        "type": "celebration", "kind": "achievement", "notification_id": "ac_screens", "rep_id": top["rep_id"],
        "name": top["name"], "period_key": month, "at": stack.clock.now().isoformat(),
        "achievement": {k: badge.get(k) for k in ("achievement_id", "name", "badge", "description")},
    }))
    page.wait_for_selector("#celebration.show")
    shoot(page, out, "badge-celebration", settle_ms=1_800)
    page.context.close()


def badges(browser: Any, stack: Stack, out: Path) -> None:
    """A rep's page at phone width, at its streaks and badges: the rep with the most badges."""
    reps = get(stack, "/v1/reps")
    best = max(reps, key=lambda rep: len(get(stack, f"/v1/reps/{rep['rep_id']}/achievements")["achievements"]))
    page = new_page(browser, width=PHONE[0], height=PHONE[1])
    page.goto(screen_url(stack, f"/screens/rep/{best['rep_id']}"))
    wait_ready(page)
    page.wait_for_selector("#badges li.earned")
    page.locator("#streaks").scroll_into_view_if_needed()
    page.evaluate("() => document.querySelector('#streaks').closest('section').scrollIntoView()")
    shoot(page, out, "badges")
    page.context.close()


def simple(browser: Any, stack: Stack, out: Path, name: str, path: str, size: tuple[int, int], **query: str) -> None:
    page = new_page(browser, width=size[0], height=size[1])
    page.goto(screen_url(stack, path, **query))
    wait_ready(page)
    shoot(page, out, name)
    page.context.close()


def statement(browser: Any, stack: Stack, out: Path, rep: dict[str, Any]) -> str:
    """The featured rep's statement of the revenue plan (or the first plan covering them), that period closed
    early (with force)."""
    listed = get(stack, f"/v1/reps/{rep['rep_id']}/statements")["statements"]
    first = next((s for s in listed if s["plan_id"] == "ae-revenue"), listed[0])
    closed = httpx.post(f"{stack.api}/v1/plans/{first['plan_id']}/periods/{first['period_key']}/close",
                        params={"force": "true"}, headers=stack.headers, timeout=120)
    closed.raise_for_status()
    simple(browser, stack, out, "statement", f"/screens/statement/{first['statement_id']}", TV)
    return str(first["plan_id"])


def plan_editor(browser: Any, stack: Stack, out: Path, plan_id: str) -> None:
    """The plan editor with a draft's preview on history: the top tier's rate raised by two points."""
    page = new_page(browser, width=TV[0], height=1900)
    page.goto(screen_url(stack, "/screens/admin/plans", plan=plan_id))
    wait_ready(page)
    rate = page.locator("#tiers tbody tr:last-child .t-rate")
    rate.fill(str(float(rate.input_value() or 0) + 2))
    page.click("#preview")
    page.wait_for_selector("#preview-card:not([hidden]) #preview-table tbody tr")
    shoot(page, out, "plan-editor", settle_ms=300)
    page.context.close()


def reconnecting(browser: Any, stack: Stack, out: Path) -> None:
    """A board whose gateway went away: last standings dimmed, a banner, and the next try counting down."""
    page = new_page(browser, width=TV[0], height=TV[1])
    page.goto(screen_url(stack, "/screens/board/floor"))
    wait_ready(page)
    page.wait_for_timeout(1_000)
    stack.kill("api")
    page.wait_for_selector(".board[data-connection='reconnecting']", timeout=15_000)
    page.wait_for_function("() => /Reconnecting in [4-9]/.test(document.querySelector('.status').textContent)",
                           timeout=30_000)
    shoot(page, out, "reconnecting", settle_ms=200)
    page.context.close()


def console(browser: Any, stack: Stack, out: Path) -> None:
    """The sales-ops console: health, the roster with a CSV's preview (a bad row reported), a board's editor with
    its preview, a TV key just created (address and QR code), and the roster at phone width."""
    page = new_page(browser, width=TV[0], height=1200)
    page.goto(screen_url(stack, "/console/"))
    wait_ready(page)
    page.wait_for_function("() => document.querySelector('#events-today').textContent !== '–'")
    shoot(page, out, "console-health", settle_ms=300)
    page.goto(f"{stack.api}/console/roster")
    wait_ready(page)
    reps = "rep_id,name,team_id,email\nnew-rep,Nia Newman,east,nia@example.com\nother,Oli Other,nowhere,\n"
    page.set_input_files("#csv-file", files=[{"name": "reps.csv", "mimeType": "text/csv", "buffer": reps.encode()}])
    page.click("#csv-check")
    page.wait_for_selector("#csv-problems li")
    page.evaluate("() => document.querySelector('#csv-form').closest('section').scrollIntoView()")
    shoot(page, out, "console-roster", settle_ms=300)
    page.goto(f"{stack.api}/console/boards")
    wait_ready(page)
    page.click("#boards tr[data-board='floor'] button")
    page.wait_for_selector("#preview tbody tr")
    page.evaluate("() => document.querySelector('.board-editor').scrollIntoView()")
    shoot(page, out, "console-boards", settle_ms=300)
    page.goto(f"{stack.api}/console/keys?role=screen&boards=floor&name=Lobby%20TV")
    wait_ready(page)
    page.click("#key-create button[type=submit]")
    page.wait_for_selector("#created:not([hidden])")
    shoot(page, out, "console-keys", settle_ms=300)
    page.context.close()
    phone = new_page(browser, width=PHONE[0], height=PHONE[1])
    phone.goto(screen_url(stack, "/console/roster"))
    wait_ready(phone)
    shoot(phone, out, "console-phone", settle_ms=300)
    phone.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="salespulse-screens-") as tmp:
        port = free_port()
        broker = start_broker_process(port)
        stack = Stack(
            bootstrap=f"127.0.0.1:{port}",
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'screens.db'}",
            data_dir=Path(tmp) / "data",
            topic_prefix="screens.",
            admin_key="sp_screens_" + secrets.token_hex(8),
            extra_env={"SALESPULSE_NOTIFY_DIGEST_SCHEDULE": "off"},
        )
        try:
            log("starting a stack")
            stack.start()
            start_notifier(stack)
            feed_demo_floor(stack)
            call_history(stack)
            wait_settled(stack)
            with sync_playwright() as playwright:
                browser = launch(playwright)
                try:
                    board_with_a_climb(browser, stack, out)
                    rep = featured_rep(stack)
                    simple(browser, stack, out, "rotate", "/screens/rotate", TV,
                           boards="activity-spiff,floor,call-blitz", every="60")
                    celebration(browser, stack, out)
                    badge_celebration(browser, stack, out)
                    badges(browser, stack, out)
                    simple(browser, stack, out, "battle", "/screens/board/battle-east-west", TV)
                    simple(browser, stack, out, "streaks", "/screens/streaks/calls", TV)
                    simple(browser, stack, out, "rep", f"/screens/rep/{rep['rep_id']}", TV)
                    simple(browser, stack, out, "rep-phone", f"/screens/rep/{rep['rep_id']}", PHONE)
                    plan_editor(browser, stack, out, statement(browser, stack, out, rep))
                    simple(browser, stack, out, "team", f"/screens/team/{rep['team_id']}", TV, plan="ae-revenue")
                    simple(browser, stack, out, "index", "/screens/", TV)
                    console(browser, stack, out)
                    reconnecting(browser, stack, out)
                finally:
                    browser.close()
        finally:
            stack.stop()
            broker.terminate()
            broker.wait(timeout=10)
    log(f"done in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
