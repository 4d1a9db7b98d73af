"""FastAPI dependency aliases for keys and roles, so routes read like prose (`_: AdminKey`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from services.common.auth import (
    CONSOLE_COOKIE,
    CSRF_HEADER,
    READERS,
    SESSION_COOKIE,
    Principal,
    Role,
    bearer_token,
    csrf_token,
)
from services.common.problems import Problem
from services.common.ratelimit import authorize_key


def require(*roles: Role):  # type: ignore[no-untyped-def]
    """A dependency that admits a key with one of `roles` (admin is always admitted), within the app's rate
    limits: unknown keys per client address, then requests per key (services/common/ratelimit.py)."""

    async def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
        principal = await authorize_key(request, request_token(request, authorization), roles)
        limits = getattr(request.app.state, "rate_limits", None)
        if limits is not None:
            limits.check("requests", principal.key_id)
        return principal

    return Depends(check)


def request_token(request: Request, authorization: str | None) -> str | None:
    """The key a request brings: its bearer token; else the console's session cookie (a write only with the
    console's CSRF token beside it); else — for reads only — a screen's session cookie. A cookie is sent by the
    browser on its own, so a cookie alone never authorizes a change: CSRF has nothing to ride on."""
    token = bearer_token(authorization)
    if token is not None:
        return token
    reading = request.method in ("GET", "HEAD")
    console = request.cookies.get(CONSOLE_COOKIE)
    if console:
        if reading:
            return console
        sent = request.headers.get(CSRF_HEADER, "")
        if hmac.compare_digest(sent.encode(), csrf_token(console).encode()):
            return console
        raise Problem(403, f"A change from the console needs its {CSRF_HEADER} header (the console sends it); "
                           "reload the console page, or send the key as 'Authorization: Bearer <key>'.")
    return request.cookies.get(SESSION_COOKIE) if reading else None


AdminKey = Annotated[Principal, require("admin")]
IngestKey = Annotated[Principal, require("ingest")]
ViewerKey = Annotated[Principal, require("viewer")]
ReaderKey = Annotated[Principal, require(*READERS)]
"""viewer or a scoped reader: the route then checks the scope (services/api/scope.py)."""
AuditKey = Annotated[Principal, require("ingest", "viewer")]
