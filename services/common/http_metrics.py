"""Prometheus plumbing shared by the HTTP services: one registry per process, REST latency by route,
and the /metrics endpoint."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _TimingMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): times HTTP requests by their route template."""

    def __init__(self, app: Any, histogram: Histogram, service: str) -> None:
        self.app = app
        self.histogram = histogram
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if path != "/metrics":
                self.histogram.labels(self.service, path, scope["method"], f"{status[0] // 100}xx").observe(
                    time.perf_counter() - started
                )


def install_http_metrics(app: FastAPI, registry: CollectorRegistry, service: str) -> None:
    """Time every request by route template (never by raw path, so no ids end up in labels)."""
    requests = Histogram(
        "salespulse_http_request_duration_seconds",
        "HTTP request latency by route, method and status class",
        ["service", "route", "method", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    app.add_middleware(_TimingMiddleware, histogram=requests, service=service)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
