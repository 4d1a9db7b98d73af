"""KPI history: periods that leave a worker's hot state are added to SQL, so older periods stay queryable.

Each eviction is added exactly once: a per-rep mark in the same transaction records the last one applied."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import orjson
from sqlalchemy import select, tuple_
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.common import db
from services.common.backoff import Backoff
from services.common.db import Sessions
from services.common.models import KpiHistory, KpiHistoryMark
from services.common.settings import Settings
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.rep_state import PeriodEviction

log = logging.getLogger("salespulse.scoring.history")

UNREACHABLE = (OperationalError, InterfaceError, OSError)
"""What a database outage raises (refused or cut connections, a restart): worth waiting out."""


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, UNREACHABLE)


async def through_outages(work: Callable[[], Awaitable[None]], backoff: Backoff, what: str) -> None:
    """Run `work` (one transaction) until it succeeds, waiting out a database outage; any other error is raised.

    The batch that called it is not acknowledged until this returns, so waiting is the safe answer to an
    unreachable database (the partitions' lag grows and is visible); stopping the worker would only make
    another one redo the batch against the same outage."""
    while True:
        try:
            await work()
        except BaseException as exc:
            if not _unreachable(exc):
                raise
            wait = backoff.next()
            log.warning("%s paused (database unreachable: %s: %s); retrying in %.1f s",
                        what, type(exc).__name__, exc, wait)
            await asyncio.sleep(wait)
        else:
            backoff.reset()
            return


class HistoryWriter:
    def __init__(self, settings: Settings, backoff: Backoff | None = None) -> None:
        self._url = settings.db_url
        self._sessions: Sessions | None = None
        self._backoff = backoff or Backoff(first=0.2, most=5.0, jitter=0.5)

    async def add(self, evictions: Sequence[tuple[str, Sequence[PeriodEviction]]]) -> None:
        """Add each rep's evictions to kpi_history, waiting out a database outage (`through_outages`)."""
        await through_outages(lambda: self._add(evictions), self._backoff, "KPI history")

    async def _add(self, evictions: Sequence[tuple[str, Sequence[PeriodEviction]]]) -> None:
        """Add each rep's evictions (those above its mark) to kpi_history, in one transaction.

        A rep's first batch can evict hundreds of days at once: marks and existing rows are read in a few
        queries, the deltas summed in memory, and the rows written together (not a read per eviction)."""
        if self._sessions is None:
            self._sessions = db.sessionmaker(db.create_engine(self._url))
        now = datetime.now(UTC)
        reps = sorted({rep_id for rep_id, _ in evictions})
        async with self._sessions() as session, session.begin():
            marks = {
                mark.rep_id: mark
                for mark in (
                    await session.execute(
                        select(KpiHistoryMark).where(KpiHistoryMark.rep_id.in_(reps)).with_for_update()
                    )
                ).scalars()
            }
            deltas: dict[tuple[str, str, str], KpiTotals] = {}
            tops: dict[str, int] = {}
            for rep_id, items in evictions:
                mark = marks.get(rep_id)
                done = max(mark.seq if mark else 0, tops.get(rep_id, 0))
                fresh = [e for e in items if e.seq > done]
                if not fresh:
                    continue
                for eviction in fresh:
                    where = (rep_id, eviction.kind, eviction.key)
                    known = deltas.get(where)
                    deltas[where] = eviction.totals if known is None else known + eviction.totals
                tops[rep_id] = max(e.seq for e in fresh)
            if not deltas:
                return
            existing: dict[tuple[str, str, str], KpiHistory] = {}
            wanted = list(deltas)
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = await session.execute(
                    select(KpiHistory)
                    .where(tuple_(KpiHistory.rep_id, KpiHistory.period, KpiHistory.period_key).in_(chunk))
                    .with_for_update()
                )
                for row in rows.scalars():
                    existing[(row.rep_id, row.period, row.period_key)] = row
            for (rep_id, kind, key), totals in deltas.items():
                known_row = existing.get((rep_id, kind, key))
                if known_row is None:
                    session.add(
                        KpiHistory(
                            rep_id=rep_id,
                            period=kind,
                            period_key=key,
                            totals=orjson.dumps(totals.to_dict()).decode(),
                            updated_at=now,
                        )
                    )
                else:
                    total = KpiTotals.from_dict(orjson.loads(known_row.totals)) + totals
                    known_row.totals = orjson.dumps(total.to_dict()).decode()
                    known_row.updated_at = now
            for rep_id, top in tops.items():
                mark = marks.get(rep_id)
                if mark is None:
                    session.add(KpiHistoryMark(rep_id=rep_id, seq=top))
                else:
                    mark.seq = top
