"""Dependency aliases for gateway routes."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Depends, Query, Request

from services.api.gateway import Gateway
from services.common.problems import Problem
from services.scoring.domain.periods import PERIOD_KINDS, PeriodKind


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(gateway)]
DateQuery = Annotated[date | None, Query(alias="date", description="a date in the business time zone; default today")]


def period_kind(period: Annotated[str, Query(description="day, week, month, quarter or year")] = "month") -> PeriodKind:
    if period not in PERIOD_KINDS:
        raise Problem(
            422,
            f"Unknown period {period!r}; use one of {', '.join(PERIOD_KINDS)}.",
            errors=[{"index": None, "field": "period", "message": f"one of {', '.join(PERIOD_KINDS)}"}],
        )
    return period


PeriodQuery = Annotated[PeriodKind, Depends(period_kind)]
