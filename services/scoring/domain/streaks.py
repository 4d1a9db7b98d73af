"""Streaks (docs/achievements.md, Streaks): consecutive working days on which a rep met a daily rule.

A rep's qualifying days are kept per streak as runs of consecutive calendar days (`[first, last]`, ISO dates);
working days are the streak's weekdays in the business timezone less its holidays, so a weekend or a holiday
neither breaks a streak nor extends it. A streak's length counts working days only. Milestones ("a 10-day
streak") are recorded once per (rep, streak, run, milestone), the run named by its first working day: a late
event that fills a gap joins two runs into the earlier one's, whose milestones were already recorded, so nothing
is notified twice. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

from services.scoring.domain.plans import is_participant

__all__ = [
    "WEEKDAYS",
    "Run",
    "Streak",
    "StreakCalendar",
    "StreakStatus",
    "judge_streaks",
    "milestones_reached",
    "set_day",
    "status",
    "streaks",
]

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY: Final = timedelta(days=1)
_MAX_SCAN: Final = 3660
"""Days a search for the previous working day looks back at most (a calendar with no working day at all)."""

Run = tuple[str, str]
"""A run of qualifying days: first and last ISO date, both included."""


@dataclass(frozen=True, slots=True)
class StreakCalendar:
    """Which dates are working days: one of `weekdays` (0 = Monday) and not one of `holidays`."""

    weekdays: frozenset[int]
    holidays: frozenset[date]

    @classmethod
    def of(cls, streak: Any) -> StreakCalendar:
        """The calendar of a streak document (schemas.config.Streak)."""
        return cls(frozenset(WEEKDAYS.index(day) for day in streak.workdays), frozenset(streak.holidays))

    def works(self, on: date) -> bool:
        return on.weekday() in self.weekdays and on not in self.holidays

    def previous_workday(self, on: date) -> date | None:
        """The last working day before `on`."""
        day = on - _DAY
        for _ in range(_MAX_SCAN):
            if self.works(day):
                return day
            day -= _DAY
        return None

    def workdays_between(self, first: date, last: date) -> int:
        """Working days in `[first, last]`."""
        if last < first:
            return 0
        days = (last - first).days + 1
        weeks, rest = divmod(days, 7)
        count = weeks * len(self.weekdays)
        day = first + timedelta(days=weeks * 7)
        for _ in range(rest):
            count += day.weekday() in self.weekdays
            day += _DAY
        count -= sum(1 for holiday in self.holidays if first <= holiday <= last and holiday.weekday() in self.weekdays)
        return count


def set_day(runs: Sequence[Run], day: date, qualifies: bool) -> list[Run]:
    """`runs` with `day` added (when it `qualifies`) or taken out: runs stay sorted, disjoint and merged."""
    days = [(date.fromisoformat(a), date.fromisoformat(b)) for a, b in runs]
    out: list[tuple[date, date]] = []
    if qualifies:
        placed = False
        for first, last in days:
            if placed or last < day - _DAY:
                out.append((first, last))
                continue
            if first > day + _DAY:
                out.append((day, day))
                out.append((first, last))
                placed = True
                continue
            # Touches or holds the day: widen it, then merge a following run it now touches.
            out.append((min(first, day), max(last, day)))
            placed = True
        if not placed:
            out.append((day, day))
        merged: list[tuple[date, date]] = []
        for first, last in out:
            if merged and first <= merged[-1][1] + _DAY:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        out = merged
    else:
        for first, last in days:
            if not first <= day <= last:
                out.append((first, last))
                continue
            if first < day:
                out.append((first, day - _DAY))
            if day < last:
                out.append((day + _DAY, last))
    return [(a.isoformat(), b.isoformat()) for a, b in out]


@dataclass(frozen=True, slots=True)
class Streak:
    """Qualifying runs joined across non-working days: its first and last working day and its length."""

    first: date
    last: date
    length: int


def streaks(runs: Iterable[Run], calendar: StreakCalendar) -> list[Streak]:
    """The rep's streaks, oldest first: runs whose working days follow each other with no working day missed."""
    out: list[Streak] = []
    for a, b in runs:
        first, last = date.fromisoformat(a), date.fromisoformat(b)
        length = calendar.workdays_between(first, last)
        if length == 0:
            continue  # only weekend or holiday days: no streak of working days
        while not calendar.works(first):
            first += _DAY
        while not calendar.works(last):
            last -= _DAY
        if out and calendar.workdays_between(out[-1].last + _DAY, first - _DAY) == 0:
            out[-1] = Streak(out[-1].first, last, out[-1].length + length)
        else:
            out.append(Streak(first, last, length))
    return out


@dataclass(frozen=True, slots=True)
class StreakStatus:
    """A rep's streak as of a day: `current` working days (0 when broken), `longest` ever, `since` (the first
    day of the current one), and `at_risk` when today is a working day not met yet and a streak is alive."""

    current: int
    longest: int
    since: date | None
    at_risk: bool
    met_today: bool


def status(runs: Iterable[Run], calendar: StreakCalendar, today: date) -> StreakStatus:
    """The streak as of `today`: alive when it reaches today or the last working day before it."""
    found = streaks(runs, calendar)
    longest = max((s.length for s in found), default=0)
    previous = calendar.previous_workday(today)
    for streak in reversed(found):
        if streak.first > today:
            continue  # days after today (a pinned clock, or events dated ahead)
        if streak.last >= today:
            return StreakStatus(streak.length, longest, streak.first, False, True)
        if previous is not None and streak.last >= previous:
            return StreakStatus(streak.length, longest, streak.first, calendar.works(today), False)
        break
    return StreakStatus(0, longest, None, False, False)


def milestones_reached(
    runs: Iterable[Run], calendar: StreakCalendar, milestones: Collection[int], touched: Iterable[date]
) -> list[tuple[str, int]]:
    """`(first day of the streak, milestone)` for every milestone reached by a streak holding a `touched` day."""
    days = sorted(touched)
    out: list[tuple[str, int]] = []
    for streak in streaks(runs, calendar):
        if any(streak.first <= day <= streak.last for day in days):
            out.extend((streak.first.isoformat(), m) for m in sorted(milestones) if streak.length >= m)
    return out


def judge_streaks(
    streaks_: Sequence[tuple[Any, StreakCalendar]],
    state: Any,
    team_id: str | None,
    changed_days: Collection[str] | None,
    at: Any,
) -> list[tuple[str, str, int]]:
    """Bring each streak's qualifying days in `state` (a RepState) up to date for the days whose totals changed
    (`changed_days`, day keys; None: every day the state holds), and record the milestones newly reached by a
    streak holding a day that now qualifies; returns them as `(streak_id, first day, milestone)`."""
    periods = state.periods["day"]
    keys = sorted(periods if changed_days is None else changed_days)
    out: list[tuple[str, str, int]] = []
    for streak, calendar in streaks_:
        if not is_participant(state.rep_id, team_id, streak.participants):
            continue
        runs: list[Run] = list(state.streak_days.get(streak.streak_id, []))
        fresh: list[date] = []
        for key in keys:
            if not state.holds("day", key):
                continue
            totals = periods.get(key)
            value = None if totals is None else totals.value(streak.rule.metric)
            qualifies = value is not None and value >= streak.rule.at_least
            day = date.fromisoformat(key)
            updated = set_day(runs, day, qualifies)
            if updated != runs:
                runs = updated
                if qualifies:
                    fresh.append(day)
        state.set_streak_days(streak.streak_id, runs)
        if not fresh:
            continue  # no day newly qualifies: no streak grew
        for first, days in milestones_reached(runs, calendar, streak.milestones, fresh):
            if state.mark_milestone(streak.streak_id, first, days, at):
                out.append((streak.streak_id, first, days))
    return out
