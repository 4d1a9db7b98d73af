"""The connectors inside ingest: their webhook routes, their workers, and an admin view of their state.

A connector is on when its credentials are set (docs/connectors.md); a webhook of a connector that is off is
404 with the settings to set. Webhooks authenticate by the CRM's own means (HubSpot's signature, Pipedrive's
HTTP Basic), not by an API key: a CRM cannot send one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from services.common.bodies import read_limited
from services.common.deps import AdminKey
from services.common.intake import EventIntake
from services.common.problems import KEYED, Problem, problem_responses
from services.common.ratelimit import client_address
from services.common.settings import Settings
from services.connectors import hubspot, pipedrive
from services.connectors.base import Connector
from services.connectors.core import epoch_ms
from services.connectors.inbox import Inbox, NewItem
from services.connectors.mapping import CONNECTORS
from services.connectors.metrics import ConnectorMetrics
from services.connectors.worker import ConnectorWorker

__all__ = ["Connectors", "ConnectorsExtension", "build_connectors", "install_connector_routes"]

log = logging.getLogger("salespulse.connectors")
_SETTINGS = {
    "hubspot": "SALESPULSE_HUBSPOT_CLIENT_SECRET and SALESPULSE_HUBSPOT_TOKEN",
    "pipedrive": "SALESPULSE_PIPEDRIVE_WEBHOOK_USER and SALESPULSE_PIPEDRIVE_WEBHOOK_PASSWORD",
    "salesforce": "SALESPULSE_SALESFORCE_INSTANCE_URL, SALESPULSE_SALESFORCE_TOKEN and SALESPULSE_SALESFORCE_TENANT_ID",
}


def build_connectors(settings: Settings, metrics: ConnectorMetrics | None) -> dict[str, Connector]:
    """The connectors whose credentials are set; MappingError (at start-up) when a mapping cannot be used."""
    zone = settings.zone
    found: dict[str, Connector] = {}
    on = settings.connectors_on
    if "hubspot" in on and settings.hubspot_token:
        found["hubspot"] = hubspot.HubSpotConnector(
            hubspot.HubSpotConnector.load_mapping(settings.hubspot_mapping), zone, metrics,
            api_url=settings.hubspot_api_url, token=settings.hubspot_token.get_secret_value(),
        )
    if "pipedrive" in on:
        found["pipedrive"] = pipedrive.PipedriveConnector(
            pipedrive.PipedriveConnector.load_mapping(settings.pipedrive_mapping), zone, metrics,
            api_url=settings.pipedrive_api_url,
            token=settings.pipedrive_token.get_secret_value() if settings.pipedrive_token else None,
        )
    if "salesforce" in on:
        from services.connectors.salesforce import SalesforceConnector

        found["salesforce"] = SalesforceConnector.from_settings(settings, metrics)
    return found


@dataclass
class Connectors:
    """The running connectors of one ingest process."""

    connectors: dict[str, Connector]
    inbox: Inbox
    workers: dict[str, ConnectorWorker] = field(default_factory=dict)
    extra: list[Any] = field(default_factory=list)
    """Other background loops (Salesforce's change-event subscriber)."""

    def wake(self, name: str) -> None:
        worker = self.workers.get(name)
        if worker is not None:
            worker.wake.set()

    async def add(self, name: str, items: list[NewItem]) -> None:
        await self.inbox.add(name, items)
        self.wake(name)


ConnectorName = Literal["hubspot", "pipedrive", "salesforce"]
_WEBHOOK_PROBLEMS = problem_responses(
    400, 401, 404, 413, 429, 503,
    s400="not a delivery of this CRM's webhook shape",
    s401="not signed by the CRM (HubSpot) or wrong HTTP Basic credentials (Pipedrive)",
    s404="the connector is off: its settings are not set on this ingest service",
)


def install_connector_routes(app: FastAPI, settings: Settings, metrics: ConnectorMetrics) -> None:
    def running(request: Request, name: str) -> Connectors:
        connectors: Connectors = request.app.state.connectors
        if name not in connectors.connectors:
            raise Problem(404, f"The {name} connector is off on this ingest service: set {_SETTINGS[name]}.")
        return connectors

    def refuse(name: str, outcome: str, status: int, detail: str, **headers: str) -> Problem:
        metrics.connector_deliveries.labels(name, outcome).inc()
        log.warning("%s webhook refused (%s): %s", name, status, detail)
        return Problem(status, detail, headers=headers or None)

    def guard(request: Request) -> None:
        """An address that keeps sending forged deliveries is out of budget for a moment (429), like one that
        keeps guessing API keys (SALESPULSE_RATE_AUTH_FAILURES)."""
        limits = getattr(request.app.state, "rate_limits", None)
        if limits is not None:
            limits.refuse_while_exhausted("auth_failures", client_address(request))

    def spend(request: Request) -> None:
        limits = getattr(request.app.state, "rate_limits", None)
        if limits is not None:
            limits.check("auth_failures", client_address(request))

    @app.post("/v1/connectors/hubspot/webhook", summary="HubSpot webhook (v3 signature)", responses=_WEBHOOK_PROBLEMS)
    async def hubspot_webhook(request: Request) -> JSONResponse:
        connectors = running(request, "hubspot")
        guard(request)
        body = await read_limited(request)
        assert settings.hubspot_client_secret is not None
        uri = settings.hubspot_webhook_url or str(request.url)
        why = hubspot.verify_v3(
            settings.hubspot_client_secret.get_secret_value(), request.method, uri, body,
            request.headers.get("x-hubspot-signature-v3"), request.headers.get("x-hubspot-request-timestamp"),
            epoch_ms(settings.clock.now()),
        )
        if why:
            spend(request)
            raise refuse("hubspot", "rejected_signature", 401, f"Not a request signed by HubSpot: {why}.")
        try:
            batch = hubspot.parse_webhook(body)
        except ValueError as exc:
            raise refuse("hubspot", "rejected_body", 400, f"Not a HubSpot webhook batch: {exc}.") from None
        await connectors.add("hubspot", batch.items)
        metrics.connector_deliveries.labels("hubspot", "accepted").inc()
        if batch.ignored:
            metrics.connector_deliveries.labels("hubspot", "ignored").inc(batch.ignored)
        return JSONResponse({"accepted": len(batch.items), "ignored": batch.ignored})

    @app.post("/v1/connectors/pipedrive/webhook", summary="Pipedrive webhook v2 (HTTP Basic auth)",
              responses=_WEBHOOK_PROBLEMS)
    async def pipedrive_webhook(request: Request) -> JSONResponse:
        connectors = running(request, "pipedrive")
        guard(request)
        if not _basic_auth_ok(request.headers.get("authorization"), settings):
            spend(request)
            raise refuse("pipedrive", "rejected_auth", 401, "Wrong or missing HTTP Basic credentials.",
                         **{"WWW-Authenticate": 'Basic realm="salespulse"'})
        body = await read_limited(request)
        connector = connectors.connectors["pipedrive"]
        assert isinstance(connector, pipedrive.PipedriveConnector)
        try:
            delivery = pipedrive.parse_webhook(body, can_fetch=connector.can_fetch)
        except ValueError as exc:
            raise refuse("pipedrive", "rejected_body", 400, f"Not a Pipedrive webhooks v2 delivery: {exc}.") from None
        await connectors.add("pipedrive", delivery.items)
        metrics.connector_deliveries.labels("pipedrive", "ignored" if delivery.ignored else "accepted").inc()
        return JSONResponse({"accepted": len(delivery.items), "ignored": delivery.ignored})

    @app.get("/v1/connectors", summary="Each connector: on or off, changes waiting, records refused",
             responses=problem_responses(*KEYED))
    async def connector_status(request: Request, key: AdminKey) -> dict[str, Any]:
        connectors: Connectors = request.app.state.connectors
        counts = await connectors.inbox.counts()
        listed = []
        for name in CONNECTORS:
            listed.append({
                "connector": name,
                "enabled": name in connectors.connectors,
                "pending": counts.get((name, "pending"), 0),
                "rejected": counts.get((name, "rejected"), 0),
                "recent_rejections": await connectors.inbox.rejected(name, 20),
            })
        return {"connectors": listed}

    @app.post("/v1/connectors/{name}/requeue", summary="Try the connector's refused records again (after a fix)",
              responses=problem_responses(*KEYED))
    async def requeue(name: ConnectorName, request: Request, key: AdminKey) -> dict[str, Any]:
        connectors: Connectors = request.app.state.connectors
        count = await connectors.inbox.requeue_rejected(name)
        connectors.wake(name)
        return {"requeued": count}


def _basic_auth_ok(header: str | None, settings: Settings) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    assert settings.pipedrive_webhook_user is not None and settings.pipedrive_webhook_password is not None
    expected = settings.pipedrive_webhook_password.get_secret_value()
    return hmac.compare_digest(user.encode(), settings.pipedrive_webhook_user.encode()) & hmac.compare_digest(
        password.encode(), expected.encode()
    )


class ConnectorsExtension:
    """The connectors as ingest hosts them (services/common/intake.py, `IngestExtension`): their routes and
    metrics on ingest's app, their workers (and Salesforce's subscriber) for the app's lifetime."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.metrics: ConnectorMetrics | None = None

    def install(self, app: FastAPI, settings: Settings, registry: CollectorRegistry) -> None:
        self.settings, self.metrics = settings, ConnectorMetrics(registry)
        install_connector_routes(app, settings, self.metrics)

    @asynccontextmanager
    async def running(self, app: FastAPI, intake: EventIntake) -> AsyncIterator[None]:
        assert self.settings is not None and self.metrics is not None, "install() first"
        settings, metrics = self.settings, self.metrics
        inbox = Inbox(app.state.sessions, settings.clock)
        connectors = Connectors(build_connectors(settings, metrics), inbox)
        for name, connector in connectors.connectors.items():
            worker = ConnectorWorker(connector, inbox, intake, metrics, batch=settings.connector_batch_size,
                                     most_wait=settings.connector_retry_max_seconds)
            connectors.workers[name] = worker
            worker.start()
            starter = getattr(connector, "start_subscriber", None)
            if starter is not None:
                connectors.extra.append(starter(connectors))
            log.info("%s connector on (mapping %s)", name, connector.mapping.origin)
        app.state.connectors = connectors
        try:
            yield
        finally:
            for loop in connectors.extra:
                await loop.stop()
            for worker in connectors.workers.values():
                await worker.stop()
            for connector in connectors.connectors.values():
                await connector.close()
