"""Receivers a user would point the notifier at, for the tests: a real SMTP server (aiosmtpd) and a real HTTP
server taking webhooks, and the settings that aim a notifier at them."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.stack import free_port

__all__ = ["WEBHOOK_SECRET", "Hook", "IdempotentHook", "Mailbox", "receiver_env"]

WEBHOOK_SECRET = "whsec_test"
"""The signing secret of the generic webhooks the receivers take."""


class Mailbox:
    """A real SMTP server (aiosmtpd in its own thread) that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's name for the hook
        raw = envelope.original_content or envelope.content
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"

    def ids(self) -> list[str]:
        return [str(m["X-Salespulse-Notification-Id"] or m["X-Salespulse-Digest-Id"]) for m in self.messages]

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class Hook:
    """A real HTTP server receiving webhooks; answers `fail_with` to the first `failures` requests."""

    failures: int = 0
    fail_with: int = 500
    delay: float = 0.0
    validate: Callable[[str, bytes], list[str]] | None = None
    """Checks a body against what the receiver it stands in for accepts (by path): errors make it answer 400."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name for the handler
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (a test kills the notifier during a burst): a real receiver never
                    # sees a request cut short, so neither does this one (no record, no answer).
                    return
                if hook.delay:
                    time.sleep(hook.delay)
                errors = hook.validate(self.path, body) if hook.validate else []
                with hook.lock:
                    failing = hook.failures > 0
                    if failing:
                        hook.failures -= 1
                    hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "accepted": not failing and not errors, "errors": errors})
                answer = b"ok" if not errors else json.dumps(errors).encode()
                try:
                    self.send_response(hook.fail_with if failing else 400 if errors else 200)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender was killed while we answered: it counts as received here

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["accepted"] and r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class IdempotentHook(Hook):
    """A webhook receiver that honours Idempotency-Key, as the notifier's documentation asks receivers to."""

    def keys(self, path: str) -> Counter[str]:
        return Counter(r["headers"]["Idempotency-Key"] for r in self.accepted(path))


def receiver_env(mailbox: Mailbox, hook: Hook) -> dict[str, str]:
    """Settings that send a notifier's e-mail to `mailbox` and its webhooks to `hook`, with short retries and
    leases (a test waits seconds, not minutes) and no scheduled digests."""
    return {
        "SALESPULSE_NOTIFY_SMTP_HOST": "127.0.0.1",
        "SALESPULSE_NOTIFY_SMTP_PORT": str(mailbox.port),
        "SALESPULSE_NOTIFY_SMTP_FROM": "salespulse@example.com",
        "SALESPULSE_NOTIFY_SLACK_WEBHOOK_URLS": hook.url("/slack"),
        "SALESPULSE_NOTIFY_WEBHOOK_URLS": hook.url("/json"),
        "SALESPULSE_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SALESPULSE_NOTIFY_RETRY_BASE_SECONDS": "0.1",
        "SALESPULSE_NOTIFY_RETRY_MAX_SECONDS": "1",
        "SALESPULSE_NOTIFY_SEND_TIMEOUT": "2",
        "SALESPULSE_NOTIFY_LEASE_SECONDS": "4",
        "SALESPULSE_NOTIFY_POLL_SECONDS": "0.1",
        "SALESPULSE_NOTIFY_DIGEST_SCHEDULE": "off",
    }


def chat_shapes(path: str, body: bytes) -> list[str]:
    """A Hook's `validate` for chat receivers: paths starting /slack take Slack's shapes, /teams Teams'."""
    from tests.support.chat_shapes import slack_errors, teams_errors

    if path.startswith("/slack"):
        return slack_errors(body)
    if path.startswith("/teams"):
        return teams_errors(body)
    return []
