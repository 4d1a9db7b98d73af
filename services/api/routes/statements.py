"""Period close and commission statements: close a plan's period (admin), a rep's statements, one statement as
JSON or CSV (docs/statements.md)."""

from __future__ import annotations

import csv
import io
import time
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from schemas.config import Plan
from services.api.deps import GatewayDep
from services.api.gateway import Gateway
from services.api.responses import PROBLEMS
from services.api.scope import require_rep
from services.api.statements import StatementBook, parse_statement_id, read_fold, statement_id
from services.common.auth import Principal
from services.common.csv_cells import neutralise
from services.common.deps import AdminKey, ReaderKey
from services.common.problems import KEYED, Problem, problem_responses

router = APIRouter(prefix="/v1")


def book(gw: Gateway) -> StatementBook:
    return StatementBook(gw.sessions, gw.calendar, gw.config.state, gw.settings.currency)


def require_pay_reader(who: Principal, gw: Gateway, rep_id: str, *, known: bool = False) -> None:
    """A rep's pay: admins and viewers, the rep's own key, the manager of the rep's team — not a TV's key;
    `known`: and the rep must be on the roster or have events (404)."""
    if who.role == "screen":
        raise Problem(403, "A screen key reads boards, not statements; use the rep's own key or a manager's.")
    require_rep(who, gw, rep_id)
    if known and not gw.rep_known(rep_id):
        raise Problem(404, f"No rep {rep_id!r}: it is not on the roster and has no events.")


def roster(gw: Gateway) -> list[tuple[str, str | None]]:
    """(rep, team) of every rep on the roster: the participants a plan may cover besides reps with events."""
    return [(rep_id, doc.get("team_id")) for rep_id, doc in gw.config.state.reps().items()]


@router.post(
    "/plans/{plan_id}/periods/{period_key}/close",
    summary="Close a plan's period: freeze every participant's statement",
    responses=problem_responses(*KEYED, 404, 409, s409="the period has not ended; close it early with force=true"),
)
async def close_period(
    plan_id: str, period_key: str, gw: GatewayDep, who: AdminKey,
    force: bool = Query(False, description="close a period that has not ended yet"),
) -> Any:
    plan = gw.plan(plan_id)
    if plan is None:
        raise Problem(404, f"No plan {plan_id!r}.")
    return await book(gw).close(plan, period_key, force=force, closed_by=who.key_id, now=gw.now(),
                                participants=roster(gw))


@router.post(
    "/plans/what-if",
    summary="A draft plan on real history: every participant's figures next to the live plan's, and the cost",
    responses=problem_responses(*KEYED),
)
async def what_if(
    gw: GatewayDep, who: AdminKey,
    body: Annotated[dict[str, Any], Body(description='{"plan": <a plan, CONTRACT §4>, "period_key": "2026-Q3"} '
                                                     'or "date": "2026-08-15" instead of period_key')],
) -> Any:
    try:
        draft = Plan.model_validate(body.get("plan"))
    except ValidationError as exc:
        raise Problem(422, "The draft plan is not valid: " + "; ".join(e["msg"] for e in exc.errors()[:5]),
                      errors=[{"index": None, "field": "plan." + ".".join(str(p) for p in e["loc"]),
                               "message": e["msg"]} for e in exc.errors()]) from None
    kind = draft.period
    if "period_key" in body:
        period_key = str(body["period_key"])
    else:
        try:
            on = date.fromisoformat(str(body.get("date") or gw.today().isoformat()))
        except ValueError:
            raise Problem(422, f"date {body.get('date')!r} is not a date (YYYY-MM-DD).") from None
        period_key = gw.calendar.key_for_date(on, kind)
    statements_book = book(gw)
    statements_book.period_bounds(draft, period_key)  # 422 for a key of another kind
    began = time.perf_counter()
    fold = await read_fold(gw.sessions, gw.config.state, gw.settings.currency)
    answer = statements_book.what_if(draft, gw.plan(draft.plan_id), period_key, roster(gw), fold, gw.now())
    answer["elapsed_ms"] = round((time.perf_counter() - began) * 1000)
    return answer


@router.get("/reps/{rep_id}/projection", summary="If the rep's open pipeline closed today at its amounts",
            responses=PROBLEMS)
async def projection(rep_id: str, gw: GatewayDep, who: ReaderKey) -> Any:
    require_pay_reader(who, gw, rep_id, known=True)
    fold = await read_fold(gw.sessions, gw.config.state, gw.settings.currency)
    found = book(gw).projection(gw.plans(), rep_id, gw.config.state.team_of(rep_id), gw.today(), fold, gw.now())
    return {"rep_id": rep_id, "plans": found}


@router.get("/reps/{rep_id}/statements", summary="A rep's statements: closed periods and the open ones",
            responses=PROBLEMS)
async def rep_statements(rep_id: str, gw: GatewayDep, who: ReaderKey) -> Any:
    require_pay_reader(who, gw, rep_id, known=True)
    statements_book = book(gw)
    listed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for plan in gw.plans():
        for _, document in sorted((await statements_book.frozen(plan.plan_id, rep_id)).items(), reverse=True):
            seen.add(document["statement_id"])
            listed.append(_summary(document))
    for progress in await gw.progress(rep_id, gw.today()):
        sid = statement_id(progress.plan_id, progress.period_key, rep_id)
        if sid not in seen:
            listed.append({"statement_id": sid, "plan_id": progress.plan_id, "period_key": progress.period_key,
                           "status": "open", "payout": str(progress.payout), "value": str(progress.value),
                           "closed_at": None})
    listed.sort(key=lambda s: (s["status"] != "open", s["period_key"]), reverse=False)
    return {"rep_id": rep_id, "statements": listed}


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    return {key: document.get(key) for key in ("statement_id", "plan_id", "period_key", "status", "value", "payout",
                                               "total_payout", "closed_at")}


@router.get("/statements/{statement_id}", summary="One statement, as JSON or CSV (?format=csv)", responses=PROBLEMS)
async def get_statement(
    statement_id: str, request: Request, gw: GatewayDep, who: ReaderKey,
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Any:
    plan_id, period_key, rep_id = parse_statement_id(statement_id)
    require_pay_reader(who, gw, rep_id)
    plan = gw.plan(plan_id)
    if plan is None:
        raise Problem(404, f"No statement {statement_id!r}: plan {plan_id!r} does not exist (any more).")
    team = gw.config.state.team_of(rep_id)
    document = await book(gw).statement(plan, period_key, rep_id, team, gw.now())
    if document is None:
        raise Problem(404, f"Rep {rep_id!r} has no statement in plan {plan_id!r} for {period_key}.")
    wants_csv = format == "csv" or "text/csv" in request.headers.get("accept", "")
    if wants_csv:
        return Response(as_csv(document), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="statement-{plan_id}-{period_key}-{rep_id}.csv"'})
    return document


def as_csv(document: dict[str, Any]) -> str:
    """The statement as a spreadsheet: a header block, then one row per line and per adjustment line."""
    out = io.StringIO()
    writer = csv.writer(out)

    def row(*cells: object) -> None:
        writer.writerow([neutralise("" if cell is None else str(cell)) for cell in cells])

    for name in ("plan_id", "period_key", "rep_id", "status", "closed_at", "metric", "value", "quota", "attainment",
                 "payout", "adjustments_payout", "total_payout"):
        row(name, document.get(name))
    row()
    row("section", "closed_period", "type", "deal_id", "kind", "stage", "amount", "share", "credit", "closed_at",
        "event_ids")
    for line in document["lines"]:
        row("line", "", line["type"], line.get("deal_id"), line.get("kind"), line.get("stage"), line.get("amount"),
            line.get("share"), line["credit"], line.get("closed_at"), " ".join(line["event_ids"]))
    for group in document.get("adjustments", []):
        for line in group["lines"]:
            row("adjustment", group["closed_period"], "deal" if "deal_id" in line else "activity",
                line.get("deal_id"), line.get("kind"), "", "", "", line["credit"], "", " ".join(line["event_ids"]))
        row("adjustment payout", group["closed_period"], "", "", "", "", "", "", group["payout"], "", "")
    return out.getvalue()
