"""The gateway's in-memory read model: the newest snapshot of every rep, rebuilt from the compacted
rep-snapshots topic at start-up and kept current by a consumer that reads every partition."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import TopicPartition

from schemas.messages import RepSnapshot, Totals, decode
from services.common.dead_letters import DeadLetters
from services.common.follower import TopicFollower
from services.common.settings import Settings
from services.common.topics import REP_SNAPSHOTS, topic_name
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import PeriodKind

log = logging.getLogger("salespulse.api.read_model")


@dataclass(frozen=True)
class RepView:
    """What the gateway knows of one rep: the newest `rep-snapshots` message (schemas.messages.RepSnapshot)."""

    snapshot: RepSnapshot

    @property
    def rep_id(self) -> str:
        return self.snapshot.rep_id

    @property
    def version(self) -> int:
        return self.snapshot.version

    @property
    def updated_ms(self) -> int:
        return self.snapshot.updated_ms

    @property
    def accepted_ms(self) -> int:
        return self.snapshot.accepted_ms

    @property
    def minute_floor(self) -> int | None:
        return self.snapshot.minute_floor

    def totals(self, kind: PeriodKind, key: str) -> KpiTotals | None:
        """The period's totals (zeros when the rep had none), or None when the period is older than the hot
        state and lives in SQL history."""
        if not self.snapshot.holds(kind, key):
            return None
        found = self.snapshot.periods.get(kind, {}).get(key)
        return KpiTotals() if found is None else kpi_totals(found)

    def contest(self, board_id: str) -> KpiTotals | None:
        """The rep's totals in a contest board's window, or None when it has none."""
        found = self.snapshot.contests.get(board_id)
        return None if found is None else kpi_totals(found)


def kpi_totals(totals: Totals) -> KpiTotals:
    """The domain's totals of a message's."""
    return KpiTotals(
        totals.revenue, totals.deals_won, totals.deals_lost, totals.renewals_won, totals.renewals_lost,
        totals.activities, dict(totals.activities_by_kind),
        None if totals.overlay is None else kpi_totals(totals.overlay),
        None if totals.team is None else kpi_totals(totals.team),
        None if totals.currencies is None else {code: kpi_totals(sums) for code, sums in totals.currencies.items()},
    )


Listener = Callable[[RepView], None]


class ReadModel:
    """The newest snapshot of every rep (highest version wins), from the whole rep-snapshots topic."""

    def __init__(self, settings: Settings, dead_letters: DeadLetters | None = None) -> None:
        self.reps: dict[str, RepView] = {}
        self.listeners: list[Listener] = []
        self._follower = TopicFollower(
            settings, topic_name(settings, REP_SNAPSHOTS), self._apply, name="read model", dead_letters=dead_letters
        )
        self.caught_up = self._follower.caught_up

    @property
    def last_message_ms(self) -> int:
        return self._follower.last_message_ms

    def positions(self) -> dict[TopicPartition, int]:
        """How far into rep-snapshots this model has read, per partition."""
        return self._follower.positions()

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    def _apply(self, raw: bytes) -> None:
        snapshot = decode(RepSnapshot, raw)
        known = self.reps.get(snapshot.rep_id)
        if known is not None and snapshot.version < known.version:
            return  # an older snapshot (e.g. republished by a worker that lost the partition)
        view = self.reps[snapshot.rep_id] = RepView(snapshot)
        for listener in self.listeners:
            listener(view)
