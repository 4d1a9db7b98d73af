"""What the sales-ops console (/console/) needs beyond the configuration routes, all admin and all usable with a
key as well: a console session (an admin key traded for an HttpOnly cookie and a CSRF token), API keys (create,
list, revoke), a CSV of reps checked and previewed before it is saved in one transaction, the reps that appear in
events but not on the roster, a board's standings before it is saved, and the pipeline's health at a glance.

The console writes through these and the configuration routes only: there is no second write path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote, urlencode

import segno
from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from schemas.config import Board, Id, Label
from services.api.csv_upload import CsvRow, read_upload
from services.api.deps import DateQuery, GatewayDep
from services.api.responses import KEYED_PROBLEMS, PROBLEMS
from services.api.routes.config import publish_entry, validate_entry
from services.common.auth import (
    CONSOLE_COOKIE,
    SESSION_LIFETIME,
    Role,
    Scope,
    bearer_token,
    create_key,
    create_session,
    csrf_token,
    list_keys,
    parse_lifetime,
    revoke_key,
)
from services.common.db import as_utc
from services.common.deps import AdminKey
from services.common.models import (
    ConnectorInboxRow,
    LedgerEntry,
    NotificationDelivery,
    SourceDay,
    relay_cursor,
)
from services.common.problems import KEYED, Problem, problem_responses
from services.common.ratelimit import authorize_key
from services.common.settings import CONNECTORS

router = APIRouter(prefix="/v1")

# --- the console's session -----------------------------------------------------------------------------------


@router.post("/console/session", summary="Trade an admin key (Bearer) for the console's session cookie",
             responses=problem_responses(*KEYED), tags=["console"])
async def open_console(
    request: Request, response: Response, gw: GatewayDep, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Sets `sp_console` (HttpOnly, SameSite=Strict) and returns the CSRF token the console sends with each
    write in `X-CSRF-Token`."""
    who = await authorize_key(request, bearer_token(authorization), ("admin",))
    key, expires_at = await create_session(gw.sessions, who, console=True)
    response.set_cookie(CONSOLE_COOKIE, key, max_age=int(SESSION_LIFETIME.total_seconds()), expires=expires_at,
                        path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return {"key_id": who.key_id, "name": who.name, "csrf": csrf_token(key), "expires_at": expires_at.isoformat()}


@router.get("/console/session", summary="The console session this browser holds, with its CSRF token",
            responses=problem_responses(*KEYED), tags=["console"])
async def read_console(request: Request, response: Response, gw: GatewayDep, who: AdminKey) -> dict[str, Any]:
    """A page of this origin reads the token it must send with writes (another site's page cannot read it);
    `key_id` and `name` are the admin key's the session was opened with."""
    session_key = request.cookies.get(CONSOLE_COOKIE)
    if who.parent_key_id is None or not session_key:
        raise Problem(401, "No console session: sign in to the console with an admin key.")
    parent = await list_keys(gw.sessions, key_id=who.parent_key_id)
    response.headers["Cache-Control"] = "no-store"
    return {"key_id": who.parent_key_id, "name": parent[0].name if parent else who.name,
            "csrf": csrf_token(session_key), "expires_at": who.expires_at.isoformat() if who.expires_at else None}


@router.delete("/console/session", status_code=204, summary="Sign out: end the console session",
               responses=problem_responses(*KEYED), tags=["console"])
async def close_console(gw: GatewayDep, who: AdminKey) -> Response:
    response = Response(status_code=204)
    if who.parent_key_id is not None:  # a session (with a key itself there is nothing to end)
        await revoke_key(gw.sessions, who.key_id)
    response.delete_cookie(CONSOLE_COOKIE, path="/")
    return response


# --- keys ------------------------------------------------------------------------------------------------------


class KeyRequest(BaseModel):
    """A key to create: a `screen` key names its boards, a `rep` key its rep, a `manager` key its team."""

    name: Label
    role: Role
    boards: list[Id] = Field(default_factory=list, max_length=100)
    rep_id: Id | None = None
    team_id: Id | None = None
    expires_in: str | None = Field(None, max_length=16, description="a lifetime such as 90m, 12h, 30d or 2w")
    screen: str | None = Field(
        None, max_length=2000, pattern=r"^/screens/[^?#]*(\?[^#]*)?$",
        description="the screen the key opens (its `url`), e.g. a rotation: /screens/rotate?boards=a,b&every=20",
    )


class KeyEntry(BaseModel):
    key_id: str
    name: str
    role: str
    scope: str
    boards: list[str] = Field(default_factory=list)
    rep_id: str | None = None
    team_id: str | None = None
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class CreatedKey(KeyEntry):
    key: str = Field(description="shown this once; only its hash is stored")
    url: str | None = Field(None, description="the screen this key opens, with the key in ?token=")
    qr_svg: str | None = Field(None, description="the url as a QR code (an SVG data: URI) for a phone or a TV")


@router.get("/keys", summary="Every API key: role, scope, state, last use (never the key)",
            response_model=list[KeyEntry], responses=KEYED_PROBLEMS, tags=["keys"])
async def get_keys(gw: GatewayDep, _: AdminKey) -> Any:
    return [_key_entry(info) for info in await list_keys(gw.sessions)]


@router.post("/keys", status_code=201, summary="Create a key; the answer is the only time it is shown",
             response_model=CreatedKey, responses=problem_responses(*KEYED, 413), tags=["keys"])
async def post_key(request: Request, response: Response, gw: GatewayDep, _: AdminKey, body: KeyRequest) -> Any:
    try:
        scope = Scope.for_role(body.role, boards=body.boards, rep_id=body.rep_id, team_id=body.team_id)
        expires_at = datetime.now(UTC) + parse_lifetime(body.expires_in) if body.expires_in else None
    except ValueError as exc:
        field = "expires_in" if "lifetime" in str(exc) else "role"
        message = str(exc).replace("--boards", "boards").replace("--rep-id", "rep_id").replace("--team-id", "team_id")
        raise Problem(422, message, errors=[{"index": None, "field": field, "message": message}]) from exc
    _check_scope_exists(gw, scope)
    key_id, key = await create_key(gw.sessions, role=body.role, name=body.name, scope=scope, expires_at=expires_at)
    info = next(i for i in await list_keys(gw.sessions, key_id=key_id))
    url = _screen_url(request, body, scope, key)
    response.headers["Cache-Control"] = "no-store"
    qr = segno.make(url, error="m").svg_data_uri(scale=6, border=2) if url else None
    return {**_key_entry(info), "key": key, "url": url, "qr_svg": qr}


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke a key (and the sessions opened with it)",
               responses=PROBLEMS, tags=["keys"])
async def delete_key(key_id: str, gw: GatewayDep, _: AdminKey) -> Response:
    if not await revoke_key(gw.sessions, key_id):
        raise Problem(404, f"No active key with id {key_id!r}.")
    return Response(status_code=204)


def _key_entry(info: Any) -> dict[str, Any]:
    scope: Scope = info.scope
    return {"key_id": info.key_id, "name": info.name, "role": info.role, "scope": scope.describe(info.role),
            "boards": sorted(scope.boards), "rep_id": scope.rep_id, "team_id": scope.team_id, "state": info.state,
            "created_at": info.created_at, "expires_at": info.expires_at, "last_used_at": info.last_used_at,
            "revoked_at": info.revoked_at}


def _check_scope_exists(gw: Any, scope: Scope) -> None:
    """A scoped key for a board, rep or team that does not exist is a typo, not a key anyone wants."""
    problems = [("boards", f"no board {b!r}") for b in sorted(scope.boards) if gw.board(b) is None]
    if scope.rep_id is not None and not gw.rep_known(scope.rep_id):
        problems.append(("rep_id", f"no rep {scope.rep_id!r} on the roster or in events"))
    if scope.team_id is not None and scope.team_id not in gw.config.state.teams():
        problems.append(("team_id", f"no team {scope.team_id!r} on the roster"))
    if problems:
        raise Problem(422, "; ".join(m for _, m in problems) + "; create it first or fix the id.",
                      errors=[{"index": None, "field": f, "message": m} for f, m in problems])


def _screen_url(request: Request, body: KeyRequest, scope: Scope, key: str) -> str | None:
    """The screen a key of this role opens, with the key in `?token=` (traded for a cookie on first load)."""
    if body.screen:
        path, _, query = body.screen.partition("?")
    elif body.role == "screen":
        boards = sorted(scope.boards)
        path, query = ((f"/screens/board/{quote(boards[0], safe='')}", "") if len(boards) == 1
                       else ("/screens/rotate", urlencode({"boards": ",".join(boards)})))
    elif body.role == "rep":
        path, query = f"/screens/rep/{quote(scope.rep_id or '', safe='')}", ""
    elif body.role == "manager":
        path, query = f"/screens/team/{quote(scope.team_id or '', safe='')}", ""
    elif body.role == "viewer":
        path, query = "/screens/", ""
    elif body.role == "admin":
        path, query = "/console/", ""
    else:
        return None  # an ingest key opens no screen
    base = str(request.base_url).rstrip("/")
    return f"{base}{path}?{query + '&' if query else ''}{urlencode({'token': key})}"


# --- roster ----------------------------------------------------------------------------------------------------

ROSTER_COLUMNS: Final = ("rep_id", "name", "team_id", "email", "timezone")
MAX_ROSTER_ROWS: Final = 10_000


class RosterChange(BaseModel):
    row: int = Field(description="the line of the file (the header is line 1)")
    rep_id: str
    action: Literal["add", "change", "unchanged"]
    fields: dict[str, dict[str, Any]] = Field(default_factory=dict, description="field → {from, to}")


class RosterImport(BaseModel):
    dry_run: bool
    saved: bool
    rows: int
    added: int
    changed: int
    unchanged: int
    changes: list[RosterChange]
    errors: list[dict[str, Any]] = Field(description="[{index, row, field, message}]: index counts data rows from 0")


@router.post(
    "/roster/import",
    summary="Add and change reps from a CSV (rep_id,name,team_id,email,timezone): preview with dry_run=true",
    response_model=RosterImport,
    responses=problem_responses(*KEYED, 413),
    openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
    tags=["console"],
)
async def import_roster(
    request: Request, gw: GatewayDep, _: AdminKey,
    dry_run: Annotated[bool, Query(description="check and preview only: nothing is saved")] = False,
) -> Any:
    """All or nothing: a file with any bad row saves nothing (422 listing every bad row); a dry run answers 200
    with the same rows and errors and saves nothing either."""
    rows = read_upload(await request.body(), ROSTER_COLUMNS, required=("rep_id", "name"), max_rows=MAX_ROSTER_ROWS)
    documents, changes, errors = _read_roster(rows, gw)
    counts = {action: sum(1 for c in changes if c["action"] == action) for action in ("add", "change", "unchanged")}
    result = {"dry_run": dry_run, "saved": False, "rows": len(rows), "changes": changes, "errors": errors,
              "added": counts["add"], "changed": counts["change"], "unchanged": counts["unchanged"]}
    if dry_run:
        return result
    if errors:
        first = "; ".join(f"line {e['row']}: {e['field']}: {e['message']}" for e in errors[:3])
        raise Problem(422, f"{len(errors)} problem(s) in the file, nothing was saved: {first}.",
                      errors=errors[:100], error_count=len(errors))
    to_save = {c["rep_id"]: documents[c["rep_id"]] for c in changes if c["action"] != "unchanged"}
    if to_save:
        stored = await gw.config_store.put_many("rep", to_save, gw.settings.clock.now())
        for rep_id, body in stored.items():
            await publish_entry(gw, "rep", rep_id, body)
    return {**result, "saved": True}


def _read_roster(
    rows: list[CsvRow], gw: Any
) -> tuple[dict[str, BaseModel], list[dict[str, Any]], list[dict[str, Any]]]:
    """Each row as the rep it would store, what it changes, and every row's problems (a team must exist)."""
    roster, teams = gw.config.state.reps(), gw.config.state.teams()
    documents: dict[str, BaseModel] = {}
    changes: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for row in rows:
        def problem(field: str, message: str, row: CsvRow = row) -> None:
            errors.append({"index": row.number, "row": row.line, "field": field, "message": message})

        if row.cells is None:
            problem("row", f"has {row.width} cells, not as many as the header names")
            continue
        values = {name: cell or None for name, cell in row.cells.items()}
        rep_id = values.get("rep_id") or ""
        if not rep_id:
            problem("rep_id", "empty: every row needs the rep's id")
            continue
        if rep_id in seen:
            problem("rep_id", f"{rep_id!r} is also on line {seen[rep_id]}")
            continue
        seen[rep_id] = row.line
        stored = roster.get(rep_id)
        try:
            # A column the file leaves out keeps the stored value; the stored team history goes back as it is.
            document = validate_entry("rep", rep_id, {**(stored or {}), **values})
        except Problem as exc:
            for error in exc.errors or []:
                problem(str(error["field"]), str(error["message"]))
            continue
        team = getattr(document, "team_id", None)
        if team is not None and team not in teams:
            problem("team_id", f"no team {team!r}: add the team first, or fix the id")
            continue
        documents[rep_id] = document
        new = document.model_dump(mode="json")
        fields = {k: {"from": (stored or {}).get(k), "to": new.get(k)} for k in ROSTER_COLUMNS
                  if (stored or {}).get(k) != new.get(k)}
        action = "add" if stored is None else ("change" if fields else "unchanged")
        changes.append({"row": row.line, "rep_id": rep_id, "action": action, "fields": fields if stored else {}})
    return documents, changes, errors


class UnknownRep(BaseModel):
    rep_id: str
    last_event_at: datetime | None = Field(None, description="when the newest event scored for the rep was accepted")


@router.get("/roster/unknown-reps", summary="Reps that appear in events but not on the roster",
            response_model=list[UnknownRep], responses=KEYED_PROBLEMS, tags=["console"])
async def unknown_reps(gw: GatewayDep, _: AdminKey) -> Any:
    roster = gw.config.state.reps()
    found = [(view.accepted_ms, rep_id) for rep_id, view in gw.model.reps.items() if rep_id not in roster]
    found.sort(key=lambda item: (-item[0], item[1]))
    return [{"rep_id": rep_id, "last_event_at": datetime.fromtimestamp(ms / 1000, UTC) if ms else None}
            for ms, rep_id in found]


# --- a board before it is saved ---------------------------------------------------------------------------------


@router.post("/boards/preview", summary="A board's standings as they would show, without saving it",
             responses=problem_responses(*KEYED, 413), tags=["console"])
async def preview_board(gw: GatewayDep, _: AdminKey, body: Annotated[Any, Body()], date: DateQuery = None) -> Any:
    board_id = body.get("board_id") if isinstance(body, dict) else None
    board = validate_entry("board", str(board_id or "preview"), body)
    assert isinstance(board, Board)
    if board.plan_id is not None and gw.plan(board.plan_id) is None:
        raise Problem(422, f"No plan {board.plan_id!r}; pick a plan that exists or none.",
                      errors=[{"index": None, "field": "plan_id", "message": "no such plan"}])
    return await gw.standings(board, date)


# --- health at a glance -----------------------------------------------------------------------------------------


@router.get("/overview", summary="The pipeline's health at a glance: events today, lag, sources, notifications",
            responses=KEYED_PROBLEMS, tags=["console"])
async def overview(request: Request, gw: GatewayDep, _: AdminKey) -> dict[str, Any]:
    now = gw.now()
    today = gw.today()
    async with gw.sessions() as session:
        days = (await session.execute(select(SourceDay).where(SourceDay.day == today.isoformat()))).scalars().all()
        newest = (await session.execute(
            select(SourceDay.source, func.max(SourceDay.last_accepted_at)).group_by(SourceDay.source)
        )).all()
        ledger_end = int((await session.execute(select(func.max(LedgerEntry.seq)))).scalar() or 0)
        cursor = await relay_cursor(session)
        failing = (await session.execute(
            select(NotificationDelivery.notification_id, NotificationDelivery.rep_id, NotificationDelivery.channel,
                   NotificationDelivery.status, NotificationDelivery.attempts, NotificationDelivery.last_error,
                   NotificationDelivery.due_at)
            .where((NotificationDelivery.status == "failed")
                   | ((NotificationDelivery.status == "pending") & (NotificationDelivery.attempts > 0)))
            .order_by(NotificationDelivery.delivery_id.desc()).limit(20)
        )).all()
        failing_count = int((await session.execute(
            select(func.count()).select_from(NotificationDelivery).where(NotificationDelivery.status == "failed")
        )).scalar() or 0)
        inbox = {(c, status): int(n) for c, status, n in (await session.execute(
            select(ConnectorInboxRow.connector, ConnectorInboxRow.status, func.count())
            .group_by(ConnectorInboxRow.connector, ConnectorInboxRow.status)
        )).all()}
    enabled = gw.settings.connectors_on
    connectors = [{"connector": name, "enabled": name in enabled, "pending": inbox.get((name, "pending"), 0),
                   "rejected": inbox.get((name, "rejected"), 0)}
                  for name in CONNECTORS if name in enabled or any(c == name for c, _ in inbox)]
    today_by_source = {row.source: row for row in days}
    sources = [{"source": source, "last_accepted_at": as_utc(last),
                "events_today": today_by_source[source].events if source in today_by_source else 0,
                "last_event_id": today_by_source[source].last_event_id if source in today_by_source else None}
               for source, last in sorted(newest, key=lambda r: as_utc(r[1]), reverse=True)]
    progress = gw.readiness.progress()
    # The read model stamps messages with the machine's time; the page tells time by the services' clock.
    shift_ms = int(gw.settings.clock.offset().total_seconds() * 1000)
    snapshot_ms = gw.model.last_message_ms + shift_ms if gw.model.last_message_ms else 0
    ingest = f"{request.url.scheme}://{request.url.hostname}:{gw.settings.ingest_port}"
    return {
        "at": now.isoformat(),
        "today": today.isoformat(),
        "events_today": sum(row.events for row in days),
        "sources": sources,
        "pipeline": {
            **progress.as_json(),
            "waiting_to_publish": max(0, ledger_end - cursor),
            "behind": gw.readiness.live_behind() if progress.caught_up else progress.behind,
            "last_board_change_at": datetime.fromtimestamp(snapshot_ms / 1000, UTC) if snapshot_ms else None,
            "reps": len(gw.model.reps),
        },
        "connectors": connectors,
        "notifications": {
            "failed": failing_count,
            "retrying": sum(1 for row in failing if row.status == "pending"),
            "recent": [{"notification_id": r.notification_id, "rep_id": r.rep_id, "channel": r.channel,
                        "status": "retrying" if r.status == "pending" else r.status, "attempts": r.attempts,
                        "last_error": r.last_error, "next_try_at": as_utc(r.due_at) if r.status == "pending" else None}
                       for r in failing],
        },
        "links": {
            "ready": "/v1/ready",
            "metrics": "/metrics",
            "notifications": "/v1/notifications?limit=100",
            "connectors": f"{ingest}/v1/connectors",
            "events": f"{ingest}/v1/events/",
        },
    }


__all__ = ["ROSTER_COLUMNS", "router"]
