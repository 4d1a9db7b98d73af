"""Shared bench plumbing: a broker, a database and services as real processes, like the test suite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from tests.support.stack import Stack, free_port, start_broker_process

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def new_postgres_database() -> str:
    import asyncpg

    name = f"sp_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def drop_postgres_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@contextmanager
def bench_stack(database: str, **env: str) -> Iterator[Stack]:
    """A Stack on a fresh broker and a fresh `sqlite` or `postgresql` database (services not started)."""
    port = free_port()
    broker = start_broker_process(port)
    url = new_postgres_database() if database == "postgresql" else None
    with TemporaryDirectory(prefix="sp-bench-") as tmp:
        stack = Stack(
            bootstrap=f"127.0.0.1:{port}",
            database_url=url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
            data_dir=Path(tmp),
            topic_prefix="bench.",
            admin_key="sp_bench_" + uuid.uuid4().hex,
            extra_env=env,
        )
        try:
            stack.prepare()
            yield stack
        finally:
            stack.stop()
            broker.terminate()
            broker.wait(timeout=10)
            if url:
                drop_postgres_database(url)
