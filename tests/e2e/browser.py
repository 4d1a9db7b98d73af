"""Debian's Chromium driven by Playwright (never `playwright install`: the system browser is the one we test)."""

from __future__ import annotations

import os
import shutil
from typing import Any

__all__ = ["CHROMIUM", "LAUNCH_ARGS", "chromium_path", "launch", "new_page"]

CHROMIUM = os.environ.get("SALESPULSE_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed (tests/setup_tools.py installs it)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")


def launch(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        raise RuntimeError(f"no Chromium at {CHROMIUM}: run `python -m tests.setup_tools` (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=path, args=LAUNCH_ARGS)


def new_page(browser: Any, *, width: int = 1920, height: int = 1080, scale: float = 1) -> Any:
    """A page in its own context: en-US numbers, UTC clock, the given viewport."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=scale,
        locale="en-US",
        timezone_id="UTC",
        is_mobile=width < 600,
        has_touch=width < 600,
    )
    return context.new_page()
