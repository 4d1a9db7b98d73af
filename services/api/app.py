"""API gateway: REST over the read model and configuration, and the WebSocket hub for live screens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from services.api.config_store import ID_FIELDS, MODELS, ConfigStore, Kind
from services.api.hub import Hub
from services.api.kpis import current_kpis, rep_totals, today
from services.api.read_model import ReadModel, RepView
from services.common import db
from services.common.auth import KeyStore, Principal, bearer_token, ensure_key
from services.common.deps import AdminKey, ViewerKey
from services.common.problems import Problem, install_problem_handlers
from services.common.settings import Settings, get_settings
from services.scoring.domain.periods import Calendar, PeriodKind

log = logging.getLogger("salespulse.api")

PERIODS: tuple[PeriodKind, ...] = ("day", "week", "month", "quarter", "year")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    calendar = Calendar(settings.timezone, settings.fiscal_year_start_month)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings.db_url)
        sessions = db.sessionmaker(engine)
        if settings.admin_key:
            await ensure_key(sessions, key=settings.admin_key, role="admin", name="SALESPULSE_ADMIN_KEY")
        model = ReadModel(settings)
        hub = Hub()

        def push(view: RepView) -> None:
            rep_id = view.state.rep_id
            hub.publish_state(f"rep:{rep_id}", "progress", progress_message(rep_id))

        model.listeners.append(push)
        app.state.sessions = sessions
        app.state.keys = KeyStore(sessions)
        app.state.config = ConfigStore(sessions)
        app.state.model = model
        app.state.hub = hub
        await model.start()
        try:
            yield
        finally:
            await model.stop()
            await engine.dispose()

    app = FastAPI(title="salespulse API", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)

    def progress_message(rep_id: str) -> dict[str, Any]:
        return {
            "type": "progress",
            "rep_id": rep_id,
            "plans": [],
            "kpis": current_kpis(calendar, app.state.model, rep_id),
        }

    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/ready")
    async def ready(request: Request) -> JSONResponse:
        caught_up = request.app.state.model.caught_up.is_set()
        body = {"ready": caught_up, "read_model": {"caught_up": caught_up, "reps": len(request.app.state.model.reps)}}
        return JSONResponse(body, status_code=200 if caught_up else 503)

    # --- configuration: reps, teams, plans, boards -------------------------------------------------
    def config_routes(kind: Kind, plural: str) -> None:
        id_field = ID_FIELDS[kind]
        model_cls = MODELS[kind]

        @app.put(f"/v1/{plural}/{{entry_id}}", name=f"put_{kind}")
        async def put_entry(entry_id: str, request: Request, _: AdminKey, body: Annotated[Any, Body()]) -> Any:
            if isinstance(body, dict) and body.setdefault(id_field, entry_id) != entry_id:
                raise Problem(
                    422,
                    f"The path says {entry_id!r} but the body's {id_field} is {body[id_field]!r}; make them equal.",
                    errors=[{"index": None, "field": id_field, "message": "must equal the id in the path"}],
                )
            try:
                document = model_cls.model_validate(body)
            except ValidationError as exc:
                raise Problem(
                    422,
                    f"The {kind} is not valid; see errors.",
                    errors=[
                        {"index": None, "field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                        for e in exc.errors()
                    ],
                ) from exc
            return await request.app.state.config.put(kind, entry_id, document)

        @app.get(f"/v1/{plural}/{{entry_id}}", name=f"get_{kind}")
        async def get_entry(entry_id: str, request: Request, _: ViewerKey) -> Any:
            found = await request.app.state.config.get(kind, entry_id)
            if found is None:
                raise Problem(404, f"No {kind} with {id_field} {entry_id!r}.")
            return found

        @app.delete(f"/v1/{plural}/{{entry_id}}", status_code=204, name=f"delete_{kind}")
        async def delete_entry(entry_id: str, request: Request, _: AdminKey) -> Response:
            if not await request.app.state.config.delete(kind, entry_id):
                raise Problem(404, f"No {kind} with {id_field} {entry_id!r}.")
            return Response(status_code=204)

        @app.get(f"/v1/{plural}", name=f"list_{kind}s")
        async def list_entries(request: Request, _: ViewerKey) -> Any:
            return await request.app.state.config.list(kind)

    for kind, plural in (("rep", "reps"), ("team", "teams"), ("plan", "plans"), ("board", "boards")):
        config_routes(kind, plural)  # type: ignore[arg-type]

    # --- KPIs --------------------------------------------------------------------------------------
    def period_key(period: str, on: date | None) -> tuple[PeriodKind, str]:
        if period not in PERIODS:
            raise Problem(
                422,
                f"Unknown period {period!r}; use one of {', '.join(PERIODS)}.",
                errors=[{"index": None, "field": "period", "message": f"one of {', '.join(PERIODS)}"}],
            )
        return period, calendar.key_for_date(on or today(calendar), period)  # type: ignore[return-value]

    @app.get("/v1/reps/{rep_id}/kpis")
    async def rep_kpis(
        rep_id: str,
        request: Request,
        _: ViewerKey,
        period: Annotated[str, Query()] = "month",
        date_: Annotated[date | None, Query(alias="date")] = None,
    ) -> Any:
        kind, key = period_key(period, date_)
        state = request.app.state
        if rep_id not in state.model.reps and await state.config.get("rep", rep_id) is None:
            raise Problem(404, f"No rep {rep_id!r}: it is not on the roster and has no events.")
        totals = await rep_totals(state.model, state.sessions, rep_id, kind, key)
        return {"rep_id": rep_id, "period": kind, "period_key": key, "kpis": totals.report()}

    # --- WebSockets --------------------------------------------------------------------------------
    async def websocket_principal(ws: WebSocket, roles: tuple[str, ...]) -> Principal | None:
        token = ws.query_params.get("token") or bearer_token(ws.headers.get("authorization"))
        try:
            return await ws.app.state.keys.authorize(token, roles)
        except Problem as exc:
            # Accept, then close with a reason: a browser sees neither an HTTP status nor a refused handshake's body.
            await ws.accept()
            await ws.close(code=4401 if exc.status == 401 else 4403, reason=exc.detail[:120])
            return None

    @app.websocket("/v1/ws/reps/{rep_id}")
    async def rep_socket(ws: WebSocket, rep_id: str) -> None:
        if await websocket_principal(ws, ("viewer",)) is None:
            return
        await ws.accept()
        await ws.app.state.hub.serve(ws, f"rep:{rep_id}", progress_message(rep_id))

    return app
