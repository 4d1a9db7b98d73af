"""The manager's team page in headless Chromium: team KPIs, reps ordered by pace with those behind marked, and a
chart of the period so far built from a reasonable number of requests."""

from __future__ import annotations

import calendar
from typing import Any

import httpx
import pytest

from tests.e2e.floor import FLOOR_CLOCK, REPS, post, won
from tests.e2e.screens import report, screen_url, wait_ready
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

TABLE_JS = """rows => rows.map(tr => ({
    rep: tr.dataset.repId,
    name: tr.querySelector('td a').textContent,
    behind: tr.classList.contains('behind-pace'),
    flag: tr.querySelector('.flag')?.textContent || '',
    cells: [...tr.children].map(td => td.innerText.trim()),
}))"""


def tiles(page: Any) -> dict[str, str]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        "#tiles .tile", "ts => Object.fromEntries(ts.map(t => [t.dataset.metric, t.querySelector('dd').textContent]))"
    )


def test_team_page_shows_the_teams_kpis_and_its_reps_by_pace(floor: Stack, open_page: Any) -> None:
    page = open_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(screen_url(floor, "/screens/team/east"))
    wait_ready(page)

    assert page.text_content("#team-name") == "East Coast"
    assert page.text_content("#team-sub") == "Manager: Ada Lovelace · 4 reps"
    shown = tiles(page)
    assert (shown["revenue"], shown["deals_won"], shown["activities"], shown["win_rate"]) == (
        "$23,500", "4", "16", "100%",
    )
    assert shown["retention_rate"] == "—"

    paces = {}
    for rep in ("ada", "bob", "cy", "eve"):
        plans = httpx.get(f"{floor.api}/v1/reps/{rep}/progress", headers=floor.headers, timeout=10).json()["plans"]
        paces[rep] = next(p for p in plans if p["plan_id"] == "ae-revenue")
    rows = page.eval_on_selector_all("#reps tbody tr[data-rep-id]", TABLE_JS)
    by_pace = sorted(paces, key=lambda rep: (-(paces[rep]["pace"] if paces[rep]["pace"] is not None else -1),
                                              -paces[rep]["attainment"]))
    assert [r["rep"] for r in rows] == by_pace
    for row in rows:
        pace = paces[row["rep"]]["pace"]
        behind = pace is not None and pace < 1
        assert row["behind"] is behind and (row["flag"] == "Behind pace") is behind
    cyrus = next(r for r in rows if r["rep"] == "cy")
    assert cyrus["cells"][1:3] == ["110%", "Target"] and cyrus["cells"][5:] == ["$11,000", "$1,500 to Accelerator"]
    if any(p["pace"] is not None and p["pace"] < 1 for p in paces.values()):
        assert page.is_visible("#reps tr.pace-line")

    chart = page.eval_on_selector(
        ".chart[data-metric='revenue']",
        """c => ({
            total: c.querySelector('.total').textContent,
            line: c.querySelector('path.chart-line')?.getAttribute('d'),
            bars: c.querySelectorAll('rect.chart-bar').length,
            today: c.querySelectorAll('rect.chart-bar.today').length,
            labels: [...c.querySelectorAll('text')].map(t => t.textContent),
        })""",
    )
    today = FLOOR_CLOCK.now().date()
    assert chart["total"] == "$23,500" and chart["line"].startswith("M")
    assert chart["bars"] == today.day and chart["today"] == 1
    assert chart["labels"][0] == "1" and chart["labels"][-1] == str(calendar.monthrange(today.year, today.month)[1])

    api_calls = [url for url in requests if "/v1/" in url]
    report("team page: REST requests to draw a month", f"{len(api_calls)} (plus one rep socket per member)")
    assert len(api_calls) <= today.day + 5  # one team-KPI request per day so far, plus team, reps, plans, KPIs


def test_team_page_lists_a_period_and_plan_chosen_in_its_url(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/team/east", period="quarter", plan="call-spiff"))
    wait_ready(page)
    assert page.text_content(".period-tabs a.current") == "Quarter"
    assert page.text_content(".plan-tabs a.current") == "Call SPIFF"
    rows = page.eval_on_selector_all("#reps tbody tr[data-rep-id]", TABLE_JS)
    assert rows[0]["rep"] == "ada" and rows[0]["cells"][1].startswith("60%")
    quarter_labels = page.eval_on_selector_all(".chart[data-metric='revenue'] text", "ts => ts.length")
    assert quarter_labels == 3  # the first, middle and last of the quarter's three months


def test_team_page_follows_its_reps_live(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/team/north"))
    wait_ready(page)
    page.wait_for_selector("#status[data-state='live']")
    members = {r["rep_id"] for r in REPS if r["team_id"] == "north"}
    listed = page.eval_on_selector_all("#reps tbody tr[data-rep-id]", "rs => rs.map(r => r.dataset.repId)")
    assert set(listed) == members
    before = httpx.get(f"{floor.api}/v1/teams/north/kpis?period=month", headers=floor.headers, timeout=10).json()
    want = f"${before['kpis']['revenue'] + 7000:,.0f}"
    post(floor, [won("oli", "7000.00")])
    page.wait_for_function(
        "want => document.querySelector(\"#tiles .tile[data-metric='revenue'] dd\")?.textContent === want",
        arg=want,
        timeout=15_000,
    )
    assert page.text_content(".chart[data-metric='revenue'] .total") == want  # drawn together with the tiles
