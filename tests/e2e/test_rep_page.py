"""A rep's own page in headless Chromium: every plan's attainment, tier, gap, payout, rewards, pace, forecast and
ladder; KPIs; notifications; live updates; a phone-sized screen."""

from __future__ import annotations

import calendar
import time
from typing import Any

import httpx
import pytest

from tests.e2e.floor import FLOOR_CLOCK, post, won
from tests.e2e.screens import format_on_page, report, screen_url, wait_ready
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

# Text is read node by node (not innerText), so what a test sees does not depend on the style sheet's timing.
CARD_JS = """card => {
    const parts = (el, glue) => [...el.childNodes].map(n => n.textContent.trim()).filter(Boolean).join(glue);
    return {
        attainment: card.querySelector('.attainment').textContent,
        tier: card.querySelector('.tier-badge').textContent,
        gap: card.querySelector('.gap').textContent,
        period: card.querySelector('.plan-period').textContent.replace(/[\\u2009\\u202f]/g, ' '),
        facts: Object.fromEntries([...card.querySelectorAll('.facts > div')].map(
            d => [d.querySelector('dt').textContent, parts(d.querySelector('dd'), ' | ')])),
        rewards: card.querySelector('.rewards').textContent,
        ladder: [...card.querySelectorAll('.ladder tbody tr')].map(
            tr => [tr.className.trim(), ...[...tr.children].map(td => parts(td, ' '))]),
    };
}"""


def card(page: Any, plan_id: str) -> dict[str, Any]:
    return page.eval_on_selector(f".plan[data-plan-id='{plan_id}']", CARD_JS)  # type: ignore[no-any-return]


def progress(stack: Stack, rep: str) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{stack.api}/v1/reps/{rep}/progress", headers=stack.headers, timeout=10)
    response.raise_for_status()
    return {p["plan_id"]: p for p in response.json()["plans"]}


def pace_words(pace: float | None) -> str:
    return "too early to tell" if pace is None else "ahead of pace" if pace >= 1 else "behind pace"


def this_month() -> str:
    today = FLOOR_CLOCK.now().date()
    last = calendar.monthrange(today.year, today.month)[1]
    return f"{today:%B %Y} · {today:%b} 1 – {last}, {today.year}"


def test_rep_page_shows_attainment_tier_gap_payout_pace_and_the_whole_ladder(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/rep/ada"))
    wait_ready(page)
    assert page.text_content("#rep-name") == "Ada Lovelace"
    assert page.text_content("#rep-team") == "Team East Coast"
    expected = progress(floor, "ada")

    revenue = card(page, "ae-revenue")
    assert (revenue["attainment"], revenue["tier"], revenue["gap"]) == ("80%", "Base", "$2,000 to Target")
    assert revenue["period"] == this_month()
    assert revenue["facts"]["So far"] == "$8,000"
    assert revenue["facts"]["Payout"] == "$400.00 | so far"
    assert revenue["facts"]["Pace"].endswith(pace_words(expected["ae-revenue"]["pace"]))
    forecast = format_on_page(page, "formatPercent", expected["ae-revenue"]["forecast_attainment"])
    assert revenue["facts"]["Forecast"].startswith(forecast)
    assert "No rewards reached yet. Next: Shout-out at the all-hands at Target." in revenue["rewards"]
    assert revenue["ladder"] == [
        ["reached current", "Base", "0% $0", "5%", "—"],
        ["", "Target", "100% $10,000", "8%", "Shout-out at the all-hands"],
        ["", "Accelerator", "125% $12,500", "12%", "1 extra day of PTO"],
    ]

    calls = card(page, "call-spiff")
    assert (calls["attainment"], calls["tier"], calls["gap"]) == ("60%", "On track", "8 activities to Gold")
    assert calls["facts"]["Payout"] == "— | rewards only"
    assert calls["ladder"] == [
        ["reached current", "On track", "50% 10 activities", "—"],
        ["", "Gold", "100% 20 activities", "Golden headset"],
    ]


def test_rewards_reached_and_the_top_tier(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/rep/cy"))
    wait_ready(page)
    cyrus = card(page, "ae-revenue")
    # 10,000 × 5 % + 1,000 × 8 %
    assert (cyrus["tier"], cyrus["gap"], cyrus["facts"]["Payout"]) == (
        "Target", "$1,500 to Accelerator", "$580.00 | so far",
    )
    assert "Rewards reached" in cyrus["rewards"] and "Shout-out at the all-hands" in cyrus["rewards"]

    page.goto(screen_url(floor, "/screens/rep/dee"))
    wait_ready(page)
    dee = card(page, "ae-revenue")
    # 10,000 × 5 % + 2,500 × 8 % + 500 × 12 %
    assert (dee["attainment"], dee["tier"], dee["gap"], dee["facts"]["Payout"]) == (
        "130%", "Accelerator", "Top tier reached", "$760.00 | so far",
    )
    assert "Shout-out at the all-hands" in dee["rewards"] and "1 extra day of PTO" in dee["rewards"]
    assert [row[0] for row in dee["ladder"]] == ["reached", "reached", "reached current"]


def test_rep_page_shows_kpis_and_notifications_or_an_empty_list(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/rep/ada"))
    wait_ready(page)
    page.wait_for_selector(".kpi-table")
    month = page.eval_on_selector_all(
        ".kpi-table tbody tr",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.metric, r.children[3].textContent]))",
    )
    assert month["revenue"] == "$8,000" and month["activities"] == "12" and month["deals_won"] == "1"
    page.wait_for_selector("#notifications[data-available]")
    available = page.get_attribute("#notifications", "data-available") == "true"
    listed = page.inner_text("#notifications")
    if not available:  # GET /v1/notifications comes with the notifier: until then the list is simply empty
        assert listed.startswith("No notifications yet")
    assert "error" not in listed.lower()


def test_rep_page_follows_a_new_win_live(floor: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(floor, "/screens/rep/pam"))
    wait_ready(page)
    page.wait_for_selector("#status[data-state='live']")
    before = progress(floor, "pam")["ae-revenue"]
    want = f"{(before['value'] + 2500) / before['quota']:.0%}"
    started = time.time()
    post(floor, [won("pam", "2500.00")])
    seen_at = page.wait_for_function(
        """want => document.querySelector(".plan[data-plan-id='ae-revenue'] .attainment")?.textContent === want
                   ? Date.now() : false""",
        arg=want,
        polling="raf",
        timeout=10_000,
    ).json_value()
    report("rep page: POST /v1/events → attainment on screen", f"{seen_at - started * 1000:.0f} ms")


def test_rep_page_fits_a_phone(floor: Stack, open_page: Any) -> None:
    page = open_page(width=390, height=844)
    page.goto(screen_url(floor, "/screens/rep/dee"))
    wait_ready(page)
    page.wait_for_selector(".kpi-table")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll('.card, .ladder-wrap, .kpi-wrap')]
                  .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className)"""
    )
    assert overflowing == []
    assert page.is_visible(".plan[data-plan-id='ae-revenue'] .attainment")
    font = page.eval_on_selector(".plan .attainment", "e => parseFloat(getComputedStyle(e).fontSize)")
    assert font >= 40
