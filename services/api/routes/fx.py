"""FX rates (CONTRACT §1, Currencies): daily rates from each currency to the reporting currency, PUT as JSON or as a
CSV file, stored as one document per currency (config kind `fx`) and published on the config topic; and the admin
list of won deals whose credit is held for want of a rate."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import select

from schemas.config import FxRate, FxRates
from schemas.events import parse_exactly
from services.api.csv_upload import read_upload
from services.api.deps import GatewayDep
from services.api.responses import KEYED_PROBLEMS, PROBLEMS
from services.api.routes.config import PUT_PROBLEMS, publish_entry
from services.common.deps import AdminKey, ReaderKey
from services.common.models import HeldDeal
from services.common.problems import Problem, problem_responses

router = APIRouter(prefix="/v1")

CSV_COLUMNS = ("currency", "date", "rate")
MAX_ROWS = 50_000
MAX_ERRORS = 50
"""Errors reported per request: enough to fix a file in one go, bounded in size."""


def _rows_from_json(body: bytes) -> list[Any]:
    data, problems = parse_exactly(body)
    if problems:
        raise Problem(400, f"The {problems[0].message}. Send {{\"rates\": [...]}} or a CSV file.")
    rows = data.get("rates") if isinstance(data, dict) else data
    if not isinstance(rows, list) or (isinstance(data, dict) and set(data) != {"rates"}):
        raise Problem(
            422, 'Send {"rates": [{"currency": "EUR", "date": "2026-03-02", "rate": "1.0832"}, ...]} or a bare list.'
        )
    return rows


def _rows_from_csv(body: bytes) -> list[Any]:
    return [row.cells if row.cells is not None else {"_width": row.width}
            for row in read_upload(body, CSV_COLUMNS)]


def _validated(rows: list[Any], csv_file: bool) -> list[FxRate]:
    """Every row as an FxRate, or a 422 naming each bad row (by CSV line, or by index in the JSON list)."""
    if len(rows) > MAX_ROWS:
        raise Problem(413, f"{len(rows):,} rates in one request; send at most {MAX_ROWS:,} at a time.")
    rates, errors = [], []
    for index, row in enumerate(rows):
        where = {"index": index, "line": index + 2} if csv_file else {"index": index}
        if isinstance(row, dict) and "_width" in row:
            errors.append({**where, "field": "", "message": f"has {row['_width']} values, the header names 3"})
            continue
        try:
            rates.append(FxRate.model_validate(row))
        except ValidationError as exc:
            errors += [
                {**where, "field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
            ]
    if errors:
        first = errors[0]
        at = f"line {first['line']}" if csv_file else f"rates[{first['index']}]"
        raise Problem(
            422,
            f"{len(errors)} problem(s) in the rates, nothing was saved; the first, at {at}: {first['field']} "
            f"{first['message']}.",
            errors=errors[:MAX_ERRORS], error_count=len(errors),
        )
    if not rates:
        raise Problem(422, "No rates in the request: send at least one {currency, date, rate}.")
    return rates


_RATE_ROW = {
    "type": "object",
    "required": ["currency", "date", "rate"],
    "properties": {
        "currency": {"type": "string", "example": "EUR"},
        "date": {"type": "string", "format": "date"},
        "rate": {"oneOf": [{"type": "string"}, {"type": "number"}], "example": "1.0832"},
    },
}


@router.put(
    "/fx-rates",
    name="put_fx_rates",
    summary="Add or correct daily FX rates (JSON or CSV: currency,date,rate)",
    responses={**PUT_PROBLEMS, **problem_responses(400, 413)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {
                    "type": "object", "required": ["rates"], "additionalProperties": False,
                    "properties": {"rates": {"type": "array", "items": _RATE_ROW}},
                }},
                "text/csv": {"schema": {"type": "string", "example": "currency,date,rate\nEUR,2026-03-02,1.0832\n"}},
            },
        }
    },
)
async def put_rates(request: Request, gw: GatewayDep, _: AdminKey) -> Any:
    """Each rate converts one unit of `currency` on `date` (business timezone) to the reporting currency. A date
    already known takes the new rate: a correction, which restates the deals it converted. All or nothing."""
    body = await request.body()
    csv_file = request.headers.get("content-type", "").split(";")[0].strip().lower() == "text/csv"
    rates = _validated(_rows_from_csv(body) if csv_file else _rows_from_json(body), csv_file)
    reporting = gw.settings.currency
    if any(rate.currency == reporting for rate in rates):
        raise Problem(
            422, f"{reporting} is the reporting currency: its rate is always 1; leave it out.",
            errors=[{"index": None, "field": "currency", "message": f"not the reporting currency {reporting}"}],
        )
    changed = await gw.config_store.merge_rates(rates)
    for currency, document in changed.items():
        await publish_entry(gw, "fx", currency, document)
    return {"received": len(rates), "currencies_changed": sorted(changed)}


@router.get("/fx-rates", name="list_fx_rates", summary="Every currency's FX rates", response_model=list[FxRates],
            responses=KEYED_PROBLEMS)
async def list_rates(gw: GatewayDep, _: ReaderKey) -> Any:
    return await gw.config_store.list("fx")


@router.get("/fx-rates/held", name="list_held_deals", summary="Won deals whose credit waits for an FX rate",
            responses=KEYED_PROBLEMS)
async def held_deals(
    gw: GatewayDep,
    _: AdminKey,
    currency: Annotated[str | None, Query(description="only this currency")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    after: Annotated[str | None, Query(description="the last deal_id of the previous page")] = None,
) -> Any:
    query = select(HeldDeal).order_by(HeldDeal.deal_id).limit(limit + 1)
    if currency is not None:
        query = query.where(HeldDeal.currency == currency)
    if after is not None:
        query = query.where(HeldDeal.deal_id > after)
    async with gw.sessions() as session:
        rows = list((await session.execute(query)).scalars())
    more = len(rows) > limit
    return {
        "held": [
            {
                "deal_id": row.deal_id, "currency": row.currency, "amount": row.amount, "closed_on": row.closed_on,
                "rep_ids": json.loads(row.rep_ids), "event_id": row.event_id,
                "held_since": row.held_since.isoformat(),
            }
            for row in rows[:limit]
        ],
        "next_after": rows[limit - 1].deal_id if more else None,
    }


@router.get("/fx-rates/{currency}", name="get_fx_rates", summary="One currency's FX rates", response_model=FxRates,
            responses=PROBLEMS)
async def get_rates(currency: str, gw: GatewayDep, _: ReaderKey) -> Any:
    found = await gw.config_store.get("fx", currency)
    if found is None:
        raise Problem(404, f"No FX rates for {currency!r}; PUT /v1/fx-rates adds them.")
    return found


@router.delete("/fx-rates/{currency}", name="delete_fx_rates", summary="Remove every rate of one currency",
               status_code=204, responses=PROBLEMS)
async def delete_rates(currency: str, gw: GatewayDep, _: AdminKey) -> Response:
    """The currency's won deals are held again until it has rates."""
    if not await gw.config_store.delete("fx", currency):
        raise Problem(404, f"No FX rates for {currency!r}.")
    await publish_entry(gw, "fx", currency, None)
    return Response(status_code=204)
