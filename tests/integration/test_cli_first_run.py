"""A newcomer's first commands (issue 17): a command that needs the database migrates a local SQLite file or
says in one line what to run; library logs stay out of the way."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ADMIN_URL
from tests.support import stack as support
from tests.support.stack import ROOT, create_postgres_database, drop_postgres_database


def salespulse(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env={**clean, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    url = create_postgres_database(POSTGRES_ADMIN_URL, "sp_cli")
    yield url
    drop_postgres_database(POSTGRES_ADMIN_URL, url)


def test_keys_on_a_fresh_data_dir_migrate_it_quietly_and_work(tmp_path: Path) -> None:
    done = salespulse("keys", "create", "--role", "viewer", "--name", "tv", SALESPULSE_DATA_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "key:" in done.stdout and "Traceback" not in done.stderr
    assert "alembic" not in done.stderr.lower() and " INFO " not in done.stderr, done.stderr
    listed = salespulse("keys", "list", SALESPULSE_DATA_DIR=str(tmp_path))
    assert listed.returncode == 0 and "tv" in listed.stdout, listed.stderr


def test_library_logs_come_back_when_asked(tmp_path: Path) -> None:
    done = salespulse("migrate", SALESPULSE_DATA_DIR=str(tmp_path), SALESPULSE_LIBRARY_LOG_LEVEL="INFO")
    assert done.returncode == 0, done.stderr
    assert "alembic" in done.stderr.lower()


def test_a_database_server_without_the_schema_gets_one_line_saying_what_to_run(empty_postgres: str) -> None:
    key = support.random_admin_key() + "x" * 24
    for args in (("keys", "list"), ("replay",)):
        done = salespulse(*args, SALESPULSE_DATABASE_URL=empty_postgres, SALESPULSE_ADMIN_KEY=key)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "run `salespulse migrate` first" in lines[0]


def test_an_unreachable_database_gets_one_line(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    done = salespulse("keys", "list", SALESPULSE_DATABASE_URL=url, SALESPULSE_ADMIN_KEY=support.random_admin_key() * 3)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("salespulse: cannot reach the database at 127.0.0.1:1/none")
