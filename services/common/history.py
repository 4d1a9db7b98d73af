"""KPI history in SQL (`kpi_history`): the totals of periods that left scoring's hot state. Scoring writes them
(services/scoring/history.py); the gateway reads them to answer older periods."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from services.common.db import Sessions
from services.common.models import KpiHistory
from services.scoring.domain.kpis import KpiTotals

__all__ = ["history_totals"]


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
