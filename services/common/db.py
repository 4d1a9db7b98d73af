"""Database engines, sessions and migrations (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Result, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from services.common.settings import get_settings

Sessions = async_sessionmaker[AsyncSession]


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
"""What every service opens database sessions with."""

MIGRATIONS = Path(__file__).with_name("migrations")


def create_engine(url: str, *, synchronous: str | None = None) -> AsyncEngine:
    """An async engine; SQLite gets WAL mode so readers never block the ledger writer, and `synchronous`
    (default: the SALESPULSE_SQLITE_SYNCHRONOUS setting) says when a commit reaches the disk (docs/operations.md,
    "Durability on SQLite")."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        sync_mode = synchronous or get_settings().sqlite_synchronous

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            sqlite_pragmas(dbapi_conn, sync_mode)

        return engine
    settings = get_settings()
    return create_async_engine(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                               pool_pre_ping=True)


def rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (what `session.execute` returns for one is a CursorResult)."""
    return cast(CursorResult[Any], result).rowcount


def sessionmaker(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


SQLITE_BUSY_SECONDS = 30
"""How long a SQLite connection waits for another's write lock before it gives up."""


def sqlite_pragmas(connection: Any, synchronous: str) -> None:
    """What every SQLite connection of the product runs first (`connection`: a DB-API connection)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.close()


def sqlite_connect(url: str) -> sqlite3.Connection:
    """A plain sqlite3 connection to the database of a `sqlite+aiosqlite` URL, set up as the engine's are and
    in autocommit mode (the caller says BEGIN and COMMIT), for the thread that opens it."""
    path = make_url(url).database
    if not path:
        raise ValueError(f"{url!r} names no SQLite database file")
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS, isolation_level=None)
    sqlite_pragmas(connection, get_settings().sqlite_synchronous)
    return connection


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (safe to call from several processes at start-up)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


async def schema_behind(url: str) -> bool:
    """Whether the database lacks the newest schema revision (no salespulse tables, or an older revision)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
    return bool(current != head)
