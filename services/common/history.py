"""KPI history in SQL (`kpi_history`): the totals of periods that left scoring's hot state. Scoring writes them
(services/scoring/history.py); the gateway reads them to answer older periods."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from services.common.db import Sessions
from services.common.models import KpiHistory
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.rep_state import MINUTE, minute_key

__all__ = ["contest_history", "history_totals"]


async def history_totals(sessions: Sessions, rep_id: str, kind: str, key: str) -> KpiTotals | None:
    """The totals of one rep and period from history, or None when history has none."""
    async with sessions() as session:
        row = (
            await session.execute(
                select(KpiHistory.totals).where(
                    KpiHistory.rep_id == rep_id, KpiHistory.period == kind, KpiHistory.period_key == key
                )
            )
        ).scalar_one_or_none()
    return KpiTotals.from_dict(orjson.loads(row)) if row else None


async def contest_history(
    sessions: Sessions, before: dict[str, int], first_minute: int, end_minute: int
) -> dict[str, KpiTotals]:
    """Each rep's totals over the UTC minutes `[first_minute, end_minute)` that are in history: those before
    the rep's minute floor (`before[rep_id]`, from the snapshot the caller holds, whose contest totals cover
    the minutes from the floor on). Reps with nothing there are left out."""
    if not before:
        return {}
    async with sessions() as session:
        rows = await session.execute(
            select(KpiHistory.rep_id, KpiHistory.period_key, KpiHistory.totals).where(
                KpiHistory.rep_id.in_(sorted(before)),
                KpiHistory.period == MINUTE,
                KpiHistory.period_key >= minute_key(first_minute),
                KpiHistory.period_key < minute_key(end_minute),
            )
        )
        found: dict[str, list[KpiTotals]] = {}
        for rep_id, key, totals in rows:
            if int(key) < before[rep_id]:
                found.setdefault(rep_id, []).append(KpiTotals.from_dict(orjson.loads(totals)))
    return {rep_id: KpiTotals().merged(parts) for rep_id, parts in found.items()}
