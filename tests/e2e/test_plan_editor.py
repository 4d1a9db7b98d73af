"""The plan editor in headless Chromium: a sales-ops admin changes a tier's rate as a form, sees what the draft
would pay on real history next to the live plan, and publishes it; an invalid draft is refused with the field
to fix; without an admin key the page asks for one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.screens import format_on_page, screen_url, wait_ready
from tests.support.clock import now_stamp
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

PLAN = {
    "plan_id": "monthly", "name": "Monthly revenue", "metric": "revenue", "period": "month",
    "effective_from": "2026-01-01", "quota": 1000,
    "tiers": [{"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.1},
              {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.2}],
}


@pytest.fixture(scope="module")
def shop(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "planeditor").start()
    try:
        httpx.put(f"{stack.api}/v1/plans/monthly", json=PLAN, headers=stack.headers, timeout=10).raise_for_status()
        now = now_stamp(stack.clock)
        event = {"event_id": "won-1", "type": "deal", "occurred_at": now, "deal_id": "X1", "owner_id": "ana",
                 "stage": "won", "amount": "1500", "closed_at": now}
        assert httpx.post(f"{stack.ingest}/v1/events", json=event, headers=stack.headers,
                          timeout=10).status_code == 202
        def scored() -> bool:
            answer = httpx.get(f"{stack.api}/v1/reps/ana/progress", headers=stack.headers, timeout=10)
            return answer.status_code == 200 and answer.json()["plans"][0]["value"] == 1500

        wait_until(scored, timeout=30, what="ana scored")
        yield stack
    finally:
        stack.stop()


def test_change_a_rate_preview_it_on_history_and_publish(shop: Stack, open_page: Any) -> None:
    page = open_page()
    page.goto(screen_url(shop, "/screens/admin/plans", plan="monthly"))
    wait_ready(page)
    assert "token=" not in page.url  # the admin key left the address bar; it lives in the page's memory
    assert page.input_value("#f-quota") == "1000"
    assert page.is_disabled("#publish")  # nothing published without a preview of exactly this draft

    page.fill("#tiers tbody tr:nth-child(2) .t-rate", "30")
    page.click("#preview")
    page.wait_for_selector("#preview-card:not([hidden]) #preview-table tbody tr[data-rep='ana']")
    cells = page.eval_on_selector("#preview-table tbody tr[data-rep='ana']",
                                  "tr => [...tr.children].map(td => td.textContent)")
    assert cells[3] == format_on_page(page, "formatMoney", 200)  # live: 1,000 × 10 % + 500 × 20 %
    assert cells[4] == format_on_page(page, "formatMoney", 250)  # draft: 1,000 × 10 % + 500 × 30 %
    assert cells[5] == format_on_page(page, "formatMoney", 50)
    assert httpx.get(f"{shop.api}/v1/plans/monthly", headers=shop.headers, timeout=10).json()["tiers"][1]["rate"] == 0.2

    assert page.is_enabled("#publish")
    page.click("#publish")
    page.wait_for_function("() => document.querySelector('#message').textContent.startsWith('Published')")
    live = httpx.get(f"{shop.api}/v1/plans/monthly", headers=shop.headers, timeout=10).json()
    assert live["tiers"][1]["rate"] == 0.3 and live["quota"] == 1000

    page.fill("#f-quota", "0")
    assert page.is_disabled("#publish")  # the draft changed since its preview
    page.click("#preview")
    page.wait_for_selector("#problems li")
    assert "quota" in page.text_content("#problems")


def test_without_an_admin_key_the_editor_asks_for_one(shop: Stack, open_page: Any) -> None:
    _, viewer = shop.create_key("viewer", "wall")
    page = open_page(width=390, height=844)
    page.goto(f"{shop.api}/screens/admin/plans")
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#key-input", viewer)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#key-form p').textContent.includes('admin key')")
    assert page.is_hidden("#plan-form")
    page.fill("#key-input", shop.admin_key)
    page.keyboard.press("Enter")
    wait_ready(page)
    assert page.is_visible("#plan-form")
