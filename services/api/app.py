"""API gateway: REST over the read model and configuration, and the WebSocket hub for live screens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import text

from services.api.admission import OriginPolicy
from services.api.config_store import ConfigStore
from services.api.gateway import Gateway
from services.api.hub import CLOSE_REVOKED, Hub
from services.api.readiness import Readiness
from services.api.routes import config as config_routes
from services.api.routes import console as console_routes
from services.api.routes import fx as fx_routes
from services.api.routes import live, notifications, reads, screens
from services.api.routes import session as session_routes
from services.api.routes import statements as statement_routes
from services.common.auth import KeyStore, open_database
from services.common.background import cancel_and_wait
from services.common.config_feed import ConfigFollower
from services.common.dead_letters import DeadLetters
from services.common.http_metrics import install_http_metrics
from services.common.kafka import make_producer
from services.common.problems import install_body_limit, install_problem_handlers
from services.common.ratelimit import RateLimits
from services.common.security_headers import install_security_headers
from services.common.settings import Settings, get_settings
from services.scoring.domain.periods import Calendar

log = logging.getLogger("salespulse.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    registry = CollectorRegistry()
    dead_letters = DeadLetters(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, sessions = await open_database(settings)
        from services.api.read_model import ReadModel

        model = ReadModel(settings, dead_letters)
        gw = Gateway(
            settings=settings,
            calendar=Calendar(settings.timezone, settings.fiscal_year_start_month),
            sessions=sessions,
            keys=KeyStore(sessions),
            model=model,
            config=ConfigFollower(settings, dead_letters),
            hub=Hub(registry, max_connections=settings.ws_max_connections, send_timeout=settings.ws_send_timeout,
                    max_per_key=settings.ws_max_per_key),
            config_store=ConfigStore(sessions),
            readiness=Readiness(settings, sessions, model.positions),
            dead_letters=dead_letters,
        )
        pusher = live.LivePusher(gw)
        gw.model.listeners.append(pusher.on_rep)
        gw.config.listeners.append(pusher.on_config)
        app.state.gateway = gw
        app.state.keys = gw.keys  # what the shared role dependencies look up
        producer = make_producer(settings)
        background: list[asyncio.Task[None]] = []
        try:
            await producer.start()
            gw.producer = producer
            await config_routes.republish_all(gw)
        except Exception as exc:  # noqa: BLE001  (broker not reachable yet: serve reads, publish when it returns)
            log.warning("config not republished at start-up (%s); admin changes will retry", exc)
        gw.config.start()
        gw.model.start()
        gw.readiness.start()
        pusher.start()
        background.append(asyncio.create_task(_watch_revocations(gw), name="revocations"))
        background.append(notifications.follow_notifications(gw))
        _register_gauges(registry, gw)
        try:
            yield
        finally:
            await cancel_and_wait(background)  # before the engine they may be using is disposed
            await pusher.stop()
            await gw.readiness.stop()
            await gw.model.stop()
            await gw.config.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await dead_letters.close()
            await engine.dispose()

    app = FastAPI(
        title="salespulse API",
        version="0.1.0",
        lifespan=lifespan,
        description="Live sales KPIs, incentive progress and leaderboards. Errors are application/problem+json.",
    )
    install_problem_handlers(app)
    install_body_limit(app, config_routes.MAX_CONFIG_BODY)
    install_http_metrics(app, registry, "api")
    install_security_headers(app)
    app.state.rate_limits = RateLimits.for_api(settings, registry)
    app.state.origins = OriginPolicy(settings.ws_allowed_origins, registry)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def root() -> RedirectResponse:
        """A browser opening the gateway's address lands on the screens' index (it asks for its key there)."""
        return RedirectResponse("/screens/", status_code=307)

    @app.get("/v1/health", tags=["health"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/v1/ready",
        tags=["health"],
        summary="Database reachable, scoring serving every partition, the pipeline caught up with the ledger",
        responses={503: {"description": "not ready: the same checks, some false; `progress` says how far behind "
                                        "(events and estimated seconds) while catching up",
                         "content": {"application/json": {}}}},
    )
    async def ready(request: Request) -> JSONResponse:
        gw: Gateway = request.app.state.gateway
        feed = getattr(gw, "notification_feed", None)
        database = scoring = True
        try:
            async with gw.sessions() as session:
                await asyncio.wait_for(session.execute(text("SELECT 1")), 2)
            scoring = await asyncio.wait_for(gw.readiness.serving(), 2)
        except Exception:  # noqa: BLE001
            database = scoring = False
        progress = gw.readiness.progress()
        checks = {
            "database": database,
            "scoring": scoring,
            "caught_up": progress.caught_up,
            "read_model": gw.model.caught_up.is_set(),
            "config": gw.config.caught_up.is_set(),
            "reps": len(gw.model.reps),
            # Notifications are pushed from the end of their topic: ready once this gateway holds its place.
            "notifications": bool(feed and feed.ready.is_set()),
        }
        ok = all(checks[name] for name in ("database", "scoring", "caught_up", "read_model", "config", "notifications"))
        headers = {} if ok else {"Retry-After": "1"}
        return JSONResponse({"ready": ok, **checks, "progress": progress.as_json()},
                            status_code=200 if ok else 503, headers=headers)

    app.include_router(config_routes.router, tags=["configuration"])
    app.include_router(fx_routes.router, tags=["configuration"])
    app.include_router(reads.router, tags=["reads"])
    app.include_router(notifications.router, tags=["notifications"])
    app.include_router(session_routes.router, tags=["screens"])
    app.include_router(statement_routes.router, tags=["statements"])
    app.include_router(console_routes.router)
    live.install_sockets(app)
    app.include_router(screens.router)
    app.include_router(screens.console_router)
    return app


async def _watch_revocations(gw: Gateway, every: float = 2.0) -> None:
    """Close screens whose key was revoked or expired (either stops working within seconds)."""
    while True:
        await asyncio.sleep(every)
        hashes = {getattr(s, "key_hash", "") for screens in gw.hub.screens.values() for s in screens}
        ended: dict[str, set[str]] = {"revoked": set(), "expired": set()}
        now = datetime.now(UTC)
        for digest in hashes - {""}:
            principal = await gw.keys.lookup_hash(digest)
            if principal is None:
                ended["revoked"].add(digest)
            elif principal.expires_at is not None and now >= principal.expires_at:
                ended["expired"].add(digest)
        for how, digests in ended.items():
            if digests:
                closed = await gw.hub.close_where(
                    partial(_uses_key, frozenset(digests)), CLOSE_REVOKED, f"the API key was {how}"
                )
                log.info("closed %d screens opened with a %s key", closed, how)


def _uses_key(hashes: frozenset[str], screen: object) -> bool:
    return getattr(screen, "key_hash", "") in hashes


def _register_gauges(registry: CollectorRegistry, gw: Gateway) -> None:
    import time

    lag = Gauge(
        "salespulse_api_read_model_lag_seconds",
        "Seconds since the read model last received a rep snapshot",
        registry=registry,
    )
    lag.set_function(lambda: (time.time() - gw.model.last_message_ms / 1000) if gw.model.last_message_ms else 0.0)
    reps = Gauge("salespulse_api_read_model_reps", "Reps held in the read model", registry=registry)
    reps.set_function(lambda: len(gw.model.reps))
