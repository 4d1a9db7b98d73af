"""Dependency aliases for gateway routes."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Depends, Query, Request

from schemas.currencies import is_currency_code
from schemas.kpis import CREDIT_ROLES
from services.api.gateway import Gateway
from services.common.problems import Problem
from services.scoring.domain.periods import PERIOD_KINDS, PeriodKind


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(gateway)]
DateQuery = Annotated[date | None, Query(alias="date", description="a date in the business time zone; default today")]


def _bad_query(parameter: str, detail: str, expected: str) -> Problem:
    """A 422 for a query parameter: the whole story in `detail`, and `expected` as its one error's message."""
    return Problem(422, detail, errors=[{"index": None, "field": parameter, "message": expected}])


def period_kind(period: Annotated[str, Query(description="day, week, month, quarter or year")] = "month") -> PeriodKind:
    if period not in PERIOD_KINDS:
        kinds = ", ".join(PERIOD_KINDS)
        raise _bad_query("period", f"Unknown period {period!r}; use one of {kinds}.", f"one of {kinds}")
    return period


PeriodQuery = Annotated[PeriodKind, Depends(period_kind)]


def credit_roles(
    roles: Annotated[
        str | None,
        Query(description="the credit roles to count, comma-separated: primary, overlay (default: a rep's own KPIs"
                          " count both, a team's the primary credit only)"),
    ] = None,
) -> frozenset[str] | None:
    """The `roles` a KPI answer counts, or None for the default of what is asked (CONTRACT §3)."""
    if roles is None:
        return None
    asked = frozenset(role.strip() for role in roles.split(","))
    unknown = sorted(asked.difference(CREDIT_ROLES))
    if unknown:
        detail = f"Unknown credit role {', '.join(map(repr, unknown))}; use primary, overlay or both, comma-separated."
        raise _bad_query("roles", detail, f"one or more of {', '.join(CREDIT_ROLES)}")
    return asked


RolesQuery = Annotated[frozenset[str] | None, Depends(credit_roles)]


def currency_code(
    currency: Annotated[
        str | None,
        Query(description="an ISO 4217 code: the KPIs of the deals in that currency, in it (default: every deal, in "
                          "the reporting currency)"),
    ] = None,
) -> str | None:
    if currency is not None and not is_currency_code(currency):
        raise _bad_query(
            "currency", f"{currency!r} is not an ISO 4217 currency code; use one such as EUR.", "an ISO 4217 code"
        )
    return currency


CurrencyQuery = Annotated[str | None, Depends(currency_code)]
