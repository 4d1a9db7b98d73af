"""A plan applied to one rep: which plan-period a date falls in, whether the plan covers the rep, and the
progress there. Shared by the scoring worker (snapshots, tiers reached) and the gateway (any date)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import Calendar, PeriodKind
from services.scoring.domain.plans import (
    ParticipantsLike,
    TierLike,
    applies_to_period,
    is_participant,
    quota_for,
)
from services.scoring.domain.progress import Progress, compute_progress


class GateLike(Protocol):
    """What the rules read from a plan's gate; `schemas.config.Gate` is one."""

    @property
    def metric(self) -> str: ...

    @property
    def min(self) -> float | Decimal: ...


class PlanLike(Protocol):
    """What the rules read from a plan; `schemas.config.Plan` is one."""

    @property
    def plan_id(self) -> str: ...

    @property
    def metric(self) -> str: ...

    @property
    def period(self) -> str: ...

    @property
    def effective_from(self) -> date: ...

    @property
    def effective_to(self) -> date | None: ...

    @property
    def participants(self) -> ParticipantsLike: ...

    @property
    def quota(self) -> Decimal: ...

    @property
    def quota_overrides(self) -> Mapping[str, Decimal]: ...

    @property
    def tiers(self) -> Sequence[TierLike]: ...

    @property
    def payout_cap(self) -> Decimal | None: ...

    @property
    def gate(self) -> GateLike | None: ...

    @property
    def credit_roles(self) -> Collection[str]: ...


TotalsLookup = Callable[[PeriodKind, str], KpiTotals]


def plan_period(plan: PlanLike, calendar: Calendar, on: date) -> str | None:
    """The plan's period key containing `on`, or None when the plan is not in effect for that period."""
    kind: PeriodKind = plan.period  # type: ignore[assignment]
    key = calendar.key_for_date(on, kind)
    start, _ = calendar.parse_key(kind, key)
    return key if applies_to_period(plan.effective_from, plan.effective_to, start) else None


def plan_progress(
    plan: PlanLike,
    *,
    rep_id: str,
    team_id: str | None,
    totals: TotalsLookup,
    calendar: Calendar,
    on: date,
    now: datetime,
) -> Progress | None:
    """The rep's progress in `plan` for the period containing `on`; None if the plan doesn't cover them."""
    if not is_participant(rep_id, team_id, plan.participants):
        return None
    key = plan_period(plan, calendar, on)
    if key is None:
        return None
    kind: PeriodKind = plan.period  # type: ignore[assignment]
    found = totals(kind, key)
    # A manager plan measures the team roll-up, a rep's plan the rep's own credit.
    period_totals = found.rollup(plan.credit_roles) if plan.participants.managers else found.credited(plan.credit_roles)
    gate = plan.gate
    return compute_progress(
        plan_id=plan.plan_id,
        period_key=key,
        metric=plan.metric,
        value=period_totals.value(plan.metric),
        quota=quota_for(rep_id, plan.quota, plan.quota_overrides),
        tiers=plan.tiers,
        cap=plan.payout_cap,
        gate_value=period_totals.value(gate.metric) if gate else None,
        gate_min=gate.min if gate else None,
        elapsed=calendar.elapsed_fraction(kind, key, now),
    )
