"""FastAPI dependency aliases for keys and roles, so routes read like prose (`_: AdminKey`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.common.auth import READERS, SESSION_COOKIE, Principal, Role, bearer_token
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
    """The key a request brings: its bearer token, or — for reads only — a screen's session cookie (a cookie is
    sent by the browser on its own, so it never authorizes a change: CSRF has nothing to ride on)."""
    token = bearer_token(authorization)
    if token is None and request.method in ("GET", "HEAD"):
        token = request.cookies.get(SESSION_COOKIE)
    return token


AdminKey = Annotated[Principal, require("admin")]
IngestKey = Annotated[Principal, require("ingest")]
ViewerKey = Annotated[Principal, require("viewer")]
ReaderKey = Annotated[Principal, require(*READERS)]
"""viewer or a scoped reader: the route then checks the scope (services/api/scope.py)."""
AuditKey = Annotated[Principal, require("ingest", "viewer")]
