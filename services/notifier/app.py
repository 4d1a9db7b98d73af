"""The notifier process: the Notifier's loops plus a small HTTP server for /v1/health, /v1/ready, /metrics and
an admin trigger for the coaching digest (`POST /v1/digests/run`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from services.common.auth import KeyStore, open_database
from services.common.deps import AdminKey
from services.common.http_metrics import install_http_metrics
from services.common.problems import install_problem_handlers
from services.common.ratelimit import RateLimits
from services.common.security_headers import install_security_headers
from services.common.settings import Settings, get_settings
from services.notifier.service import Notifier

log = logging.getLogger("salespulse.notifier")

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, sessions = await open_database(settings)
        app.state.keys = KeyStore(sessions)
        notifier = Notifier(settings, sessions=sessions, registry=registry)
        app.state.notifier = notifier
        await notifier.start()
        log.info("notifier %s started", notifier.owner)
        try:
            yield
        finally:
            await notifier.stop()
            await engine.dispose()

    app = FastAPI(title="salespulse notifier", version="0.1.0", lifespan=lifespan)
    app.state.rate_limits = RateLimits.for_notifier(settings, registry)
    install_problem_handlers(app)
    install_http_metrics(app, registry, "notifier")
    install_security_headers(app)

    @app.get("/v1/health", tags=["health"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/ready", tags=["health"], summary="Configuration and progress loaded, snapshot consumer running")
    async def ready(request: Request) -> JSONResponse:
        notifier: Notifier = request.app.state.notifier
        checks = {
            "config": notifier.config.caught_up.is_set(),
            "progress": notifier.progress.caught_up.is_set(),
            "consumer": notifier.consumer.running.is_set(),
            "partitions": notifier.consumer.assigned.is_set(),
        }
        ok = checks["config"] and checks["progress"] and checks["consumer"]
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.post("/v1/digests/run", tags=["digests"], summary="Make the coaching digest of every team now")
    async def run_digests(request: Request, _: AdminKey) -> dict[str, Any]:
        notifier: Notifier = request.app.state.notifier
        await asyncio.wait_for(notifier.config.caught_up.wait(), 30)
        await asyncio.wait_for(notifier.progress.caught_up.wait(), 30)
        made = await notifier.run_digests_now()
        return {"digests": made}

    return app
