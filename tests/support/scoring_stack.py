"""Stacks whose scoring workers a test starts, kills and replaces itself (the scoring fault tests)."""

from __future__ import annotations

from typing import Any

from tests.support.stack import Stack


def sqlite_url(tmp_path: Any) -> str:
    # The database is not what these tests are about; SQLite keeps them quick.
    return f"sqlite+aiosqlite:///{tmp_path / 'faults.db'}"


def start_without_scoring(stack: Stack) -> Stack:
    stack.prepare()
    stack.start_service("ingest")
    stack.wait_healthy("ingest", "/v1/health")
    return stack


def start_scoring(stack: Stack, label: str, **env: str) -> None:
    stack.start_service("scoring", instance=label, **env)
    stack.wait_healthy(label, "/metrics")


def start_api(stack: Stack, label: str = "api") -> str:
    stack.start_service("api", instance=label)
    stack.wait_healthy(label, "/v1/ready", timeout=90)
    return f"http://127.0.0.1:{stack.ports[label]}"
