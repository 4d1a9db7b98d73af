"""Database engines, sessions and migrations (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, CursorResult, Engine, Result, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from services.common.settings import get_settings

Sessions = async_sessionmaker[AsyncSession]

T = TypeVar("T")


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
        _pragmas_on_connect(engine.sync_engine, synchronous or get_settings().sqlite_synchronous)
        return engine
    settings = get_settings()
    return create_async_engine(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                               pool_pre_ping=True)


def rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (what `session.execute` returns for one is a CursorResult)."""
    return cast(CursorResult[Any], result).rowcount


def sessionmaker(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: Sessions) -> AsyncEngine:
    """The engine a sessionmaker made by `sessionmaker` opens its sessions on."""
    return cast(AsyncEngine, sessions.kw["bind"])


class Transactions:
    """Runs a function of a (sync) SQLAlchemy `Connection` as one transaction, for code that runs a few small
    statements many times a second.

    On SQLite the function runs whole on a thread of its own, with a plain sqlite3 connection set up as the
    engine's are: one hand-off from the event loop per transaction. Through the async driver every statement,
    fetch and commit is a trip to aiosqlite's thread and back (measured for a relay pass's two updates: 0.85 ms of
    CPU through sessions, 0.19 ms this way). On PostgreSQL it runs on the async engine through `run_sync`
    (asyncpg has no thread to hop to). Errors are SQLAlchemy's either way."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._thread: ThreadPoolExecutor | None = None
        self._sync: Engine | None = None  # used on that thread only

    async def run(self, work: Callable[[Connection], T]) -> T:
        if not self._sqlite:
            async with self._engine.begin() as connection:
                return await connection.run_sync(work)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-transactions")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_transaction, work)

    async def close(self) -> None:
        """Close the thread's connection (after a transaction under way); the next `run` opens a new one."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, self._dispose)
            thread.shutdown(wait=False)

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        if self._sync is None:
            self._sync = _sync_sqlite_engine(self._engine.url)
        with self._sync.begin() as connection:
            return work(connection)

    def _dispose(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None


def _sync_sqlite_engine(url: URL) -> Engine:
    """A sync engine on the database of a `sqlite+aiosqlite` URL, its connections set up as the async engine's."""
    engine = create_sync_engine(url.set(drivername="sqlite+pysqlite"), connect_args={"timeout": SQLITE_BUSY_SECONDS})
    _pragmas_on_connect(engine, get_settings().sqlite_synchronous)

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # the driver starts no transaction of its own: "begin" below does

    @event.listens_for(engine, "begin")
    def _begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN")  # a transaction from the first statement, a read too

    return engine


SQLITE_BUSY_SECONDS = 30
"""How long a SQLite connection waits for another's write lock before it gives up."""


def _pragmas_on_connect(engine: Engine, synchronous: str) -> None:
    """Every new connection of `engine` (a sync engine, or an async one's `sync_engine`) runs `sqlite_pragmas`."""

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        sqlite_pragmas(dbapi_conn, synchronous)


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
