"""Minute days kept in a dict, carried out from rep states the way the scoring worker does (the same
`outbox_work`), for tests of contest windows without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.minute_days import MinuteDay, day_of
from services.scoring.domain.outboxes import outbox_work
from services.scoring.domain.rep_state import MINUTE, RepState


@dataclass
class MemoryDays:
    days: dict[str, MinuteDay] = field(default_factory=dict)
    history: dict[str, dict[int, KpiTotals]] = field(default_factory=dict)
    """Per rep, the minutes handed to history, summed per minute (periods are left out)."""
    marks: dict[str, int] = field(default_factory=dict)
    """Per rep, the highest eviction sequence in history: it skips what it has, as SQL history does."""

    def flush(self, *states: RepState) -> None:
        """Carry out the states' outboxes: history, then days written and deleted, then acknowledge."""
        work = outbox_work({state.rep_id: state for state in states}, self.days.get)
        for rep_id, evictions in work.history:
            minutes = self.history.setdefault(rep_id, {})
            done = self.marks.get(rep_id, 0)
            for eviction in evictions:
                if eviction.seq <= done:
                    continue
                self.marks[rep_id] = max(self.marks.get(rep_id, 0), eviction.seq)
                if eviction.kind == MINUTE:
                    minute = int(eviction.key)
                    minutes[minute] = minutes.get(minute, KpiTotals()) + eviction.totals
        self.days.update(work.days)
        for key in work.gone:
            del self.days[key]
        work.acknowledge()

    def window(self, state: RepState, starts_at: datetime, ends_at: datetime) -> KpiTotals:
        """The state's window totals before and after carrying out its outbox (they must agree)."""
        before = state.window_totals(starts_at, ends_at, self.days.get)
        self.flush(state)
        after = state.window_totals(starts_at, ends_at, self.days.get)
        assert before.to_dict() == after.to_dict(), (before, after)
        return after

    def minutes(self, state: RepState) -> dict[int, KpiTotals]:
        """The rep's minutes in its days (after carrying out its outbox)."""
        self.flush(state)
        held: dict[int, KpiTotals] = {}
        for day in self.days.values():
            if day.rep_id == state.rep_id:
                held.update(day.minutes)
        assert {day_of(minute) for minute in held} <= state.days
        return held
