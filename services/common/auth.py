"""API keys and roles: keys are stored as SHA-256 hashes and checked on every request."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.db import Sessions
from services.common.models import ApiKey
from services.common.problems import Problem
from services.common.settings import Settings

Role = Literal["admin", "ingest", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "ingest", "viewer")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sp_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role (never the key)."""

    key_id: str
    name: str
    role: Role


class KeyStore:
    """Looks keys up by hash with a short cache, so a revoked key stops working within `ttl` seconds."""

    def __init__(self, sessions: Sessions, ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def lookup(self, key: str) -> Principal | None:
        return await self.lookup_hash(hash_key(key))

    async def lookup_hash(self, digest: str) -> Principal | None:
        """The active key with this hash (cached for `ttl` seconds)."""
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        async with self._sessions() as session:
            row = (
                await session.execute(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
            ).scalar_one_or_none()
        principal = Principal(row.key_id, row.name, row.role) if row else None  # type: ignore[arg-type]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal

    async def authorize(self, key: str | None, allowed: tuple[Role, ...]) -> Principal:
        if not key:
            raise Problem(
                401, "Send an API key: 'Authorization: Bearer <key>'.", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = await self.lookup(key)
        if principal is None:
            raise Problem(401, "The API key is unknown or revoked.", headers={"WWW-Authenticate": "Bearer"})
        if principal.role != "admin" and principal.role not in allowed:
            need = " or ".join(allowed)
            raise Problem(403, f"This key has the role {principal.role}; this needs {need}.")
        return principal


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def create_key(sessions: Sessions, *, role: Role, name: str, key: str | None = None) -> tuple[str, str]:
    """Store a new key (or the given one) and return (key_id, key). The key is not stored in clear."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    key = key or new_key()
    key_id = secrets.token_hex(8)
    async with sessions() as session, session.begin():
        session.add(ApiKey(key_id=key_id, name=name, role=role, key_hash=hash_key(key), created_at=datetime.now(UTC)))
    return key_id, key


async def open_database(settings: Settings) -> tuple[AsyncEngine, Sessions]:
    """A service's database at start-up: the engine, its sessions, and SALESPULSE_ADMIN_KEY ensured as an
    admin key when it is set."""
    engine = db.create_engine(settings.db_url)
    sessions = db.sessionmaker(engine)
    if settings.admin_key:
        await ensure_key(sessions, key=settings.admin_key, role="admin", name="SALESPULSE_ADMIN_KEY")
    return engine, sessions


async def ensure_key(sessions: Sessions, *, key: str, role: Role, name: str) -> None:
    """Make sure `key` exists with `role` (used for SALESPULSE_ADMIN_KEY at start-up)."""
    digest = hash_key(key)
    try:
        await _ensure(sessions, digest, role, name)
    except IntegrityError:  # another service ensured it at the same moment
        await _ensure(sessions, digest, role, name)


async def _ensure(sessions: Sessions, digest: str, role: Role, name: str) -> None:
    async with sessions() as session, session.begin():
        row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar_one_or_none()
        if row is None:
            session.add(
                ApiKey(key_id=secrets.token_hex(8), name=name, role=role, key_hash=digest, created_at=datetime.now(UTC))
            )
        elif row.revoked_at is not None or row.role != role:
            await session.execute(update(ApiKey).where(ApiKey.key_id == row.key_id).values(revoked_at=None, role=role))
