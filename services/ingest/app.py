"""Ingest service: validates events, appends them to the ledger, and relays them to Kafka."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from schemas.events import EVENT_ADAPTER
from services.common.auth import KeyStore, open_database
from services.common.deps import AuditKey, IngestKey
from services.common.http_metrics import install_http_metrics
from services.common.intake import IngestExtension
from services.common.models import LedgerEntry, RelayProgress, relay_cursor
from services.common.problems import KEYED, Problem, install_problem_handlers, problem_responses
from services.common.ratelimit import RateLimits
from services.common.security_headers import install_security_headers
from services.common.settings import Settings, get_settings
from services.ingest.accept import Intake
from services.ingest.intake import read_limited
from services.ingest.ledger import EventConflict, LedgerWriter
from services.ingest.metrics import IngestMetrics
from services.ingest.relay import Relay, RelayWaker
from services.ingest.roster import RosterCache

log = logging.getLogger("salespulse.ingest")



def create_app(
    settings: Settings | None = None, *, run_relay: bool = True, extensions: Sequence[IngestExtension] = ()
) -> FastAPI:
    """Ingest's app; `extensions` are parts it hosts (the CRM connectors: services/cli/apps.py adds them)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, sessions = await open_database(settings)
        writer = LedgerWriter(sessions, database_url=settings.db_url, metrics=metrics)
        # The relay publishes the ledger to Kafka: here, or in its own process (`salespulse relay`), woken after
        # each commit.
        relay: Relay | None = None
        waker: RelayWaker | None = None
        if metrics.relay is not None:
            relay = Relay(settings, sessions, metrics.relay)
            writer.on_commit.append(relay.offer)
        else:
            waker = RelayWaker(settings)
            writer.on_commit.append(waker.offer)
        app.state.sessions = sessions
        app.state.keys = KeyStore(sessions)
        app.state.writer = writer
        app.state.relay = relay
        app.state.roster = RosterCache(sessions)
        app.state.intake = Intake(settings, writer, app.state.roster, metrics)
        writer.start()
        if run_relay and relay is not None:
            relay.start()
        try:
            async with AsyncExitStack() as hosted:
                for extension in extensions:
                    await hosted.enter_async_context(extension.running(app, app.state.intake))
                yield
        finally:
            if relay is not None:
                await relay.stop()
            await writer.stop()
            if waker is not None:
                waker.close()
            await engine.dispose()

    app = FastAPI(title="salespulse ingest", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)
    metrics = IngestMetrics(relay=settings.relay == "inline")
    install_http_metrics(app, metrics.registry, "ingest")
    install_security_headers(app)
    limits = app.state.rate_limits = RateLimits.for_ingest(settings, metrics.registry)
    for extension in extensions:
        extension.install(app, settings, metrics.registry)

    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Accept one event, a JSON array of up to 10,000, or NDJSON (all or nothing)",
        openapi_extra=_EVENTS_OPENAPI,
        responses=_EVENTS_PROBLEMS,
    )
    async def post_events(request: Request, key: IngestKey) -> JSONResponse:
        body = await read_limited(request)
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        ndjson = content_type in ("application/x-ndjson", "application/ndjson")
        intake: Intake = request.app.state.intake
        checked = await intake.check(body, ndjson=ndjson)
        if checked.problem_count:
            raise checked.problem()
        events = checked.events
        if not events:
            raise Problem(422, "The request holds no events.", errors=[])
        limits.check("events", key.key_id, len(events))  # only valid events spend the key's budget
        try:
            result = await intake.append(events)
        except EventConflict as exc:
            conflicting = set(exc.event_ids)
            raise Problem(
                409,
                "These event_ids were already accepted with a different body: "
                + ", ".join(exc.event_ids[:20])
                + (f" and {len(exc.event_ids) - 20} more" if len(exc.event_ids) > 20 else "")
                + ". Send a new event_id for a new fact; nothing was accepted.",
                errors=[
                    {"index": i, "field": "event_id", "message": f"{e.event_id} was accepted before with another body"}
                    for i, e in enumerate(events)
                    if e.event_id in conflicting
                ],
            ) from exc
        except (OperationalError, DBAPIError, OSError) as exc:
            log.warning("ledger unavailable: %s", exc)
            raise Problem(
                503,
                "The ledger database is unavailable; nothing was accepted. Retry later.",
                headers={"Retry-After": "2"},
            ) from exc
        return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates}, status_code=202)

    @app.get("/v1/events/{event_id}", responses=problem_responses(*KEYED, 404))
    async def get_event(event_id: str, request: Request, who: AuditKey) -> Any:
        """The event's status and, for admins, the stored body (raw ledger bodies are personal data: names,
        amounts, owners; CONTRACT.md §6). An ingest client learns whether its event landed."""
        async with request.app.state.sessions() as session:
            row = (
                await session.execute(select(LedgerEntry).where(LedgerEntry.event_id == event_id))
            ).scalar_one_or_none()
            if row is None:
                raise Problem(404, f"No event with event_id {event_id!r} was accepted.")
            cursor = await relay_cursor(session)
            first_published = select(func.min(RelayProgress.published_at)).where(RelayProgress.seq_end >= row.seq)
            published_at = (await session.execute(first_published)).scalar()
        published = row.seq <= cursor
        return {
            "event_id": row.event_id,
            "seq": row.seq,
            "status": "published" if published else "accepted",
            "accepted_at": _iso(row.accepted_at),
            "published_at": _iso(published_at) if published and published_at else None,
            "event": json.loads(row.body) if who.sees_personal_data else None,
        }

    _with_event_schemas(app)
    return app


_EVENT = {"$ref": "#/components/schemas/Event"}
_EVENTS_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [_EVENT, {"type": "array", "items": _EVENT, "maxItems": 10000}]}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "one event per line"}},
        },
    },
    "responses": {
        "202": {
            "description": "durable in the ledger",
            "content": {"application/json": {"example": {"accepted": 2, "duplicates": 1}}},
        },
    },
}
# Given as the route's `responses=`, so that FastAPI does not add its own application/json 422 beside them.
_EVENTS_PROBLEMS = problem_responses(
    *KEYED,
    409,
    413,
    s403="the key has no ingest role",
    s409="an event_id was accepted before with another body; nothing was accepted",
    s413="over 10 MiB or over 10,000 events",
    s422="invalid items: the first 100 problems in `errors` as {index, field, message}, all of them counted in "
    "`error_count`; nothing accepted",
    s503="the ledger database is unavailable; retry after `Retry-After` seconds",
)


def _with_event_schemas(app: FastAPI) -> None:
    """Put the event models in the OpenAPI components so the request body above resolves."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = original()
        schema = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(schema.pop("$defs", {}))
        components["Event"] = schema
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


