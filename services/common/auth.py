"""API keys, roles and scopes: keys are stored as SHA-256 hashes and checked on every request.

Roles (CONTRACT.md §6): `admin` (everything), `ingest` (post events, read their audit trail), `viewer` (read
every board, KPI and progress) and three scoped readers — `screen` (named boards and the teams shown on them),
`rep` (one rep's own data), `manager` (one team). What each route lets a scope see is decided where the data
is (services/api/scope.py); personal data (e-mail addresses, delivery errors, raw ledger bodies) is for
admins only. A key may expire; its last use is noted at most once a minute per process.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.db import Sessions, as_utc
from services.common.models import ApiKey
from services.common.problems import Problem
from services.common.settings import Settings

Role = Literal["admin", "ingest", "viewer", "screen", "rep", "manager"]
ROLES: tuple[Role, ...] = ("admin", "ingest", "viewer", "screen", "rep", "manager")
READERS: tuple[Role, ...] = ("viewer", "screen", "rep", "manager")
"""Roles that read boards, KPIs and progress, each within its scope."""

LAST_USE_EVERY = timedelta(minutes=1)
"""How stale a key's `last_used_at` may get: it is written at most this often per key and process."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sp_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Scope:
    """What a scoped key may read: a `screen` key its boards, a `rep` key one rep, a `manager` key one team."""

    boards: frozenset[str] = field(default_factory=frozenset)
    rep_id: str | None = None
    team_id: str | None = None

    @classmethod
    def for_role(
        cls, role: str, *, boards: list[str] | None = None, rep_id: str | None = None, team_id: str | None = None
    ) -> Scope:
        """The scope a key of `role` is created with; a missing or misplaced part is a ValueError that names the
        option to give or drop."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        boards = [b.strip() for b in boards or [] if b.strip()]
        given = {"--boards": bool(boards), "--rep-id": bool(rep_id), "--team-id": bool(team_id)}
        needs = {"screen": "--boards", "rep": "--rep-id", "manager": "--team-id"}.get(role)
        if needs and not given[needs]:
            raise ValueError(f"a {role} key needs {needs} (what it may read)")
        extra = [flag for flag, present in given.items() if present and flag != needs]
        if extra:
            raise ValueError(f"a {role} key takes no {' or '.join(extra)}")
        return cls(frozenset(boards), rep_id or None, team_id or None)

    def describe(self, role: str) -> str:
        """The scope in words, for `keys list` and 403 details."""
        if role == "screen":
            return "boards " + ", ".join(sorted(self.boards))
        if role == "rep":
            return f"rep {self.rep_id}"
        if role == "manager":
            return f"team {self.team_id}"
        return "everything" if role == "admin" else "no scope"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name, role and scope (never the key)."""

    key_id: str
    name: str
    role: Role
    scope: Scope = field(default_factory=Scope)
    expires_at: datetime | None = None
    parent_key_id: str | None = None
    """Set on a screen session: the key it was traded for."""

    @property
    def sees_personal_data(self) -> bool:
        """E-mail addresses, delivery errors and raw ledger bodies (CONTRACT.md §6: admins only)."""
        return self.role == "admin"

    @property
    def reads_everything(self) -> bool:
        return self.role in ("admin", "viewer")


class KeyStore:
    """Looks keys up by hash with a short cache, so a revoked key stops working within `ttl` seconds."""

    def __init__(self, sessions: Sessions, ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._used: dict[str, datetime] = {}  # key id -> last use this process wrote

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
        principal = _principal(row) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
            self._used.clear()
        self._cache[digest] = (now, principal)
        if principal is not None:
            await self._note_use(principal.key_id, row.last_used_at if row else None)
        return principal

    async def _note_use(self, key_id: str, stored: datetime | None) -> None:
        """Write the key's last use when the stored one is over a minute old (a key used by a thousand screens
        costs one write a minute per process, not one per request)."""
        now = datetime.now(UTC)
        last = self._used.get(key_id) or (as_utc(stored) if stored else None)
        if last is not None and now - last < LAST_USE_EVERY:
            return
        self._used[key_id] = now
        async with self._sessions() as session, session.begin():
            await session.execute(update(ApiKey).where(ApiKey.key_id == key_id).values(last_used_at=now))

    async def authorize(self, key: str | None, allowed: tuple[Role, ...]) -> Principal:
        if not key:
            raise Problem(
                401, "Send an API key: 'Authorization: Bearer <key>'.", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = await self.lookup(key)
        if principal is None:
            raise Problem(401, "The API key is unknown or revoked.", headers={"WWW-Authenticate": "Bearer"})
        if principal.expires_at is not None and datetime.now(UTC) >= principal.expires_at:
            raise Problem(
                401,
                f"The API key expired at {principal.expires_at:%Y-%m-%d %H:%M} UTC; ask an admin for a new one.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.role != "admin" and principal.role not in allowed:
            need = " or ".join(allowed)
            raise Problem(403, f"This key has the role {principal.role}; this needs {need}.")
        return principal


def key_scope(row: ApiKey) -> Scope:
    """The scope stored with a key."""
    return Scope(frozenset(b for b in (row.scope_boards or "").split(",") if b), row.scope_rep_id, row.scope_team_id)


def _principal(row: ApiKey) -> Principal:
    return Principal(
        row.key_id,
        row.name,
        row.role,  # type: ignore[arg-type]
        key_scope(row),
        as_utc(row.expires_at) if row.expires_at else None,
        row.parent_key_id,
    )


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def create_key(
    sessions: Sessions,
    *,
    role: Role,
    name: str,
    key: str | None = None,
    scope: Scope | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, str]:
    """Store a new key (or the given one) and return (key_id, key). The key is not stored in clear."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    scope = scope or Scope.for_role(role)
    key = key or new_key()
    key_id = secrets.token_hex(8)
    async with sessions() as session, session.begin():
        session.add(
            ApiKey(
                key_id=key_id,
                name=name,
                role=role,
                key_hash=hash_key(key),
                created_at=datetime.now(UTC),
                scope_boards=",".join(sorted(scope.boards)) or None,
                scope_rep_id=scope.rep_id,
                scope_team_id=scope.team_id,
                expires_at=expires_at,
            )
        )
    return key_id, key


SESSION_COOKIE = "sp_session"
CONSOLE_COOKIE = "sp_console"
"""The console's session cookie (admin): reads with it alone, writes with it and its X-CSRF-Token."""
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = timedelta(hours=12)
"""How long a screen's session cookie lives; the screens renew it every hour while they run."""


async def create_session(sessions: Sessions, parent: Principal, *, console: bool = False) -> tuple[str, datetime]:
    """A session key traded for a key, ending after SESSION_LIFETIME or with the parent's expiry or revocation.
    Expired sessions are swept on the way.

    A screen's session (the default) is read-only whatever the parent: an admin's or viewer's key gives a viewer
    session, a scoped key its own role and scope. A console session (`console=True`) is an admin's: it keeps
    the admin role, and a write with it needs its CSRF token (`csrf_token`) as well as the cookie."""
    if console and parent.role != "admin":
        raise Problem(403, f"The console needs an admin key; this one has the role {parent.role}.")
    if not console and parent.role not in ("admin", *READERS):
        raise Problem(403, f"A {parent.role} key cannot open a screen session; use a viewer or scoped key.")
    now = datetime.now(UTC)
    expires_at = min(now + SESSION_LIFETIME, parent.expires_at or now + SESSION_LIFETIME)
    role: Role = parent.role if console or parent.role != "admin" else "viewer"
    key = new_key()
    async with sessions() as session, session.begin():
        await session.execute(
            delete(ApiKey).where(ApiKey.parent_key_id.is_not(None), ApiKey.expires_at < now - timedelta(days=1))
        )
        session.add(
            ApiKey(
                key_id=secrets.token_hex(8),
                name=f"{'console' if console else 'screen'} session of {parent.key_id}",
                role=role,
                key_hash=hash_key(key),
                created_at=now,
                scope_boards=",".join(sorted(parent.scope.boards)) or None,
                scope_rep_id=parent.scope.rep_id,
                scope_team_id=parent.scope.team_id,
                expires_at=expires_at,
                parent_key_id=parent.parent_key_id or parent.key_id,
            )
        )
    return key, expires_at


def csrf_token(session_key: str) -> str:
    """The token a console page sends in X-CSRF-Token with each write: derived from the session key, which lives
    only in an HttpOnly cookie, so a page of another site can neither read the cookie nor compute the token."""
    return hashlib.sha256(b"salespulse-csrf:" + session_key.encode()).hexdigest()


async def revoke_key(sessions: Sessions, key_id: str) -> bool:
    """Revoke a key and the screen sessions made from it; False when there is no active key with that id."""
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
        )
        if not db.rows_matched(result):
            return False
        await session.execute(
            update(ApiKey).where(ApiKey.parent_key_id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
        )
    return True


@dataclass(frozen=True)
class KeyInfo:
    """A key as an admin lists it (never the key): its state, and its last use — its own or, for a key traded
    for screen sessions, the newest of theirs."""

    key_id: str
    name: str
    role: Role
    scope: Scope
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


async def list_keys(sessions: Sessions, *, key_id: str | None = None) -> list[KeyInfo]:
    """Every key (or the one with `key_id`) but the sessions traded for them, oldest first."""
    now = datetime.now(UTC)
    async with sessions() as session:
        query = select(ApiKey).where(ApiKey.parent_key_id.is_(None)).order_by(ApiKey.created_at, ApiKey.key_id)
        if key_id is not None:
            query = query.where(ApiKey.key_id == key_id)
        rows = (await session.execute(query)).scalars().all()
        used_by_sessions = dict((await session.execute(
            select(ApiKey.parent_key_id, func.max(ApiKey.last_used_at))
            .where(ApiKey.parent_key_id.is_not(None)).group_by(ApiKey.parent_key_id)
        )).tuples().all())
    listed = []
    for row in rows:
        expires = as_utc(row.expires_at) if row.expires_at else None
        uses = [as_utc(t) for t in (row.last_used_at, used_by_sessions.get(row.key_id)) if t is not None]
        state: Literal["active", "expired", "revoked"] = (
            "revoked" if row.revoked_at else "expired" if expires is not None and expires <= now else "active"
        )
        listed.append(KeyInfo(row.key_id, row.name, row.role, key_scope(row), state,  # type: ignore[arg-type]
                              as_utc(row.created_at), expires, max(uses) if uses else None,
                              as_utc(row.revoked_at) if row.revoked_at else None))
    return listed


def parse_lifetime(text: str) -> timedelta:
    """`30d`, `12h`, `90m` or `2w` as a duration; anything else is a ValueError that shows the forms."""
    units = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"cannot read the lifetime {text!r}; write a whole number and a unit: 90m, 12h, 30d or 2w")
    return int(number) * units[unit]


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
