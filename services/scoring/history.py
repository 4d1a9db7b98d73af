"""KPI history: periods that leave a worker's hot state are added to SQL, so older periods stay queryable.

Each eviction is added exactly once: a per-rep mark in the same transaction records the last one applied."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.common import db
from services.common.models import KpiHistory, KpiHistoryMark
from services.common.settings import Settings
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.rep_state import PeriodEviction


class HistoryWriter:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.db_url
        self._sessions: async_sessionmaker | None = None

    async def add(self, evictions: Sequence[tuple[str, Sequence[PeriodEviction]]]) -> None:
        """Add each rep's evictions (those above its mark) to kpi_history, in one transaction."""
        if self._sessions is None:
            self._sessions = db.sessionmaker(db.create_engine(self._url))
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            for rep_id, items in evictions:
                mark = await session.get(KpiHistoryMark, rep_id, with_for_update=True)
                done = mark.seq if mark else 0
                fresh = [e for e in items if e.seq > done]
                if not fresh:
                    continue
                for eviction in fresh:
                    row = await session.get(KpiHistory, (rep_id, eviction.kind, eviction.key), with_for_update=True)
                    if row is None:
                        session.add(
                            KpiHistory(
                                rep_id=rep_id,
                                period=eviction.kind,
                                period_key=eviction.key,
                                totals=orjson.dumps(eviction.totals.to_dict()).decode(),
                                updated_at=now,
                            )
                        )
                        await session.flush()
                    else:
                        total = KpiTotals.from_dict(orjson.loads(row.totals)) + eviction.totals
                        row.totals = orjson.dumps(total.to_dict()).decode()
                        row.updated_at = now
                top = max(e.seq for e in fresh)
                if mark is None:
                    session.add(KpiHistoryMark(rep_id=rep_id, seq=top))
                else:
                    mark.seq = top


async def history_totals(sessions: async_sessionmaker, rep_id: str, kind: str, key: str) -> KpiTotals | None:
    async with sessions() as session:
        row = (
            await session.execute(
                select(KpiHistory.totals).where(
                    KpiHistory.rep_id == rep_id, KpiHistory.period == kind, KpiHistory.period_key == key
                )
            )
        ).scalar_one_or_none()
    return KpiTotals.from_dict(orjson.loads(row)) if row else None
