"""Web screens: the sales-floor TV board (and a rotation of boards), a rep's own progress page and a manager's
team page. Static HTML, CSS and JavaScript under a strict Content-Security-Policy; the data comes from /v1,
with the API key taken from the page's own `?token=` (see docs/screens.md)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from services.common.problems import Problem
from services.common.settings import Settings, get_settings

__all__ = ["STATIC_DIR", "console_router", "router", "security_headers"]

STATIC_DIR: Final = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(prefix="/screens", include_in_schema=False)

_MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".wav": "audio/wav",
}
_ASSET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]*\.(js|css|svg|wav)")
# A Host header is echoed into connect-src only when it looks like host[:port]; anything else gets 'self' alone.
_HOST: Final = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def security_headers(request: Request) -> dict[str, str]:
    """Headers every screen response carries: scripts, styles and connections from this origin only."""
    connect = ["'self'"]
    host = request.headers.get("host", "")
    if _HOST.fullmatch(host):
        # 'self' covers ws:// and wss:// only in CSP Level 3 browsers; naming them explicitly covers the rest.
        connect += [f"ws://{host}", f"wss://{host}"]
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "media-src 'self'",  # the TV board's celebration sound
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }


def _settings(request: Request) -> Settings:
    gateway = getattr(request.app.state, "gateway", None)
    return gateway.settings if gateway is not None else get_settings()


@dataclass(frozen=True)
class ScreenPage:
    """One screen: the body of its page (static/<page>.html, inside the shell static/page.html), its script,
    the words of its tab title, the class of its <body>, and what the route says it shows."""

    page: str
    title: str
    body_class: str
    summary: str


SCREENS: Final = {
    "/": ScreenPage("index", "screens", "app", "Index of boards, teams and reps"),
    "/board/{board_id}": ScreenPage("board", "leaderboard", "tv", "The sales-floor TV board"),
    "/rotate": ScreenPage("board", "leaderboard", "tv", "Several boards in turn: ?boards=a,b,c&every=20"),
    "/streaks/{streak_id}": ScreenPage("streaks", "streaks", "tv", "A streak's board: current and longest streaks"),
    "/rep/{rep_id}": ScreenPage("rep", "my progress", "app rep-page", "A rep's own progress page"),
    "/team/{team_id}": ScreenPage("team", "team", "app team-page", "A manager's team page"),
    "/statement/{statement_id}": ScreenPage("statement", "statement", "app statement", "A printable statement"),
    "/admin/plans": ScreenPage("plans", "plan editor", "app admin", "The plan editor (admin key)"),
}
"""Every screen by path; the page's script reads the ids from the path."""

CONSOLE: Final = {
    "/": ScreenPage("console", "console", "app console", "The sales-ops console: health at a glance"),
    "/roster": ScreenPage("console-roster", "roster", "app console", "The console: reps and teams, CSV upload"),
    "/boards": ScreenPage("console-boards", "boards", "app console",
                          "The console: boards and contests with a preview, TV rotations"),
    "/keys": ScreenPage("console-keys", "keys", "app console", "The console: keys for TVs, reps and managers"),
}
"""The sales-ops console's pages (under /console), served like the screens and behind an admin session."""


def _page(request: Request, screen: ScreenPage) -> Response:
    """The screen's HTML: the shell with its body, and the business calendar filled in (periods are turned
    into dates in the browser)."""
    settings = _settings(request)
    clock = settings.clock
    calendar = {
        "timezone": settings.timezone,
        "fiscal_year_start_month": settings.fiscal_year_start_month,
        "currency": settings.currency,
        # The gateway's clock (services/common/clock.py): screens tell the time by it, not by the device's.
        "now_ms": clock.now_ms(),
        "clock_frozen": clock.frozen,
    }
    text = _SHELL
    for name, value in (("calendar", html.escape(json.dumps(calendar), quote=True)), ("title", screen.title),
                        ("script", f"{screen.page}.js"), ("body_class", screen.body_class),
                        ("body", _BODIES[screen.page])):
        text = text.replace("{{" + name + "}}", value)
    headers = security_headers(request) | {"Cache-Control": "no-store"}
    return Response(text, media_type="text/html; charset=utf-8", headers=headers)


_SHELL: Final = (STATIC_DIR / "page.html").read_text(encoding="utf-8")
_BODIES: Final = {s.page: (STATIC_DIR / f"{s.page}.html").read_text(encoding="utf-8")
                  for s in (*SCREENS.values(), *CONSOLE.values())}


def _serves(screen: ScreenPage) -> Callable[[Request], Awaitable[Response]]:
    async def page(request: Request) -> Response:
        return _page(request, screen)

    return page


for _path, _screen in SCREENS.items():
    _route = "screen_" + (_path.strip("/").split("/")[0] or "index")
    router.add_api_route(_path, _serves(_screen), methods=["GET"], summary=_screen.summary, name=_route)

console_router = APIRouter(prefix="/console", include_in_schema=False)
for _path, _screen in CONSOLE.items():
    _route = "console_" + (_path.strip("/") or "home")
    console_router.add_api_route(_path, _serves(_screen), methods=["GET"], summary=_screen.summary, name=_route)


@router.get("/static/{name}", summary="Script, style sheet or icon of the screens")
async def asset(request: Request, name: str) -> Response:
    path = STATIC_DIR / name
    if not _ASSET_NAME.fullmatch(name) or not path.is_file():
        raise Problem(404, f"No screen asset {name!r}.")
    headers = security_headers(request) | {"Cache-Control": "no-cache"}
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)
