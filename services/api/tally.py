"""A board's standings kept per rep, so a change costs what changed: the gateway recomputes the entry of each
rep that changed and ranks the top of the board; a new period, a configuration change or the periodic refresh
builds the tally again (Gateway.tally / Gateway.retally)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from schemas.config import Board, Plan
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.progress import reported
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
    team_names: dict[str, str] = field(default_factory=dict)
    """A battle's team names, by team_id."""
    history: dict[str, tuple[int, KpiTotals | None]] = field(default_factory=dict)
    """Contests only: per rep, the minute floor its history part was read for and that part (the window's
    minutes that left the hot state), so it is read again only when the floor moves."""

    def message(self) -> dict[str, object]:
        """The standings of CONTRACT §6 (without `type`)."""
        board = self.board
        ranked = rank(self.entries.values(), board.size)
        updated = max(self.updated_ms.values(), default=0)
        message: dict[str, object] = {
            "board_id": board.board_id,
            "title": board.title,
            "metric": board.metric,
            "period_key": self.period_key,
            "updated_at": datetime.fromtimestamp(updated / 1000, UTC).isoformat() if updated else None,
            "entries": [r.to_dict(metric=board.metric, with_plan=self.plan is not None) for r in ranked],
        }
        if board.battle is not None:
            message["battle"] = self.battle()
        return message

    def battle(self) -> dict[str, object]:
        """Head to head: each team's sum of its members' values (in the battle's order), who leads and by how
        much over the second (`leader` null on a tie at the top)."""
        assert self.board.battle is not None
        teams = self.board.battle.teams
        sums = {team: Decimal(0) for team in teams}
        members = dict.fromkeys(teams, 0)
        for entry in self.entries.values():
            if entry.team_id in sums:
                sums[entry.team_id] += entry.value
                members[entry.team_id] += 1
        ordered = sorted(teams, key=lambda team: -sums[team])
        metric = self.board.metric
        ranks: dict[str, int] = {}
        for position, team in enumerate(ordered, start=1):
            tied = position > 1 and sums[team] == sums[ordered[position - 2]]
            ranks[team] = ranks[ordered[position - 2]] if tied else position
        return {
            "teams": [
                {"team_id": team, "name": self.team_names.get(team, team), "rank": ranks[team],
                 "value": reported(metric, sums[team]), "members": members[team]}
                for team in teams
            ],
            "leader": ordered[0] if sums[ordered[0]] > sums[ordered[1]] else None,
            "gap": reported(metric, sums[ordered[0]] - sums[ordered[1]]),
        }
