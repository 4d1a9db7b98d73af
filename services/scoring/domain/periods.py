"""Reporting periods: which day, ISO week, month, fiscal quarter and fiscal year an instant belongs to.

Keys and bounds follow CONTRACT §2; a fiscal year is labelled by the calendar year in which it ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["PERIOD_KINDS", "Calendar", "PeriodKey", "PeriodKind", "PeriodKeys", "kind_of_key"]

PeriodKind = Literal["day", "week", "month", "quarter", "year"]
PERIOD_KINDS: Final[tuple[PeriodKind, ...]] = get_args(PeriodKind)

PeriodKey = str
# The five keys of one local date, in PERIOD_KINDS order: (day, week, month, quarter, year).
PeriodKeys = tuple[str, str, str, str, str]

_KEY_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "day": re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})"),
    "week": re.compile(r"([0-9]{4})-W([0-9]{2})"),
    "month": re.compile(r"([0-9]{4})-([0-9]{2})"),
    "quarter": re.compile(r"FY([0-9]{4})-Q([1-4])"),
    "year": re.compile(r"FY([0-9]{4})"),
}
_KEY_EXAMPLES: Final[dict[str, str]] = {
    "day": "YYYY-MM-DD, e.g. 2026-11-29",
    "week": "YYYY-Www (ISO week), e.g. 2026-W48",
    "month": "YYYY-MM, e.g. 2026-11",
    "quarter": "FYyyyy-Qn, e.g. FY2026-Q4",
    "year": "FYyyyy, e.g. FY2026",
}
_UTC: Final = UTC
# Distinct local dates seen in a process are few (a few hundred a year); the cap only guards
# against a pathological feed of random dates.
_KEY_CACHE_LIMIT: Final = 8192
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE: Final = timedelta(minutes=1)
_LAST_MICROSECOND: Final = timedelta(minutes=1, microseconds=-1)


def kind_of_key(key: str) -> PeriodKind | None:
    """The kind of period a key names (`2026-11` → month, `FY2026-Q4` → quarter), or None."""
    for kind in PERIOD_KINDS:
        if _KEY_PATTERNS[kind].fullmatch(key):
            return kind
    return None


def _check_kind(kind: str) -> None:
    if kind not in _KEY_PATTERNS:
        raise ValueError(f"unknown period kind {kind!r}; expected one of {', '.join(PERIOD_KINDS)}")


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


@dataclass(frozen=True)
class Calendar:
    """The business calendar: an IANA timezone and the month the fiscal year starts in (1–12)."""

    timezone: str = "UTC"
    fiscal_year_start_month: int = 1
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _keys_by_date: dict[date, PeriodKeys] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )
    _dates_by_minute: dict[int, date] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if not isinstance(self.timezone, str) or not self.timezone:
            raise ValueError("timezone must be an IANA timezone name such as 'Europe/Berlin'")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone {self.timezone!r}; use an IANA name such as 'America/New_York'"
            ) from exc
        start = self.fiscal_year_start_month
        if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= 12:
            raise ValueError(f"fiscal_year_start_month must be an integer from 1 to 12, got {start!r}")
        object.__setattr__(self, "zone", zone)

    # -- instant → keys -------------------------------------------------------------------------

    def local_date(self, instant: datetime) -> date:
        """The date of `instant` on a wall clock in the calendar's timezone."""
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"instant {instant.isoformat()} has no UTC offset; naive times are ambiguous")
        return instant.astimezone(self.zone).date()

    def local_date_in_minute(self, instant: datetime, minute: int) -> date:
        """`local_date(instant)` for an aware `instant` in epoch minute `minute` (`(instant - epoch) // 1 minute`),
        cached per minute: the scoring agents ask it for every event, and a timezone conversion costs several
        times a lookup. A minute has one local date when its first and last microsecond share their date and
        offset (an offset changes at most once in a minute); one that does not (a pre-1900 local mean time with
        seconds in its offset, a date line inside the minute) is converted instant by instant, never cached."""
        found = self._dates_by_minute.get(minute)
        if found is not None:
            return found
        start = _EPOCH + minute * _MINUTE
        first, last = start.astimezone(self.zone), (start + _LAST_MICROSECOND).astimezone(self.zone)
        if first.date() != last.date() or first.utcoffset() != last.utcoffset():
            return instant.astimezone(self.zone).date()
        if len(self._dates_by_minute) >= _KEY_CACHE_LIMIT * 8:
            self._dates_by_minute.clear()
        found = self._dates_by_minute[minute] = first.date()
        return found

    def key(self, instant: datetime, kind: PeriodKind) -> PeriodKey:
        """The key of the period of `kind` that contains `instant` in the calendar's timezone."""
        _check_kind(kind)
        return self.keys_for_local_date(self.local_date(instant))[PERIOD_KINDS.index(kind)]

    def keys(self, instant: datetime) -> dict[PeriodKind, PeriodKey]:
        """The keys of all five periods that contain `instant`."""
        return dict(zip(PERIOD_KINDS, self.keys_for_local_date(self.local_date(instant)), strict=True))

    def period_keys(self, instant: datetime) -> PeriodKeys:
        """The five keys of `instant` as a tuple in PERIOD_KINDS order (the cheap form for hot loops)."""
        return self.keys_for_local_date(self.local_date(instant))

    def key_for_date(self, d: date, kind: PeriodKind) -> PeriodKey:
        """The key of the period of `kind` that contains the local date `d`."""
        _check_kind(kind)
        return self.keys_for_local_date(d)[PERIOD_KINDS.index(kind)]

    def keys_for_local_date(self, d: date) -> PeriodKeys:
        """All five keys of a local date, cached: every key is a function of the local date alone."""
        cached = self._keys_by_date.get(d)
        if cached is not None:
            return cached
        if isinstance(d, datetime):
            raise TypeError("keys_for_local_date takes a date; use key()/keys() for instants")
        keys = self._compute_keys(d)
        if len(self._keys_by_date) >= _KEY_CACHE_LIMIT:
            self._keys_by_date.clear()
        self._keys_by_date[d] = keys
        return keys

    def _compute_keys(self, d: date) -> PeriodKeys:
        year, month = d.year, d.month
        iso_year, iso_week, _ = d.isocalendar()
        start = self.fiscal_year_start_month
        fiscal_year = year + 1 if start > 1 and month >= start else year
        quarter = (month - start) % 12 // 3 + 1
        return (
            f"{year:04d}-{month:02d}-{d.day:02d}",
            f"{iso_year:04d}-W{iso_week:02d}",
            f"{year:04d}-{month:02d}",
            f"FY{fiscal_year:04d}-Q{quarter}",
            f"FY{fiscal_year:04d}",
        )

    # -- key → dates and instants --------------------------------------------------------------

    def parse_key(self, kind: PeriodKind, key: str) -> tuple[date, date]:
        """Validate `key` and return the period's local dates: first day (inclusive), last (exclusive)."""
        _check_kind(kind)
        match = _KEY_PATTERNS[kind].fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise ValueError(f"invalid {kind} key {key!r}; expected {_KEY_EXAMPLES[kind]}")
        numbers = [int(group) for group in match.groups()]
        try:
            return self._date_range(kind, numbers)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"invalid {kind} key {key!r}: {exc}") from None

    def _date_range(self, kind: str, numbers: list[int]) -> tuple[date, date]:
        if kind == "day":
            first = date(numbers[0], numbers[1], numbers[2])
            return first, first + timedelta(days=1)
        if kind == "week":
            iso_year, week = numbers
            try:
                first = date.fromisocalendar(iso_year, week, 1)
            except ValueError:
                raise ValueError(f"ISO year {iso_year} has no week {week}") from None
            return first, first + timedelta(days=7)
        if kind == "month":
            year, month = numbers
            if not 1 <= month <= 12:
                raise ValueError(f"month must be 01–12, got {month:02d}")
            return date(year, month, 1), date(*_add_months(year, month, 1), 1)
        # Fiscal periods: FY n starts in calendar year n when the fiscal year starts in January,
        # otherwise in year n - 1 (it is labelled by the year in which it ends).
        fiscal_year = numbers[0]
        start = self.fiscal_year_start_month
        first_year = fiscal_year if start == 1 else fiscal_year - 1
        if kind == "quarter":
            offset, length = (numbers[1] - 1) * 3, 3
        else:
            offset, length = 0, 12
        year, month = _add_months(first_year, start, offset)
        end_year, end_month = _add_months(year, month, length)
        return date(year, month, 1), date(end_year, end_month, 1)

    def start_of_day(self, d: date) -> datetime:
        """The first instant of local date `d`, in the calendar's timezone (correct across DST gaps)."""
        # fold=0 on a wall time inside a DST gap uses the offset from before the gap, which lands
        # exactly on the transition instant: the first instant that really has date `d`.
        midnight = datetime(d.year, d.month, d.day, tzinfo=self.zone)
        return midnight.astimezone(_UTC).astimezone(self.zone)

    def bounds(self, kind: PeriodKind, key: str) -> tuple[datetime, datetime]:
        """The period's instants `[start, end)` as aware datetimes in the calendar's timezone.

        Compare them with other instants via UTC (`.timestamp()`): Python compares two datetimes that
        share a tzinfo by wall time, which is wrong inside a repeated DST hour.
        """
        first, end = self.parse_key(kind, key)
        return self.start_of_day(first), self.start_of_day(end)

    def elapsed_fraction(self, kind: PeriodKind, key: str, now: datetime) -> float:
        """How much of the period has gone by at `now`, from 0.0 to 1.0 (real elapsed time, not wall time)."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"now {now.isoformat()} has no UTC offset; naive times are ambiguous")
        start, end = self.bounds(kind, key)
        begin, finish, at = start.timestamp(), end.timestamp(), now.timestamp()
        if at <= begin:
            return 0.0
        if at >= finish:
            return 1.0
        return (at - begin) / (finish - begin)
