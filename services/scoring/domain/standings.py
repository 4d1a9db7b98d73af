"""Board standings: rank reps by a metric, ties sharing a rank (1, 2, 2, 4), zeros only where room is left."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from services.scoring.domain.plans import TierRef
from services.scoring.domain.progress import reported, reported_ratio

__all__ = ["Entry", "RankedEntry", "rank"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One rep's value on a board, with what the board shows beside it."""

    rep_id: str
    value: Decimal
    name: str | None = None
    """The roster name; None for a rep the roster doesn't know (shown under the rep id)."""
    team_id: str | None = None
    attainment: Decimal | None = None
    """Attainment in the board's plan, when the board has one."""
    tier: TierRef | None = None
    """Tier reached in the board's plan, when the board has one."""


@dataclass(frozen=True, slots=True)
class RankedEntry:
    """An entry with its rank on the board."""

    rank: int
    entry: Entry

    @property
    def rep_id(self) -> str:
        """The ranked rep."""
        return self.entry.rep_id

    @property
    def value(self) -> Decimal:
        """The rep's value of the board's metric."""
        return self.entry.value

    def to_dict(self, *, metric: str, with_plan: bool = False) -> dict[str, object]:
        """The standings entry of CONTRACT §6; `with_plan` adds attainment and tier (boards with a plan)."""
        entry = self.entry
        shown: dict[str, object] = {
            "rank": self.rank,
            "rep_id": entry.rep_id,
            "name": entry.rep_id if entry.name is None else entry.name,
            "team_id": entry.team_id,
            "value": reported(metric, entry.value),
        }
        if with_plan:
            shown["attainment"] = None if entry.attainment is None else reported_ratio(entry.attainment)
            shown["tier"] = None if entry.tier is None else entry.tier.to_dict()
        return shown


def rank(entries: Iterable[Entry], size: int) -> list[RankedEntry]:
    """The top `size` entries: value descending, equal values share a rank, ties ordered by rep_id.

    Reps at 0 come after every rep with a non-zero value, so they fill the board only when it has room.
    Costs O(n log size): a board of ten over thousands of reps does not sort them all.
    """
    ordered = heapq.nsmallest(max(size, 0), entries, key=_order)
    ranked: list[RankedEntry] = []
    for position, entry in enumerate(ordered, start=1):
        tied = bool(ranked) and ranked[-1].value == entry.value
        ranked.append(RankedEntry(rank=ranked[-1].rank if tied else position, entry=entry))
    return ranked


def _order(entry: Entry) -> tuple[bool, Decimal, str]:
    return (entry.value == 0, -entry.value, entry.rep_id)
