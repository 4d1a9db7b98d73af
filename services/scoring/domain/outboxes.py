"""What carrying out the rep states' outboxes takes, computed without I/O: the evictions for SQL history (periods,
and the minutes of days that fell behind the minute floor), the minute days to write and those to delete, and
the acknowledgement that empties the outboxes once all that is stored (services/scoring/agents.py,
`flush_outboxes`, does the I/O in that order)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from services.scoring.domain.minute_days import MINUTES_PER_DAY, MinuteDay, MinuteEntry, day_key
from services.scoring.domain.rep_state import MINUTE, PeriodEviction, RepState, minute_key

__all__ = ["OutboxWork", "outbox_work"]


@dataclass
class OutboxWork:
    history: list[tuple[str, list[PeriodEviction]]] = field(default_factory=list)
    """Per rep, the evictions to add to SQL history (guarded there by their sequence)."""
    days: dict[str, MinuteDay] = field(default_factory=dict)
    """The minute days changed (the stored objects themselves where they existed), by key."""
    gone: list[str] = field(default_factory=list)
    """The keys of the minute days to delete (their minutes are among `history`)."""
    done: list[tuple[RepState, int, int, int]] = field(default_factory=list)
    """Per state, what of its outboxes this work carries out: minute entries, day evictions, evictions up to."""

    def acknowledge(self) -> None:
        """Empty what was carried out from the states' outboxes (once history and the days are stored)."""
        for state, entries, evictions, through in self.done:
            state.acknowledge_minutes(entries, evictions)
            if through:
                state.acknowledge_evictions(through)


def outbox_work(states: Mapping[str, RepState], get_day: Callable[[str], MinuteDay | None]) -> OutboxWork:
    """The work of carrying out these states' outboxes; `get_day(key)` reads a stored minute day.

    Days are changed in place (a stored day object gets the entries it did not hold yet: its own marks guard
    it), so the caller writes `days` before anything reads them again, or discards them with the process."""
    work = OutboxWork()
    for rep_id, state in states.items():
        if not state.holds_outbox():
            continue
        entries, day_evictions = state.minute_work()
        outgoing = list(state.evictions)
        for seq, day in day_evictions:
            key = day_key(rep_id, day)
            held = get_day(key)  # a day behind the floor gets no entries here: they went to history directly
            if held is not None:  # else never written, or deleted already (this outbox carried out before)
                outgoing += [PeriodEviction(seq, MINUTE, minute_key(m), totals) for m, totals in held.minutes.items()]
                work.gone.append(key)
        by_day: dict[int, list[MinuteEntry]] = {}
        for entry in entries:
            by_day.setdefault(entry.minute // MINUTES_PER_DAY, []).append(entry)
        for day, items in by_day.items():
            key = day_key(rep_id, day)
            held = get_day(key) or MinuteDay(rep_id, day)
            if held.apply(items):
                work.days[key] = held
        if outgoing:
            work.history.append((rep_id, outgoing))
        through = state.evictions[-1].seq if state.evictions else 0
        work.done.append((state, len(entries), len(day_evictions), through))
    return work
