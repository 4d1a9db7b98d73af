"""Helpers for tests that open screens: their URLs, waiting until a page shows its data, measured figures."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from tests.support.figures import record
from tests.support.stack import Stack

__all__ = ["format_on_page", "report", "screen_url", "wait_ready"]


def report(what: str, figure: str) -> None:
    """A figure a screen test measured, printed at the end of the run: timings are reported, never asserted."""
    record("screens: measured", f"{what}: {figure}")


def screen_url(stack: Stack, path: str, **query: str) -> str:
    """A screen's URL with the stack's key in ?token=, as a TV or a phone opens it."""
    return f"{stack.api}{path}?{urlencode({**query, 'token': stack.admin_key})}"


def wait_ready(page: Any, timeout_ms: float = 15_000) -> None:
    """Wait until the page has drawn its data (each screen sets body[data-ready] then)."""
    page.wait_for_selector("body[data-ready='1']", timeout=timeout_ms)


def format_on_page(page: Any, formatter: str, *args: Any) -> str:
    """What the screens' own formatter (`formatPercent`, `formatMoney`, ... in common.js) makes of `args` on
    this page: tests compare text with the very formatter the page uses, never with a copy of it."""
    script = f"async args => (await import('/screens/static/common.js')).{formatter}(...args)"
    return str(page.evaluate(script, list(args)))
