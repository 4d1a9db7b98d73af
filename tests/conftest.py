"""Shared fixtures: the real broker, real databases (SQLite and PostgreSQL), and whole-stack processes."""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.clock import Clock
from tests.support import figures
from tests.support.clock import TEST_CLOCK
from tests.support.stack import Stack, create_postgres_database, free_port, postgres_available, start_broker_process

POSTGRES_ADMIN_URL = os.environ.get("SALESPULSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A real Tansu broker on a free port for the whole session; yields its bootstrap address."""
    port = free_port()
    proc = start_broker_process(port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite in a temp dir, or a new PostgreSQL database on 127.0.0.1:5432."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'salespulse.db'}"
    if not postgres_available(POSTGRES_ADMIN_URL):
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; start it (see README, Testing)")
    return create_postgres_database(POSTGRES_ADMIN_URL, "sp_test")


@pytest.fixture
def stack_factory(broker: str, tmp_path: Path) -> Iterator[object]:
    """Builds whole stacks (ingest, scoring, api as real processes) on the shared broker; stops them after."""
    stacks: list[Stack] = []

    def make(database_url: str, *, clock: Clock = TEST_CLOCK, **env: str) -> Stack:
        stack = Stack(
            clock=clock,
            bootstrap=broker,
            database_url=database_url,
            data_dir=tmp_path / f"stack{len(stacks)}",
            topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
            admin_key="sp_test_" + secrets.token_hex(8),
            extra_env=env,
        )
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


HEAVIEST_FIRST = (
    "tests/integration/test_scoring_crash_points.py",
    "tests/integration/test_fault_suite.py",
    "tests/integration/test_scoring_faults.py",
    "tests/integration/test_scale_out.py",
    "tests/integration/test_checkpoint.py",
    "tests/e2e/test_pinned_instants.py",
    "tests/integration/test_notifier_stack.py",
    "tests/e2e/test_celebration_end_to_end.py",
    "tests/integration/test_scoring_replay.py",
    "tests/integration/test_readiness.py",
    "tests/integration/test_up_heals.py",
    "tests/integration/test_observability.py",
    "tests/integration/test_ingest_scale_out.py",
    "tests/integration/test_late_crossings.py",
)
"""Modules by wall time in a `make test` run (the slowest-25 list it prints), longest first. With two workers
and whole modules as the unit (`--dist loadfile --no-loadscope-reorder`), starting the long ones first and
letting the short ones fill in around them keeps one worker from running a long module alone at the end
(longest-processing-time-first scheduling). A module not listed keeps its place after these."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: index for index, path in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(HEAVIEST_FIRST)))


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controlling process (or the only one)
        figures.prepare()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for section, lines in figures.gathered().items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)


def pytest_report_header() -> list[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        out = "?"
    return [f"salespulse @ {out}"]
