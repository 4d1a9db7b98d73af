"""Period close and commission statements: close a plan's period (admin), a rep's statements, one statement as
JSON or CSV (docs/statements.md)."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.api.deps import GatewayDep
from services.api.gateway import Gateway
from services.api.responses import PROBLEMS
from services.api.scope import require_rep
from services.api.statements import StatementBook, parse_statement_id, statement_id
from services.common.auth import Principal
from services.common.csv_cells import neutralise
from services.common.deps import AdminKey, ReaderKey
from services.common.problems import KEYED, Problem, problem_responses

router = APIRouter(prefix="/v1")


def book(gw: Gateway) -> StatementBook:
    return StatementBook(gw.sessions, gw.calendar)


def require_pay_reader(who: Principal, gw: Gateway, rep_id: str) -> None:
    """A rep's pay: admins and viewers, the rep's own key, the manager of the rep's team — not a TV's key."""
    if who.role == "screen":
        raise Problem(403, "A screen key reads boards, not statements; use the rep's own key or a manager's.")
    require_rep(who, gw, rep_id)


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
    state = gw.config.state
    participants = [(rep_id, doc.get("team_id")) for rep_id, doc in state.reps().items()]
    return await book(gw).close(plan, period_key, force=force, closed_by=who.key_id, now=gw.now(),
                                participants=participants)


@router.get("/reps/{rep_id}/statements", summary="A rep's statements: closed periods and the open ones",
            responses=PROBLEMS)
async def rep_statements(rep_id: str, gw: GatewayDep, who: ReaderKey) -> Any:
    require_pay_reader(who, gw, rep_id)
    if not gw.rep_known(rep_id):
        raise Problem(404, f"No rep {rep_id!r}: it is not on the roster and has no events.")
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
