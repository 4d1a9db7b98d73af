"""The statement page in headless Chromium: reached from the rep's page, it shows the summary the API gives and
one table row per line, each with its ledger events; printable without the page's controls. The rep page also
shows what each plan would pay if the rep's open deals closed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.screens import format_on_page, screen_url, wait_ready
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_the_rep_page_links_to_a_statement_that_shows_its_lines(floor: Stack, open_page: Any) -> None:
    listed = httpx.get(f"{floor.api}/v1/reps/ada/statements", headers=floor.headers, timeout=30).json()["statements"]
    assert listed, "ada has a plan, so she has an open statement"
    first = listed[0]
    statement = httpx.get(f"{floor.api}/v1/statements/{first['statement_id']}", headers=floor.headers,
                          timeout=30).json()

    page = open_page()
    page.goto(screen_url(floor, "/screens/rep/ada"))
    wait_ready(page)
    page.wait_for_selector("#statements[data-ready='1'] a", timeout=15_000)
    page.wait_for_selector("#projection[data-ready='1']", timeout=15_000)
    projection = httpx.get(f"{floor.api}/v1/reps/ada/projection", headers=floor.headers, timeout=30).json()["plans"]
    shown = page.eval_on_selector_all("#projection li", "rows => rows.map(r => [r.dataset.planId, "
                                      "r.querySelector('.projected-payout').textContent])")
    assert [plan_id for plan_id, _ in shown] == [p["plan_id"] for p in projection]
    for (_, text), plan in zip(shown, projection, strict=True):
        assert text == (format_on_page(page, "formatMoney", float(plan["now"]["payout"])) + " → "
                        + format_on_page(page, "formatMoney", float(plan["if_pipeline_closes"]["payout"])))
    links = page.eval_on_selector_all("#statements a", "links => links.map(a => a.getAttribute('href'))")
    assert any(first["statement_id"] in href for href in links)
    page.click(f"#statements a[href*='{first['statement_id']}']")
    wait_ready(page)
    assert "/screens/statement/" in page.url and "token=" not in page.url  # the key left the address bar

    summary = dict(zip(page.eval_on_selector_all("#summary dt", "n => n.map(x => x.textContent)"),
                       page.eval_on_selector_all("#summary dd", "n => n.map(x => x.textContent)"), strict=True))
    assert summary["Payout for the period"] == format_on_page(page, "formatMoney", float(statement["payout"]))
    assert summary["Value"] == format_on_page(page, "formatMetric", statement["metric"], float(statement["value"]))
    rows = page.eval_on_selector_all("#lines tbody tr", "rows => rows.map(r => r.children.length)")
    assert len(rows) == max(1, len(statement["lines"]))
    if statement["lines"]:
        events = page.eval_on_selector_all("#lines td.events", "n => n.map(x => x.textContent)")
        assert statement["lines"][0]["event_ids"][0] in events[0]
    page.emulate_media(media="print")
    assert page.eval_on_selector("#csv", "a => getComputedStyle(a).display") == "none"
