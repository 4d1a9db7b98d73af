"""Baseline security headers on every HTTP response of a service: no MIME sniffing, no referrer (keys can be in
a screen's URL), no framing, and on JSON a policy that lets the document load nothing. Responses that set their
own (the screens' strict Content-Security-Policy) keep theirs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders

__all__ = ["BASELINE", "JSON_POLICY", "install_security_headers"]

BASELINE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"


class _SecurityHeaders:
    """Pure ASGI, so the ingest hot path pays one header merge per response and nothing else."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASELINE.items():
                    headers.setdefault(name, value)
                if "json" in headers.get("content-type", ""):
                    headers.setdefault("Content-Security-Policy", JSON_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    app.add_middleware(_SecurityHeaders)
