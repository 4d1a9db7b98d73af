"""Who may open a WebSocket: a page from an allowed origin, within its address's budget of connection attempts,
holding a key with the role. The first two are refused in the handshake itself (HTTP 403 or 429, nothing is
opened); a key problem is told on an accepted socket closed with 4401/4403 and a reason, because a browser
cannot read the body of a refused handshake and a screen should say what is wrong with its key."""

from __future__ import annotations

from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter
from starlette.websockets import WebSocket

from services.common.auth import SESSION_COOKIE, Principal, Role, bearer_token, hash_key
from services.common.problems import Problem, problem_response
from services.common.ratelimit import RateLimits, authorize_key, client_address

__all__ = ["OriginPolicy", "admit"]


class OriginPolicy:
    """SALESPULSE_WS_ALLOWED_ORIGINS: empty = pages of the gateway's own host name, `*` = any page, otherwise a
    comma-separated list of origins (`https://tv.example.com`) allowed besides the gateway's own host.

    A request without an Origin header is not from a browser page (a script, a bench, a native client) and is
    admitted: the origin check guards browsers against other sites' pages, and every socket needs a key anyway.
    The own host is compared by host name, not port, because proxies such as the bundled nginx pass
    `Host: $host` without the port the browser used.
    """

    def __init__(self, setting: str, registry: CollectorRegistry) -> None:
        entries = [entry.strip().rstrip("/").lower() for entry in setting.split(",") if entry.strip()]
        self.any = "*" in entries
        self.listed = frozenset(entry for entry in entries if entry != "*")
        self.refused = Counter(
            "salespulse_ws_origin_refused_total",
            "WebSocket handshakes refused because the page's Origin is not allowed",
            registry=registry,
        )

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self.any:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin in self.listed:
            return True
        own = urlsplit(f"//{host or ''}").hostname
        return own is not None and urlsplit(origin).hostname == own


async def _refuse_handshake(ws: WebSocket, problem: Problem) -> None:
    """Answer the upgrade request with a problem document instead of opening the socket."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(
            problem_response(problem.status, problem.detail, headers=problem.headers)
        )
    else:  # a server without the denial extension answers a close before accept with a bare 403
        await ws.close(code=1008, reason=problem.detail[:120])


async def admit(ws: WebSocket, roles: tuple[Role, ...]) -> tuple[Principal, str] | None:
    """The key's holder and hash when `ws` may be opened; otherwise the socket is refused or closed with a
    reason."""
    origins: OriginPolicy | None = getattr(ws.app.state, "origins", None)
    origin = ws.headers.get("origin")
    if origins is not None and not origins.allows(origin, ws.headers.get("host")):
        origins.refused.inc()
        await _refuse_handshake(
            ws,
            Problem(
                403,
                f"Pages from {(origin or '(no origin)')[:100]} may not open salespulse WebSockets. "
                "Add the origin to SALESPULSE_WS_ALLOWED_ORIGINS (comma-separated) to allow it.",
            ),
        )
        return None
    token = (
        ws.query_params.get("token") or bearer_token(ws.headers.get("authorization")) or ws.cookies.get(SESSION_COOKIE)
    )
    limits: RateLimits | None = getattr(ws.app.state, "rate_limits", None)
    try:
        if limits is not None:
            limits.check("ws_connects", client_address(ws))
        principal = await authorize_key(ws, token, roles)
    except Problem as exc:
        if exc.status == 429:
            await _refuse_handshake(ws, exc)
            return None
        await ws.accept()
        await ws.close(code=4401 if exc.status == 401 else 4403, reason=exc.detail[:120])
        return None
    return principal, hash_key(token or "")
