"""The gateway's in-memory read model: the newest snapshot of every rep, rebuilt from the compacted
rep-snapshots topic at start-up and kept current by a consumer that reads every partition."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from services.common.follower import TopicFollower
from services.common.settings import Settings
from services.common.topics import REP_SNAPSHOTS, topic_name
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.rep_state import RepState

log = logging.getLogger("salespulse.api.read_model")


@dataclass
class RepView:
    """What the gateway knows of one rep: the folded state and when it was produced."""

    state: RepState
    version: int
    updated_ms: int
    accepted_ms: int
    contests: dict[str, KpiTotals] = field(default_factory=dict)
    """Totals per contest board (window) the scoring worker knows about."""
    reached: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    """plan_id → period_key → tier_id → when it was first reached (ISO 8601)."""


Listener = Callable[[RepView], None]


class ReadModel:
    """The newest snapshot of every rep (highest version wins), from the whole rep-snapshots topic."""

    def __init__(self, settings: Settings) -> None:
        self.reps: dict[str, RepView] = {}
        self.listeners: list[Listener] = []
        self._follower = TopicFollower(settings, topic_name(settings, REP_SNAPSHOTS), self._apply, name="read model")
        self.caught_up = self._follower.caught_up

    @property
    def last_message_ms(self) -> int:
        return self._follower.last_message_ms

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    def _apply(self, raw: bytes) -> None:
        data = orjson.loads(raw)
        rep_id = data["rep_id"]
        known = self.reps.get(rep_id)
        if known is not None and data["version"] < known.version:
            return  # an older snapshot (e.g. republished by a worker that lost the partition)
        view = RepView(
            state=RepState.from_dict(data["state"]),
            version=data["version"],
            updated_ms=data["updated_ms"],
            accepted_ms=data.get("accepted_ms", 0),
            contests={board: KpiTotals.from_dict(t) for board, t in data.get("contests", {}).items()},
            reached=data.get("reached", {}),
        )
        self.reps[rep_id] = view
        for listener in self.listeners:
            listener(view)
