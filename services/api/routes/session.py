"""Screen sessions: a screen opened with `?token=<key>` trades the key for a short-lived cookie on its first
load and drops the key from the address bar, so the key stops showing on the TV, in the browser's history and
in whatever logs a URL passes through. The cookie is HttpOnly (page scripts cannot read it), SameSite=Strict
(other sites' pages cannot send it) and read-only: the gateway accepts it for reads and WebSockets only
(services/common/deps.py), and the session it names can read what its key can, never change anything.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from services.api.deps import GatewayDep
from services.common.auth import (
    READERS,
    ROLES,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Principal,
    bearer_token,
    create_session,
)
from services.common.deps import require
from services.common.problems import KEYED, problem_responses
from services.common.ratelimit import authorize_key

router = APIRouter(prefix="/v1")
AnyKey = Annotated[Principal, require(*ROLES)]


@router.post(
    "/session",
    summary="Trade a key (Bearer) or a screen session cookie for a new session cookie",
    responses=problem_responses(*KEYED),
)
async def open_session(
    request: Request, response: Response, gw: GatewayDep, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    token = bearer_token(authorization) or request.cookies.get(SESSION_COOKIE)
    who = await authorize_key(request, token, READERS)
    key, expires_at = await create_session(gw.sessions, who)
    response.set_cookie(
        SESSION_COOKIE,
        key,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        expires=expires_at,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    role = "viewer" if who.role == "admin" else who.role
    return {"role": role, "scope": who.scope.describe(role), "expires_at": expires_at.isoformat()}


__all__ = ["router"]


@router.get("/whoami", summary="The calling key's role and scope (never the key)", responses=problem_responses(*KEYED))
async def whoami(who: AnyKey) -> dict[str, Any]:
    """What a page needs to know before it offers an action: an editor asks whether its key may write."""
    return {"key_id": who.key_id, "name": who.name, "role": who.role,
            "scope": who.scope.describe(who.role), "expires_at": who.expires_at.isoformat() if who.expires_at else None}
