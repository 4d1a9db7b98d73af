"""Shared bench plumbing: a broker, a database and services as real processes, like the test suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from tests.support.stack import (
    Stack,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    start_broker_process,
)

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def bench_stack(database: str, **env: str) -> Iterator[Stack]:
    """A Stack on a fresh broker and a fresh `sqlite` or `postgresql` database (services not started)."""
    port = free_port()
    broker = start_broker_process(port)
    url = create_postgres_database(POSTGRES, "sp_bench") if database == "postgresql" else None
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
                drop_postgres_database(POSTGRES, url)
