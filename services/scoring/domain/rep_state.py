"""One rep's rolling KPI totals per period, with the dedup marks that guard them, kept in one table value.

It keeps the most recent N periods of each kind; older ones leave as evictions bound for SQL history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from services.scoring.domain.credits import Credit
from services.scoring.domain.kpis import ACTIVITY_KIND_PATTERN, KpiTotals, is_activity_kind
from services.scoring.domain.periods import PERIOD_KINDS, Calendar, PeriodKind

__all__ = ["DEFAULT_RETENTION", "PeriodEviction", "RepState"]

# How many periods of each kind a rep's state keeps: two months of days, half a year of weeks,
# two years of months, two years of quarters, and the current plus three past fiscal years.
DEFAULT_RETENTION: Final[Mapping[PeriodKind, int]] = MappingProxyType(
    {"day": 62, "week": 27, "month": 25, "quarter": 9, "year": 4}
)

# The five period kinds paired with their position in Calendar.period_keys(), for the hot loop.
_KIND_POSITIONS: Final = tuple(enumerate(PERIOD_KINDS))


@dataclass(frozen=True, slots=True)
class PeriodEviction:
    """Totals that leave the state for SQL history: add `totals` to the history row of (rep, kind, key).

    The first eviction of a period carries its complete totals; a late credit for a period already in
    history arrives as an eviction of just that delta. `seq` is unique per rep, so a writer can record
    which evictions it has stored and never add one twice.
    """

    seq: int
    kind: PeriodKind
    key: str
    totals: KpiTotals

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form."""
        return {"seq": self.seq, "kind": self.kind, "key": self.key, "totals": self.totals.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeriodEviction:
        """Rebuild an eviction from `to_dict()` output."""
        kind = data["kind"]
        if kind not in PERIOD_KINDS:
            raise ValueError(f"unknown period kind {kind!r} in a stored eviction")
        return cls(int(data["seq"]), kind, str(data["key"]), KpiTotals.from_dict(data["totals"]))


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
    """

    rep_id: str
    periods: dict[PeriodKind, dict[str, KpiTotals]] = field(default_factory=_empty_periods)
    horizons: dict[PeriodKind, str] = field(default_factory=dict)
    credit_marks: dict[str, int] = field(default_factory=dict)
    activity_marks: dict[str, int] = field(default_factory=dict)
    version: int = 0
    evictions: list[PeriodEviction] = field(default_factory=list)
    eviction_seq: int = 0
    retention: Mapping[PeriodKind, int] = field(
        default_factory=lambda: DEFAULT_RETENTION, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for kind in PERIOD_KINDS:
            limit = self.retention.get(kind)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"retention for {kind} must be an integer ≥ 1, got {limit!r}")
            self.periods.setdefault(kind, {})

    # -- folding ----------------------------------------------------------------------------------

    def apply_credits(self, credits: Sequence[Credit], *, source: str, seq: int, calendar: Calendar) -> bool:
        """Apply all credits of one source event as one unit; False (and no change) if already applied."""
        if seq <= self.credit_marks.get(source, -1):
            return False
        rep_id = self.rep_id
        for credit in credits:
            if credit.rep_id != rep_id:
                raise ValueError(f"credit for rep {credit.rep_id!r} applied to the state of rep {rep_id!r}")
        periods, zone, keys_for = self.periods, calendar.zone, calendar.keys_for_local_date
        late: dict[tuple[PeriodKind, str], KpiTotals] = {}
        for credit in credits:
            keys = keys_for(credit.at.astimezone(zone).date())
            for position, kind in _KIND_POSITIONS:
                key = keys[position]
                totals = periods[kind].get(key)
                if totals is None:
                    totals = self._open_period(kind, key, late)
                totals.apply_credit(credit)
        self._finish_change(late)
        self.credit_marks[source] = seq
        return True

    def apply_credit(self, credit: Credit, *, source: str, seq: int, calendar: Calendar) -> bool:
        """Apply one credit that is the whole of its source event (see `apply_credits`)."""
        return self.apply_credits((credit,), source=source, seq=seq, calendar=calendar)

    def apply_activity(
        self, kind: str, at: datetime, *, source: str, seq: int, calendar: Calendar, count: int = 1
    ) -> bool:
        """Count an activity of `kind` at instant `at`; False (and no change) if already applied."""
        if seq <= self.activity_marks.get(source, -1):
            return False
        if not is_activity_kind(kind):
            raise ValueError(f"activity kind {kind!r} must match {ACTIVITY_KIND_PATTERN.pattern}")
        keys = calendar.period_keys(at)
        periods = self.periods
        late: dict[tuple[PeriodKind, str], KpiTotals] = {}
        for position, period_kind in _KIND_POSITIONS:
            key = keys[position]
            totals = periods[period_kind].get(key)
            if totals is None:
                totals = self._open_period(period_kind, key, late)
            totals.add_activity(kind, count)
        self._finish_change(late)
        self.activity_marks[source] = seq
        return True

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
        return totals

    def _finish_change(self, late: dict[tuple[PeriodKind, str], KpiTotals]) -> None:
        for (kind, key), totals in late.items():
            self._emit(kind, key, totals)
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
        self.version += 1

    def _emit(self, kind: PeriodKind, key: str, totals: KpiTotals) -> None:
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

    def drain_evicted(self) -> list[tuple[PeriodKind, str, KpiTotals]]:
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
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, retention: Mapping[PeriodKind, int] = DEFAULT_RETENTION
    ) -> RepState:
        """Rebuild a state from `to_dict()` output; `retention` is configuration, not stored."""
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
            return cls(
                rep_id=str(data["rep_id"]),
                periods=periods,
                horizons=horizons,
                credit_marks={str(k): int(v) for k, v in data.get("credit_marks", {}).items()},
                activity_marks={str(k): int(v) for k, v in data.get("activity_marks", {}).items()},
                version=int(data.get("version", 0)),
                evictions=[PeriodEviction.from_dict(item) for item in data.get("evictions", ())],
                eviction_seq=int(data.get("eviction_seq", 0)),
                retention=retention,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stored rep state: {exc!r}") from exc
