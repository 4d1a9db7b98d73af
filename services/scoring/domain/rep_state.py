"""One rep's rolling KPI totals per period, with the dedup marks that guard them, kept in one table value.

It keeps the most recent N periods of each kind; older ones leave as evictions bound for SQL history.
Beside them: the tiers reached, and what a contest window needs of the per-minute totals, which live out of
the state in one `MinuteDay` per rep and UTC day (services/scoring/domain/minute_days.py): the days that exist,
the oldest minute kept, and the minute entries added since the state was last stored (its minute outbox).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Literal

from services.scoring.domain.credits import Credit
from services.scoring.domain.crossings import TiersReached, TierThreshold, utc_iso
from services.scoring.domain.kpis import ACTIVITY_KIND_PATTERN, KpiTotals, is_activity_kind
from services.scoring.domain.minute_days import MINUTES_PER_DAY, MinuteDay, MinuteEntry, day_key
from services.scoring.domain.periods import PERIOD_KINDS, Calendar, PeriodKind

__all__ = [
    "DEFAULT_MINUTE_HORIZON",
    "DEFAULT_RETENTION",
    "LEGACY_SOURCE",
    "Activity",
    "MINUTE",
    "EvictionKind",
    "PeriodEviction",
    "RepState",
    "ceil_minute",
    "check_activity",
    "epoch_minute",
    "minute_key",
]

# How many periods of each kind a rep's state keeps: two months of days, half a year of weeks,
# two years of months, two years of quarters, and the current plus three past fiscal years.
DEFAULT_RETENTION: Final[Mapping[PeriodKind, int]] = MappingProxyType(
    {"day": 62, "week": 27, "month": 25, "quarter": 9, "year": 4}
)

# How far behind the newest minute seen the per-minute totals reach (at least; whole UTC days are kept):
# contests are live events, not history.
DEFAULT_MINUTE_HORIZON: Final = timedelta(days=35)

# The five period kinds paired with their position in Calendar.period_keys(), for the hot loop.
_KIND_POSITIONS: Final = tuple(enumerate(PERIOD_KINDS))
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE: Final = timedelta(minutes=1)
LEGACY_SOURCE: Final = "legacy"
"""The source of the minute entries made from a state stored with its minutes inside (before minute days)."""


MINUTE: Final = "minute"
EvictionKind = PeriodKind | Literal["minute"]


def minute_key(minute: int) -> str:
    """A UTC minute (see `epoch_minute`) as a history key; keys sort like the minutes (fixed width)."""
    return f"{minute:010d}"


def epoch_minute(at: datetime) -> int:
    """The UTC minute that contains the aware instant `at`, as whole minutes since 1970-01-01T00:00Z."""
    # Exact integer arithmetic on timedeltas (no float rounding), and cheaper than .timestamp().
    return (at - _EPOCH) // _MINUTE


def ceil_minute(at: datetime) -> int:
    """The first minute that starts at or after `at`."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"window bound {at.isoformat()} has no UTC offset; naive times are ambiguous")
    return -((_EPOCH - at) // _MINUTE)


@dataclass(frozen=True, slots=True)
class PeriodEviction:
    """Totals that leave the state for SQL history: add `totals` to the history row of (rep, kind, key).

    The first eviction of a period carries its complete totals; a late credit for a period already in
    history arrives as an eviction of just that delta. `seq` is unique per rep, so a writer can record
    which evictions it has stored and never add one twice. Minutes leave the same way (kind `minute`, key
    `minute_key(m)`), so contests over any window stay exact after the minutes left the hot state.
    """

    seq: int
    kind: EvictionKind
    key: str
    totals: KpiTotals

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form."""
        return {"seq": self.seq, "kind": self.kind, "key": self.key, "totals": self.totals.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeriodEviction:
        """Rebuild an eviction from `to_dict()` output."""
        kind = data["kind"]
        if kind not in PERIOD_KINDS and kind != MINUTE:
            raise ValueError(f"unknown period kind {kind!r} in a stored eviction")
        return cls(int(data["seq"]), kind, str(data["key"]), KpiTotals.from_dict(data["totals"]))


Activity = tuple[str, datetime, str, int]
"""An activity to count: (kind, instant, source, sequence)."""


@functools.lru_cache(maxsize=1024)
def _minute_totals(kind: str, count: int) -> KpiTotals:
    """What `count` activities of `kind` add to a minute: one object per kind, shared by every minute entry (an
    entry's totals are only ever read, never changed in place)."""
    return KpiTotals(activities=count, activities_by_kind={kind: count} if count else {})


def check_activity(kind: str, at: datetime) -> None:
    """ValueError unless `kind` is an activity kind and `at` has a UTC offset (what an activity must be to count)."""
    if not is_activity_kind(kind):
        raise ValueError(f"activity kind {kind!r} must match {ACTIVITY_KIND_PATTERN.pattern}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"instant {at.isoformat()} has no UTC offset; naive times are ambiguous")


def _empty_periods() -> dict[PeriodKind, dict[str, KpiTotals]]:
    return {kind: {} for kind in PERIOD_KINDS}


@dataclass(slots=True)
class RepState:
    """Everything the rep agent keeps for one rep.

    `periods[kind][key]` holds the totals of each retained period. `horizons[kind]` is the newest key
    of that kind already handed to history: periods at or before it live in SQL, periods after it live
    here (zeros when absent). `credit_marks` / `activity_marks` map a source (e.g. a topic partition,
    `"deals/3"`) to the highest sequence applied from it; they sit in the same value as the totals they
    guard, so a restore from the changelog never separates the two. `evictions` is an outbox for SQL
    history: take it with `drain_evicted`, or write it and then `acknowledge_evictions`.

    Per-minute totals (UTC minute `m`, see `epoch_minute`) answer contest windows (`window_totals`); they
    are kept in `MinuteDay`s, from `minute_floor` (a UTC midnight at least `minute_horizon` behind the
    newest minute seen) on. `days` are the days that have minutes; `minute_outbox` the entries added since
    the days were last written (take them with `minute_work`, then `acknowledge_minutes`); `day_evictions`
    the days that fell behind the floor, `(seq, day)`, whose minutes go to SQL history as evictions of kind
    `minute` with that `seq` before the day is deleted. A credit or activity for a minute behind the floor
    goes to history at once. `reached` holds the tiers each plan-period has reached, so a tier crossing is
    emitted once (`record_tiers`); `earned` the achievements earned, achievement_id → period key → first earned
    (ISO 8601 UTC), so each is earned once (`earn`, services/scoring/domain/achievements.py). `streak_days` holds
    each streak's qualifying days as runs of dates, `streak_marks` the milestones reached, streak_id → first day of
    the streak → milestone (days, as text) → when (services/scoring/domain/streaks.py).
    """

    rep_id: str
    periods: dict[PeriodKind, dict[str, KpiTotals]] = field(default_factory=_empty_periods)
    horizons: dict[PeriodKind, str] = field(default_factory=dict)
    credit_marks: dict[str, int] = field(default_factory=dict)
    activity_marks: dict[str, int] = field(default_factory=dict)
    version: int = 0
    evictions: list[PeriodEviction] = field(default_factory=list)
    eviction_seq: int = 0
    minute_floor: int | None = None
    days: set[int] = field(default_factory=set)
    minute_outbox: list[MinuteEntry] = field(default_factory=list)
    day_evictions: list[tuple[int, int]] = field(default_factory=list)
    reached: TiersReached = field(default_factory=TiersReached)
    earned: dict[str, dict[str, str]] = field(default_factory=dict)
    streak_days: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    streak_marks: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    retention: Mapping[PeriodKind, int] = field(
        default_factory=lambda: DEFAULT_RETENTION, compare=False, repr=False
    )
    minute_horizon: timedelta = field(default=DEFAULT_MINUTE_HORIZON, compare=False, repr=False)
    _horizon_minutes: int = field(default=0, init=False, compare=False, repr=False)
    touched: set[tuple[PeriodKind, str]] = field(default_factory=set, init=False, compare=False, repr=False)
    """The periods whose totals changed since the owner last cleared this (never stored): where plans may
    have been crossed — the current period or any other, history included."""
    _trim_due: bool = field(default=True, init=False, compare=False, repr=False)
    """Whether a period was opened since retention was last applied (or the state was just built or restored):
    only then can a kind hold more periods than it keeps."""

    def __post_init__(self) -> None:
        for kind in PERIOD_KINDS:
            limit = self.retention.get(kind)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"retention for {kind} must be an integer ≥ 1, got {limit!r}")
            self.periods.setdefault(kind, {})
        horizon = self.minute_horizon
        if not isinstance(horizon, timedelta) or horizon < _MINUTE:
            raise ValueError(f"minute_horizon must be a timedelta of at least one minute, got {horizon!r}")
        self._horizon_minutes = horizon // _MINUTE

    # -- folding ----------------------------------------------------------------------------------

    def apply_credits(self, credits: Sequence[Credit], *, source: str, seq: int, calendar: Calendar) -> bool:
        """Apply all credits of one source event as one unit; False (and no change) if already applied."""
        if seq <= self.credit_marks.get(source, -1):
            return False
        rep_id = self.rep_id
        for credit in credits:
            if credit.rep_id != rep_id:
                raise ValueError(f"credit for rep {credit.rep_id!r} applied to the state of rep {rep_id!r}")
        keys_for, totals_of = calendar.keys_for_local_date, self._period_totals
        epoch, one_minute, local_date = _EPOCH, _MINUTE, calendar.local_date_in_minute
        late: dict[tuple[PeriodKind, str], KpiTotals] = {}
        for credit in credits:
            at = credit.at
            minute = (at - epoch) // one_minute  # epoch_minute(at), inlined: this loop runs per credit
            for totals in totals_of(keys_for(local_date(at, minute)), late):
                totals.apply_credit(credit)
            if credit.currency is not None:
                continue  # a deal's own currency: no contest counts it (contests measure KPIs)
            minute_totals = KpiTotals()
            minute_totals.apply_credit(credit)
            self._add_minute(minute, minute_totals, source, seq)
        self._finish_change(late)
        self.credit_marks[source] = seq
        return True

    def apply_credit(self, credit: Credit, *, source: str, seq: int, calendar: Calendar) -> bool:
        """Apply one credit that is the whole of its source event (see `apply_credits`)."""
        return self.apply_credits((credit,), source=source, seq=seq, calendar=calendar)

    def apply_activity(
        self, kind: str, at: datetime, *, source: str, seq: int, calendar: Calendar, count: int = 1
    ) -> bool:
        """Count `count` activities of `kind` at instant `at`; False (and no change) if already applied."""
        return self.apply_activities(((kind, at, source, seq),), calendar=calendar, count=count) == 1

    def apply_activities(
        self, activities: Iterable[Activity], *, calendar: Calendar, count: int = 1, checked: bool = False
    ) -> int:
        """Count activities `(kind, at, source, seq)`, in order, exactly as `apply_activity` would one after another
        (each skipped when its source's mark is at or past its sequence, the marks moving as they go); returns how
        many were counted. Nothing changes when one of them is invalid (`checked`: the caller has made sure every
        kind is a valid activity kind and every instant has a UTC offset).

        A batch's activities of one rep add to each period once per local date and kind instead of once each:
        the per-event work that is left is the dedup mark and the minute entry."""
        items = activities if isinstance(activities, Sequence) else list(activities)
        for kind, at, _source, _seq in () if checked else items:
            check_activity(kind, at)
        marks, add_minute, minute_totals = self.activity_marks, self._add_minute, _minute_totals
        epoch, one_minute, local_date = _EPOCH, _MINUTE, calendar.local_date_in_minute
        per_date: dict[tuple[date, str], int] = {}
        counted = 0
        for kind, at, source, seq in items:
            if seq <= marks.get(source, -1):
                continue
            minute = (at - epoch) // one_minute  # epoch_minute(at), inlined: this loop runs per activity
            where = (local_date(at, minute), kind)
            per_date[where] = per_date.get(where, 0) + count
            add_minute(minute, minute_totals(kind, count), source, seq)
            marks[source] = seq
            counted += 1
        if not counted:
            return 0
        keys_for, totals_of = calendar.keys_for_local_date, self._period_totals
        late: dict[tuple[PeriodKind, str], KpiTotals] = {}
        for (day, kind), n in per_date.items():
            for totals in totals_of(keys_for(day), late):
                totals.add_activity(kind, n)
        self._finish_change(late, counted)
        return counted

    def _period_totals(self, keys: Sequence[str], late: dict[tuple[PeriodKind, str], KpiTotals]) -> list[KpiTotals]:
        """The totals to add to for the periods of `keys` (a local date's, in PERIOD_KINDS order), each marked as
        touched: the state's own, opened where missing, or a late delta for a period already in history."""
        periods, touched, found = self.periods, self.touched, []
        for position, kind in _KIND_POSITIONS:
            key = keys[position]
            touched.add((kind, key))
            totals = periods[kind].get(key)
            found.append(self._open_period(kind, key, late) if totals is None else totals)
        return found

    def _open_period(
        self, kind: PeriodKind, key: str, late: dict[tuple[PeriodKind, str], KpiTotals]
    ) -> KpiTotals:
        horizon = self.horizons.get(kind)
        if horizon is not None and key <= horizon:
            # Already in history: collect the delta for an eviction instead of reopening the period,
            # so state and history never both hold part of one period.
            return late.setdefault((kind, key), KpiTotals())
        totals = KpiTotals()
        self.periods[kind][key] = totals
        self._trim_due = True
        return totals

    def _add_minute(self, minute: int, totals: KpiTotals, source: str, seq: int) -> None:
        """Put `totals` in the minute outbox, unless the minute is behind the floor (then it goes to history
        at once); a minute newer than any before may move the floor, and days behind it leave."""
        floor = self.minute_floor
        if floor is not None and minute < floor:
            self._emit(MINUTE, minute_key(minute), totals)  # a late credit for a minute already in history
            return
        self.minute_outbox.append(MinuteEntry(source, seq, minute, totals))
        self.days.add(minute // MINUTES_PER_DAY)
        newest_floor = (minute - self._horizon_minutes) // MINUTES_PER_DAY * MINUTES_PER_DAY
        if floor is None or newest_floor > floor:
            self._move_floor(newest_floor)

    def _move_floor(self, floor: int) -> None:
        """Days before `floor` leave: each becomes a day eviction (its minutes go to history with that seq, then
        it is deleted), and what the outbox holds for them goes to history as it is (it is in no day yet)."""
        self.minute_floor = floor
        first_day = floor // MINUTES_PER_DAY
        gone = sorted(day for day in self.days if day < first_day)
        if not gone:
            return
        kept = []
        for entry in self.minute_outbox:
            if entry.minute < floor:
                self._emit(MINUTE, minute_key(entry.minute), entry.totals)
            else:
                kept.append(entry)
        self.minute_outbox = kept
        for day in gone:
            self.days.discard(day)
            self.eviction_seq += 1
            self.day_evictions.append((self.eviction_seq, day))

    def _finish_change(self, late: dict[tuple[PeriodKind, str], KpiTotals], changes: int = 1) -> None:
        """Emit the late deltas, hand the periods beyond retention to history, and count `changes` in the version
        (one per source event applied)."""
        for (kind, key), totals in late.items():
            self._emit(kind, key, totals)
        if self._trim_due:
            self._trim_due = False
            periods, retention = self.periods, self.retention
            for kind in PERIOD_KINDS:
                bucket = periods[kind]
                excess = len(bucket) - retention[kind]
                if excess > 0:
                    # Keys of one kind sort chronologically as strings (zero-padded years, months, weeks).
                    for key in sorted(bucket)[:excess]:
                        self._emit(kind, key, bucket.pop(key))
                        if key > self.horizons.get(kind, ""):
                            self.horizons[kind] = key
        self.version += changes

    def _emit(self, kind: EvictionKind, key: str, totals: KpiTotals) -> None:
        if totals.is_zero():
            return
        self.eviction_seq += 1
        self.evictions.append(PeriodEviction(self.eviction_seq, kind, key, totals))

    def acknowledge_evictions(self, through_seq: int) -> None:
        """Drop the evictions up to `through_seq` once they are safely in SQL history.

        The exactly-once path: store this state (outbox included) first, then write the evictions to
        SQL guarded by their `seq`, then acknowledge.
        """
        self.evictions = [eviction for eviction in self.evictions if eviction.seq > through_seq]

    def drain_evicted(self) -> list[tuple[EvictionKind, str, KpiTotals]]:
        """Take every outstanding eviction as `(kind, key, totals)` and empty the outbox.

        Each `totals` is to be ADDED to the history row of (rep, kind, key), not written over it: it is
        the whole period the first time, and only a late credit's delta after that.
        """
        drained = [(eviction.kind, eviction.key, eviction.totals) for eviction in self.evictions]
        self.evictions = []
        return drained

    # -- reading ----------------------------------------------------------------------------------

    def totals(self, kind: PeriodKind, key: str) -> KpiTotals:
        """A copy of the totals of one period; zeros when the state has nothing for it."""
        totals = self.periods[kind].get(key)
        return KpiTotals() if totals is None else totals.copy()

    def holds(self, kind: PeriodKind, key: str) -> bool:
        """True when this state is the authority for the period (newer than the history horizon);
        False when the period lives in SQL history."""
        horizon = self.horizons.get(kind)
        return horizon is None or key > horizon

    def period_keys(self, kind: PeriodKind) -> list[str]:
        """The retained keys of one kind, oldest first."""
        return sorted(self.periods[kind])

    def window_totals(
        self, starts_at: datetime, ends_at: datetime, days: Callable[[str], MinuteDay | None]
    ) -> KpiTotals:
        """The totals of every credit and activity attributed in the window `[starts_at, ends_at)`, from the
        rep's minute days (`days(day_key)` gives the stored day) and the outbox entries not in them yet.

        A window has minute resolution: it counts each UTC minute whose START lies in `[starts_at,
        ends_at)`, so a bound inside a minute counts that minute by its start — `starts_at` 12:00:30 leaves
        out the minute 12:00 (all of it, also what came at 12:00:45), and `ends_at` 13:00:30 takes in the
        minute 13:00 (all of it, also 13:00:50). Bounds on whole minutes are exact. Only minutes from
        `minute_floor` on are kept here: a window reaching further back counts what is left (the rest is in
        history). An empty window (`ends_at == starts_at`) gives zeros.
        """
        first, end = ceil_minute(starts_at), ceil_minute(ends_at)
        # Instants compared through the UTC epoch: two datetimes sharing a tzinfo compare by wall time.
        if ends_at - _EPOCH < starts_at - _EPOCH:
            raise ValueError(f"window ends at {ends_at.isoformat()}, before it starts at {starts_at.isoformat()}")
        rep_id = self.rep_id
        inside: list[KpiTotals] = []
        for day in self.days:
            start = day * MINUTES_PER_DAY
            if start < end and start + MINUTES_PER_DAY > first:
                held = days(day_key(rep_id, day))
                if held is not None:
                    inside.append(held.within(first, end))
        for entry in self.minute_outbox:
            if first <= entry.minute < end:
                held = days(day_key(rep_id, entry.minute // MINUTES_PER_DAY))
                if held is None or not held.holds(entry):
                    inside.append(entry.totals)
        return KpiTotals().merged(inside)

    def minute_work(self) -> tuple[list[MinuteEntry], list[tuple[int, int]]]:
        """The minute entries to add to their days and the day evictions to carry out, as they are now (take
        them after the state is stored; acknowledge them with `acknowledge_minutes` once done)."""
        return list(self.minute_outbox), list(self.day_evictions)

    def holds_outbox(self) -> bool:
        """Whether anything waits in the outboxes (evictions for history, minute entries, day evictions)."""
        return bool(self.evictions or self.minute_outbox or self.day_evictions)

    def acknowledge_minutes(self, entries: int, evictions: int) -> None:
        """Drop the first `entries` outbox entries and `evictions` day evictions: they are in the days and in
        history now (the stored state keeps them until its next write; doing them again changes nothing)."""
        del self.minute_outbox[:entries]
        del self.day_evictions[:evictions]

    # -- tier crossings ---------------------------------------------------------------------------

    def record_tiers(
        self,
        plan_id: str,
        period_key: str,
        tiers: Sequence[TierThreshold],
        attainment: Decimal | float | int,
        at: datetime,
    ) -> list[str]:
        """Record the tiers newly reached in a plan-period (see `TiersReached.record`) and return them,
        lowest first: the tier crossings to emit. The version goes up when there is one."""
        crossed = self.reached.record(plan_id, period_key, tiers, attainment, at)
        if crossed:
            self.version += 1
        return crossed

    # -- achievements -----------------------------------------------------------------------------

    def has_earned(self, achievement_id: str, period_key: str) -> bool:
        """True once the achievement is recorded as earned in that period."""
        return period_key in self.earned.get(achievement_id, {})

    def earn(self, achievement_id: str, period_key: str, at: datetime) -> bool:
        """Record the achievement as earned in the period at `at`; False (no change) when it already was: a badge
        stays earned whatever the totals do afterwards. The version goes up when it is new."""
        periods = self.earned.setdefault(achievement_id, {})
        if period_key in periods:
            return False
        periods[period_key] = utc_iso(at)
        self.version += 1
        return True

    # -- streaks ----------------------------------------------------------------------------------

    def set_streak_days(self, streak_id: str, runs: list[tuple[str, str]]) -> bool:
        """Store the streak's qualifying runs; True (and the version up) when they changed."""
        if self.streak_days.get(streak_id, []) == runs:
            return False
        if runs:
            self.streak_days[streak_id] = runs
        else:
            self.streak_days.pop(streak_id, None)
        self.version += 1
        return True

    def mark_milestone(self, streak_id: str, first_day: str, days: int, at: datetime) -> bool:
        """Record that the streak that began on `first_day` reached `days`; False when it already was."""
        marks = self.streak_marks.setdefault(streak_id, {}).setdefault(first_day, {})
        if str(days) in marks:
            return False
        marks[str(days)] = utc_iso(at)
        self.version += 1
        return True

    def prune_reached(self, keep: Callable[[str, str], bool]) -> int:
        """Forget the tiers reached of plan-periods that ended long ago (see `TiersReached.prune`)."""
        dropped = self.reached.prune(keep)
        if dropped:
            self.version += 1
        return dropped

    # -- storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-safe form that `from_dict` turns back into an equal state."""
        data: dict[str, Any] = {"rep_id": self.rep_id, "version": self.version}
        periods = {
            kind: {key: totals.to_dict() for key, totals in bucket.items()}
            for kind, bucket in self.periods.items()
            if bucket
        }
        if periods:
            data["periods"] = periods
        if self.horizons:
            data["horizons"] = dict(self.horizons)
        if self.credit_marks:
            data["credit_marks"] = dict(self.credit_marks)
        if self.activity_marks:
            data["activity_marks"] = dict(self.activity_marks)
        if self.evictions:
            data["evictions"] = [eviction.to_dict() for eviction in self.evictions]
        if self.eviction_seq:
            data["eviction_seq"] = self.eviction_seq
        if self.minute_floor is not None:
            data["minute_floor"] = self.minute_floor
        if self.days:
            data["days"] = sorted(self.days)
        if self.minute_outbox:
            data["minute_outbox"] = [entry.to_list() for entry in self.minute_outbox]
        if self.day_evictions:
            data["day_evictions"] = [list(item) for item in self.day_evictions]
        if self.reached:
            data["reached"] = self.reached.to_dict()
        if self.earned:
            data["earned"] = {a: dict(periods) for a, periods in self.earned.items()}
        if self.streak_days:
            data["streak_days"] = {s: [list(run) for run in runs] for s, runs in self.streak_days.items()}
        if self.streak_marks:
            data["streak_marks"] = {
                s: {d: dict(m) for d, m in firsts.items()} for s, firsts in self.streak_marks.items()
            }
        return data

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        retention: Mapping[PeriodKind, int] = DEFAULT_RETENTION,
        minute_horizon: timedelta = DEFAULT_MINUTE_HORIZON,
    ) -> RepState:
        """Rebuild a state from `to_dict()` output; `retention` and `minute_horizon` are configuration,
        not stored (a longer horizon brings back no day; a shorter one moves the floor at the next minute).

        A state stored with its minutes inside (`minutes`, before minute days) comes back with them in its
        minute outbox, as entries of source LEGACY_SOURCE and sequence 0: the first flush puts them in their
        days, and doing that again (the state rebuilt from the same stored form) changes nothing."""
        try:
            periods = _empty_periods()
            from_totals = KpiTotals.from_dict
            for kind, bucket in data.get("periods", {}).items():
                if kind not in periods:
                    raise ValueError(f"unknown period kind {kind!r}")
                periods[kind] = {str(key): from_totals(totals) for key, totals in bucket.items()}
            horizons = {}
            for kind, key in data.get("horizons", {}).items():
                if kind not in periods:
                    raise ValueError(f"unknown period kind {kind!r}")
                horizons[kind] = str(key)
            state = cls(
                rep_id=str(data["rep_id"]),
                periods=periods,
                horizons=horizons,
                credit_marks={str(k): int(v) for k, v in data.get("credit_marks", {}).items()},
                activity_marks={str(k): int(v) for k, v in data.get("activity_marks", {}).items()},
                version=int(data.get("version", 0)),
                evictions=[PeriodEviction.from_dict(item) for item in data.get("evictions", ())],
                eviction_seq=int(data.get("eviction_seq", 0)),
                minute_floor=None if data.get("minute_floor") is None else int(data["minute_floor"]),
                days={int(day) for day in data.get("days", ())},
                minute_outbox=[MinuteEntry.from_list(item) for item in data.get("minute_outbox", ())],
                day_evictions=[(int(seq), int(day)) for seq, day in data.get("day_evictions", ())],
                reached=TiersReached.from_dict(data.get("reached", {})),
                earned={
                    str(a): {str(key): str(when) for key, when in periods.items()}
                    for a, periods in data.get("earned", {}).items()
                },
                streak_days={
                    str(s): [(str(a), str(b)) for a, b in runs] for s, runs in data.get("streak_days", {}).items()
                },
                streak_marks={
                    str(s): {str(d): {str(m): str(w) for m, w in marks.items()} for d, marks in firsts.items()}
                    for s, firsts in data.get("streak_marks", {}).items()
                },
                retention=retention,
                minute_horizon=minute_horizon,
            )
            legacy = data.get("minutes")
            if legacy:
                for minute in sorted(int(m) for m in legacy):
                    state._add_minute(minute, from_totals(legacy[str(minute)]), LEGACY_SOURCE, 0)
            return state
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stored rep state: {exc!r}") from exc
