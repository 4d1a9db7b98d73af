"""The small security rules on their own: what the log filter masks, which WebSocket origins pass, and which
admin keys a production-shaped deployment refuses."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.api.admission import OriginPolicy
from services.common.redaction import RedactSecrets, redact
from services.common.settings import Settings

KEY = "sp_" + "Zx9-Qw_" * 6


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1:5000 - "WebSocket /v1/ws/boards/floor?token={KEY}" [accepted]',
        f'127.0.0.1:5000 - "GET /screens/board/floor?every=20&token={KEY}&x=1 HTTP/1.1" 200',
        f"Authorization: Bearer {KEY}",
        f"calling with api_key={KEY}",
        f"key {KEY} was used",
    ],
)
def test_keys_are_masked_wherever_a_log_line_shows_them(line: str) -> None:
    masked = redact(line)
    assert KEY not in masked and "***" in masked


def test_a_custom_admin_key_in_a_query_string_is_masked_too() -> None:
    assert redact("GET /v1/ws/reps/ada?token=correct-horse-battery&x=1") == "GET /v1/ws/reps/ada?token=***&x=1"


def test_the_filter_masks_arguments_but_keeps_numbers_for_the_access_formatter() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/screens/rep/ada?token={KEY}", "1.1", 200), None,
    )
    assert RedactSecrets().filter(record)
    assert record.args[4] == 200  # type: ignore[index]
    assert record.getMessage() == '127.0.0.1:1 - "GET /screens/rep/ada?token=*** HTTP/1.1" 200'


def test_the_filter_masks_tracebacks() -> None:
    try:
        raise RuntimeError(f"could not reach ws://host/v1/ws/reps/a?token={KEY}")
    except RuntimeError:
        record = logging.LogRecord("salespulse", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    RedactSecrets().filter(record)
    assert KEY not in logging.Formatter().format(record)


@pytest.mark.parametrize(
    ("setting", "origin", "host", "allowed"),
    [
        ("", None, "api.example.com", True),  # not a browser page
        ("", "https://api.example.com", "api.example.com:8000", True),  # own host, port left out by the proxy
        ("", "http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("", "https://evil.example", "api.example.com", False),
        ("", "null", "api.example.com", False),
        ("https://tv.example.com", "https://TV.example.com/", "api.example.com", True),
        ("https://tv.example.com", "http://tv.example.com", "api.example.com", False),  # scheme is part of it
        ("https://tv.example.com, https://wall.example.com", "https://wall.example.com", "api", True),
        ("*", "https://anything.example", "api.example.com", True),
    ],
)
def test_websocket_origins(setting: str, origin: str | None, host: str, allowed: bool) -> None:
    assert OriginPolicy(setting, CollectorRegistry()).allows(origin, host) is allowed


POSTGRES = "postgresql+asyncpg://salespulse:pw@db/salespulse"


@pytest.mark.parametrize(
    ("key", "refused_because"),
    [
        ("changeme", "characters"),
        ("sp_short", "characters"),
        ("a" * 40, "repeats"),
        ("abababababababababababababab", "repeats"),
        ("please-change-me-to-a-long-random-value", "placeholder"),
        ("my-salespulse-admin-key-for-production", "placeholder"),
        ("sp_" + "k2Jx9QwE4vLmT7pR1sZ8yN3b", None),
    ],
)
def test_a_server_database_refuses_a_guessable_admin_key(key: str, refused_because: str | None) -> None:
    weakness = Settings(database_url=POSTGRES, admin_key=key).admin_key_weakness()
    if refused_because is None:
        assert weakness is None
    else:
        assert weakness is not None and refused_because in weakness


def test_the_embedded_sqlite_stack_and_a_missing_key_are_not_refused() -> None:
    assert Settings(database_url=None, admin_key="demo").admin_key_weakness() is None
    assert Settings(database_url=POSTGRES, admin_key=None).admin_key_weakness() is None


ROOT = Path(__file__).resolve().parents[2]
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$", re.IGNORECASE)
_FROM_ENVIRONMENT = re.compile(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]+\}")  # ${VAR:?message}: required, no default
_URL_PASSWORD = re.compile(r"://[^/@\s:]+:([^@/\s]+)@")
_GENERATED_KEY = re.compile(r"\bsp_[A-Za-z0-9_-]{40,}")
_SKIPPED_DIRS = {
    ".git", ".venv", ".salespulse", "node_modules", "__pycache__", ".hypothesis", ".ruff_cache", "build", "dist",
    "test-results",
}


def compose_environment() -> list[tuple[str, str, str]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found = []
    for service, spec in compose["services"].items():
        environment = spec.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        found += [(service, name, str(value)) for name, value in environment.items()]
    return found


def test_the_compose_file_takes_every_secret_from_the_environment() -> None:
    entries = compose_environment()
    for service, name, value in entries:
        if _SECRET_NAME.search(name):
            assert _FROM_ENVIRONMENT.fullmatch(value), f"{service}: {name} must be ${{{name}:?...}}, not a literal"
        for password in _URL_PASSWORD.findall(value):
            assert _FROM_ENVIRONMENT.fullmatch(password), f"{service}: {name} holds a literal password"
    # Grafana's built-in admin/admin must not be the way in.
    assert any(s == "grafana" and n == "GF_SECURITY_ADMIN_PASSWORD" for s, n, _ in entries)


def test_no_generated_key_is_committed() -> None:
    leaks = []
    for path in ROOT.rglob("*"):
        if _SKIPPED_DIRS & set(path.relative_to(ROOT).parts) or not path.is_file() or path.stat().st_size > 2**21:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary (screenshots) or unreadable
        leaks += [f"{path.relative_to(ROOT)}: {match[:6]}…" for match in _GENERATED_KEY.findall(text)]
    assert not leaks, leaks
