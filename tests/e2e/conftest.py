"""Fixtures for the screens in a real browser: Debian's headless Chromium through Playwright, and a whole
stack (ingest, scoring, api) seeded with a small sales floor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import chromium_path, launch, new_page
from tests.e2e.floor import FLOOR_CLOCK, seed_floor
from tests.support.stack import Stack, sqlite_stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module. Not per session: Playwright's sync API keeps an event loop running on
    this thread while it is open, and later suites call asyncio.run()."""
    if chromium_path() is None:
        pytest.fail("Chromium is not installed: run `python -m tests.setup_tools` (make test does) to apt-get it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


class PageProblems:
    """Script errors and Content-Security-Policy refusals a page reported (network errors are not problems:
    a screen meets them whenever the gateway restarts, and GET /v1/notifications may not exist yet)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"script error: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.errors.append(f"CSP: {text}")


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """open_page(width=1920, height=1080) → a fresh page; each one must end without script or CSP errors."""
    pages: list[tuple[Any, PageProblems]] = []

    def make(width: int = 1920, height: int = 1080) -> Any:
        page = new_page(browser, width=width, height=height)
        pages.append((page, PageProblems(page)))
        return page

    yield make
    problems = [error for _, watch in pages for error in watch.errors]
    for page, _ in pages:
        page.context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def floor(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack on SQLite seeded with the test floor (tests/e2e/floor.py), shared by the screen tests."""
    stack = sqlite_stack(broker, tmp_path_factory, "e2e", clock=FLOOR_CLOCK)
    try:
        stack.start()
        seed_floor(stack)
        yield stack
    finally:
        stack.stop()

