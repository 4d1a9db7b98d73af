"""Admin routes for configuration as data: reps, teams, plans, boards, achievements, streaks and chat routes (SQL,
then the config topic); FX rates have routes of their own (services/api/routes/fx.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ValidationError

from services.api.config_store import ID_FIELDS, MODELS, Kind
from services.api.deps import GatewayDep
from services.api.responses import KEYED_PROBLEMS, PROBLEMS
from services.api.scope import entry_filter, out_of_scope, without_personal_data
from services.common.config_feed import publish_config
from services.common.deps import AdminKey, ReaderKey
from services.common.problems import KEYED, Problem, problem_responses

router = APIRouter(prefix="/v1")

PLURALS: dict[Kind, str] = {
    "rep": "reps", "team": "teams", "plan": "plans", "board": "boards", "achievement": "achievements",
    "streak": "streaks", "chat": "chat-routes",
}
# A plan with a hundred tiers is a few KiB; anything near this limit is not configuration.
MAX_CONFIG_BODY = 1024 * 1024
PUT_PROBLEMS = problem_responses(*KEYED, 413)


def validate_entry(kind: Kind, entry_id: str, body: Any) -> BaseModel:
    id_field = ID_FIELDS[kind]
    if isinstance(body, dict) and body.setdefault(id_field, entry_id) != entry_id:
        raise Problem(
            422,
            f"The path says {entry_id!r} but the body's {id_field} is {body[id_field]!r}; make them equal.",
            errors=[{"index": None, "field": id_field, "message": "must equal the id in the path"}],
        )
    try:
        return MODELS[kind].model_validate(body)
    except ValidationError as exc:
        raise Problem(
            422,
            f"The {kind} is not valid: " + "; ".join(e["msg"] for e in exc.errors()[:5]),
            errors=[
                {"index": None, "field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
            ],
        ) from exc


async def publish_entry(gw: Any, kind: Kind, entry_id: str, body: dict[str, Any] | None) -> None:
    if gw.producer is not None:
        updated_ms = int(datetime.now(UTC).timestamp() * 1000)
        await publish_config(gw.producer, gw.settings, kind, entry_id, body, updated_ms)
        gw.config.apply({"kind": kind, "id": entry_id, "body": body, "updated_ms": updated_ms})


def _routes(kind: Kind) -> None:
    plural = PLURALS[kind]
    id_field = ID_FIELDS[kind]

    model = MODELS[kind]

    @router.put(
        f"/{plural}/{{entry_id}}",
        name=f"put_{kind}",
        summary=f"Create or replace a {kind}",
        response_model=model,
        responses=PUT_PROBLEMS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
            }
        },
    )
    async def put_entry(entry_id: str, gw: GatewayDep, _: AdminKey, body: Annotated[Any, Body()]) -> Any:
        document = validate_entry(kind, entry_id, body)
        stored = await gw.config_store.put(kind, entry_id, document, gw.settings.clock.now())
        await publish_entry(gw, kind, entry_id, stored)
        return stored

    @router.get(
        f"/{plural}/{{entry_id}}",
        name=f"get_{kind}",
        summary=f"Read a {kind}",
        response_model=model,
        responses=PROBLEMS,
    )
    async def get_entry(entry_id: str, gw: GatewayDep, who: ReaderKey) -> Any:
        if not entry_filter(who, gw, kind)(entry_id):
            raise out_of_scope(who, f"{kind} {entry_id!r}")
        found = await gw.config_store.get(kind, entry_id)
        if found is None:
            raise Problem(404, f"No {kind} with {id_field} {entry_id!r}.")
        return without_personal_data(who, kind, found)

    @router.delete(
        f"/{plural}/{{entry_id}}",
        status_code=204,
        name=f"delete_{kind}",
        summary=f"Delete a {kind}",
        responses=PROBLEMS,
    )
    async def delete_entry(entry_id: str, gw: GatewayDep, _: AdminKey) -> Response:
        if not await gw.config_store.delete(kind, entry_id):
            raise Problem(404, f"No {kind} with {id_field} {entry_id!r}.")
        await publish_entry(gw, kind, entry_id, None)
        return Response(status_code=204)

    @router.get(
        f"/{plural}", name=f"list_{plural}", summary=f"List {plural}", response_model=list[model],  # type: ignore[valid-type]  # one route per kind
        responses=KEYED_PROBLEMS,
    )
    async def list_entries(gw: GatewayDep, who: ReaderKey) -> Any:
        visible = entry_filter(who, gw, kind)
        entries = await gw.config_store.list(kind)
        return [without_personal_data(who, kind, e) for e in entries if visible(e[id_field])]


for _kind in PLURALS:
    _routes(_kind)


async def republish_all(gw: Any) -> int:
    """Publish every stored entry (the config topic of a fresh embedded broker starts empty)."""
    count = 0
    for kind in (*PLURALS, "fx"):
        for body in await gw.config_store.list(kind):
            await publish_entry(gw, kind, body[ID_FIELDS[kind]], body)
            count += 1
    return count


__all__ = ["publish_entry", "republish_all", "router", "validate_entry"]
