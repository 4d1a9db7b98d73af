"""`salespulse relay`: the relay in its own process (SALESPULSE_RELAY=external), so publishing the ledger to
Kafka never shares an event loop, or an interpreter, with ingest's requests.

Ingest wakes it with a datagram after each ledger commit (`RelayWaker`); a lost wake-up costs at most
`SALESPULSE_RELAY_IDLE_SECONDS` × 5, after which the relay looks at the ledger anyway. It takes the same leader
lock as an inline relay, so any number of them (and of ingest processes) can run: one publishes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.common import db
from services.common.http_metrics import install_http_metrics
from services.common.security_headers import install_security_headers
from services.common.settings import Settings, get_settings
from services.ingest.metrics import RelayMetrics
from services.ingest.relay import Relay

log = logging.getLogger("salespulse.ingest.relay")

__all__ = ["create_app"]


class _WakeProtocol(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.wake()  # the content does not matter: something was committed, look at the ledger


def create_app(settings: Settings | None = None) -> FastAPI:
    """The relay's process: the relay loop, its wake-up socket, /v1/health and /metrics."""
    settings = settings or get_settings()
    metrics = RelayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings.db_url)
        relay = Relay(settings, db.sessionmaker(engine), metrics, idle_wait=settings.relay_idle_seconds * 5)
        app.state.relay = relay
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _WakeProtocol(relay), local_addr=(settings.host, settings.relay_port)
        )
        relay.start()
        try:
            yield
        finally:
            transport.close()
            await relay.stop()
            await engine.dispose()

    app = FastAPI(title="salespulse relay", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_http_metrics(app, metrics.registry, "relay")
    install_security_headers(app)

    @app.get("/v1/health")
    async def health() -> dict[str, object]:
        relay: Relay = app.state.relay
        return {"status": "ok", "leader": relay.leading, "published_seq": relay.published_seq}

    return app
