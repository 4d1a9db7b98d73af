"""Per-minute totals for contest windows, kept out of the rep state: one `MinuteDay` per rep and UTC day.

A busy rep has thousands of active minutes in the weeks a contest can span; kept inside the rep state they
were serialised on every write of it. Here the rep state keeps only what changed since its last write (its
`minute_outbox`, one `MinuteEntry` per credit or activity) and which days exist, and the scoring worker adds
the entries to the days after storing the state (services/scoring/agents.py, `flush_outboxes`), so a write
costs what changed.

A day applies an entry once: like the rep state, it keeps per source (a topic partition) the highest
sequence applied, and entries of one source reach it in sequence order. So an outbox applied twice (a worker
killed after storing the days but before storing the state that no longer holds the outbox), or events
replayed into an older state after a restore, never count twice, whatever the batches were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import orjson

from services.scoring.domain.kpis import KpiTotals

__all__ = [
    "MINUTES_PER_DAY",
    "MinuteDay",
    "MinuteEntry",
    "day_key",
    "day_of",
    "rep_of_day_key",
]

MINUTES_PER_DAY: Final = 1440


def day_of(minute: int) -> int:
    """The UTC day (days since 1970-01-01) of an epoch minute."""
    return minute // MINUTES_PER_DAY


def day_key(rep_id: str, day: int) -> str:
    """The table key of a rep's day; the rep is everything before the last `@` (`rep_of_day_key`)."""
    return f"{rep_id}@{day}"


def rep_of_day_key(key: str) -> str:
    """The rep a day key belongs to: the day's table partition is the rep's."""
    return key.rpartition("@")[0]


class MinuteEntry(NamedTuple):
    """What one credit or activity adds to one minute, with the event's source and sequence number. `totals` is
    only ever read (entries of activities of one kind share one object): whoever adds it somewhere copies it.
    A named tuple: one is made per credit and activity scored, at about half the cost of a frozen dataclass."""

    source: str
    seq: int
    minute: int
    totals: KpiTotals

    def to_list(self) -> list[Any]:
        return [self.source, self.seq, self.minute, self.totals.to_dict()]

    @classmethod
    def from_list(cls, data: Any) -> MinuteEntry:
        source, seq, minute, totals = data
        return cls(str(source), int(seq), int(minute), KpiTotals.from_dict(totals))


@dataclass(slots=True)
class MinuteDay:
    """One rep's totals per minute of one UTC day, with the marks of the entries applied."""

    rep_id: str
    day: int
    minutes: dict[int, KpiTotals] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    version: int = 0
    _whole: KpiTotals | None = field(default=None, init=False, compare=False, repr=False)
    # The encoded form of each minute, and the minutes changed since: a busy day has hundreds of minutes and is
    # written after every batch that touches it, while a batch changes a few.
    _forms: dict[int, bytes] = field(default_factory=dict, init=False, compare=False, repr=False)
    _changed: set[int] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def key(self) -> str:
        return day_key(self.rep_id, self.day)

    def holds(self, entry: MinuteEntry) -> bool:
        """Whether `entry` is already in this day (its source's mark is at or past its sequence)."""
        return entry.seq <= self.marks.get(entry.source, -1)

    def apply(self, entries: Iterable[MinuteEntry]) -> bool:
        """Add the entries not applied yet (in sequence order per source); whether anything changed.

        The marks are read as they were before the call: the entries of one event (a close-date change moves
        a credit between minutes) share its sequence and are applied together."""
        minutes, marks, day, touched = self.minutes, self.marks, self.day, self._changed
        before = dict(marks)
        changed = False
        for source, seq, minute, totals in entries:  # one per credit and activity scored: kept lean
            if seq <= before.get(source, -1):
                continue
            if minute // MINUTES_PER_DAY != day:
                raise ValueError(f"minute {minute} is not on day {day}")
            held = minutes.get(minute)
            if held is None:
                minutes[minute] = totals.copy()
            else:
                held.add(totals)
            if touched is not None:
                touched.add(minute)
            if seq > marks.get(source, -1):
                marks[source] = seq
            changed = True
        if changed:
            self.version += 1
            self._whole = None
        return changed

    def within(self, first: int, end: int) -> KpiTotals:
        """The totals of this day's minutes in `[first, end)` (a whole day's are computed once: don't edit them)."""
        start = self.day * MINUTES_PER_DAY
        if first <= start and end >= start + MINUTES_PER_DAY:
            if self._whole is None:
                self._whole = KpiTotals().merged(self.minutes.values())
            return self._whole
        return KpiTotals().merged(totals for minute, totals in self.minutes.items() if first <= minute < end)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rep_id": self.rep_id,
            "day": self.day,
            "version": self.version,
            "minutes": {str(minute): totals.to_dict() for minute, totals in self.minutes.items()},
            "marks": dict(self.marks),
        }

    def encode(self) -> bytes:
        """`orjson.dumps(self.to_dict())`, re-encoding only the minutes changed since the last call."""
        forms, minutes, changed = self._forms, self.minutes, self._changed
        for minute in minutes if changed is None else changed:
            forms[minute] = b'"%d":%s' % (minute, orjson.dumps(minutes[minute].to_dict()))
        self._changed = set()
        body = b",".join(forms.values())
        return orjson.dumps({
            "rep_id": self.rep_id,
            "day": self.day,
            "version": self.version,
            "minutes": orjson.Fragment(b"{" + body + b"}"),
            "marks": self.marks,
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MinuteDay:
        try:
            return cls(
                rep_id=str(data["rep_id"]),
                day=int(data["day"]),
                minutes={int(m): KpiTotals.from_dict(t) for m, t in data.get("minutes", {}).items()},
                marks={str(s): int(q) for s, q in data.get("marks", {}).items()},
                version=int(data.get("version", 0)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stored minute day: {exc!r}") from exc
