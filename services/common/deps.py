"""FastAPI dependency aliases for keys and roles, so routes read like prose (`_: AdminKey`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.common.auth import Principal, Role, bearer_token


def require(*roles: Role):  # type: ignore[no-untyped-def]
    """A dependency that admits a key with one of `roles` (admin is always admitted)."""

    async def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
        return await request.app.state.keys.authorize(bearer_token(authorization), roles)

    return Depends(check)


AdminKey = Annotated[Principal, require("admin")]
IngestKey = Annotated[Principal, require("ingest")]
ViewerKey = Annotated[Principal, require("viewer")]
AuditKey = Annotated[Principal, require("ingest", "viewer")]
