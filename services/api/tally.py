"""A board's standings kept per rep, so a change costs what changed: the gateway recomputes the entry of each
rep that changed and ranks the top of the board; a new period, a configuration change or the periodic refresh
builds the tally again (Gateway.tally / Gateway.retally)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from schemas.config import Board, Plan
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.standings import Entry, rank

__all__ = ["BoardTally"]


@dataclass
class BoardTally:
    """Every rep's entry on one board for one period (or contest window), with what it was computed from."""

    board: Board
    plan: Plan | None
    on: date
    """The date whose period the board shows."""
    period_key: str
    entries: dict[str, Entry] = field(default_factory=dict)
    updated_ms: dict[str, int] = field(default_factory=dict)
    """Each rep's newest snapshot time (the board's `updated_at` is the newest of them)."""
    history: dict[str, tuple[int, KpiTotals | None]] = field(default_factory=dict)
    """Contests only: per rep, the minute floor its history part was read for and that part (the window's
    minutes that left the hot state), so it is read again only when the floor moves."""

    def message(self) -> dict[str, object]:
        """The standings of CONTRACT §6 (without `type`)."""
        board = self.board
        ranked = rank(self.entries.values(), board.size)
        updated = max(self.updated_ms.values(), default=0)
        return {
            "board_id": board.board_id,
            "title": board.title,
            "metric": board.metric,
            "period_key": self.period_key,
            "updated_at": datetime.fromtimestamp(updated / 1000, UTC).isoformat() if updated else None,
            "entries": [r.to_dict(metric=board.metric, with_plan=self.plan is not None) for r in ranked],
        }
