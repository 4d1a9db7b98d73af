"""KPI queries over the read model, with SQL history for periods that left the workers' hot state."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker

from services.api.read_model import ReadModel
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import PERIOD_KINDS, Calendar, PeriodKind
from services.scoring.history import history_totals


def today(calendar: Calendar, now: datetime | None = None) -> date:
    return calendar.local_date(now or datetime.now(calendar.zone))


async def rep_totals(
    model: ReadModel, sessions: async_sessionmaker, rep_id: str, kind: PeriodKind, key: str
) -> KpiTotals:
    view = model.reps.get(rep_id)
    if view is not None and view.state.holds(kind, key):
        return view.state.totals(kind, key)
    return await history_totals(sessions, rep_id, kind, key) or KpiTotals()


def current_kpis(calendar: Calendar, model: ReadModel, rep_id: str, now: datetime | None = None) -> dict[str, object]:
    """The rep's KPIs for the current day, week, month, quarter and year (the live part of a rep screen)."""
    view = model.reps.get(rep_id)
    on = today(calendar, now)
    out: dict[str, object] = {}
    for kind in PERIOD_KINDS:
        key = calendar.key_for_date(on, kind)
        totals = view.state.totals(kind, key) if view else KpiTotals()
        out[kind] = {"period_key": key, "kpis": totals.report()}
    return out
