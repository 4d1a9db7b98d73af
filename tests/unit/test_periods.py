"""Periods (CONTRACT §2): keys, fiscal labels, bounds across DST, elapsed fraction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.periods import PERIOD_KINDS, Calendar

ZONES = [
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",  # -03:30 with DST
    "America/Santiago",  # DST changes at midnight
    "America/Havana",  # midnight does not exist on the spring-forward day
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Asia/Tehran",
    "Australia/Adelaide",  # +09:30 / +10:30
    "Australia/Lord_Howe",  # half-hour DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Kiritimati",  # +14
    "Pacific/Pago_Pago",  # -11
    "Pacific/Apia",  # skipped 2011-12-30 entirely
]

instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))
calendars = st.builds(Calendar, st.sampled_from(ZONES), st.integers(min_value=1, max_value=12))
kinds = st.sampled_from(PERIOD_KINDS)


def independent_keys(local: date, start_month: int) -> dict[str, str]:
    """The keys by different arithmetic than the implementation: ordinals for ISO weeks, a month shift
    for the fiscal calendar."""
    monday = local - timedelta(days=local.weekday())
    thursday = monday + timedelta(days=3)
    week = (thursday.toordinal() - date(thursday.year, 1, 1).toordinal()) // 7 + 1
    # Months since year 0, moved so that the fiscal year's first month lands on index 0 of the
    # year it ends in.
    shifted = local.year * 12 + (local.month - 1) - (start_month - 1) + (12 if start_month > 1 else 0)
    fiscal_year, fiscal_month = divmod(shifted, 12)
    return {
        "day": f"{local.year:04d}-{local.month:02d}-{local.day:02d}",
        "week": f"{thursday.year:04d}-W{week:02d}",
        "month": f"{local.year:04d}-{local.month:02d}",
        "quarter": f"FY{fiscal_year:04d}-Q{fiscal_month // 3 + 1}",
        "year": f"FY{fiscal_year:04d}",
    }


# -- the contract's examples -----------------------------------------------------------------------


def test_contract_example_keys_with_a_january_fiscal_year() -> None:
    calendar = Calendar()
    assert calendar.keys(datetime(2026, 11, 29, 12, tzinfo=UTC)) == {
        "day": "2026-11-29",
        "week": "2026-W48",
        "month": "2026-11",
        "quarter": "FY2026-Q4",
        "year": "FY2026",
    }


def test_fiscal_year_starting_in_january_is_the_calendar_year() -> None:
    calendar = Calendar(fiscal_year_start_month=1)
    assert calendar.parse_key("year", "FY2026") == (date(2026, 1, 1), date(2027, 1, 1))
    assert calendar.key_for_date(date(2026, 1, 1), "year") == "FY2026"
    assert calendar.key_for_date(date(2026, 12, 31), "year") == "FY2026"


def test_fiscal_year_is_labelled_by_the_year_it_ends_in() -> None:
    calendar = Calendar(fiscal_year_start_month=2)
    assert calendar.parse_key("year", "FY2027") == (date(2026, 2, 1), date(2027, 2, 1))
    assert calendar.key_for_date(date(2026, 1, 31), "year") == "FY2026"
    assert calendar.key_for_date(date(2026, 2, 1), "year") == "FY2027"
    assert calendar.key_for_date(date(2027, 1, 31), "year") == "FY2027"


def test_first_fiscal_quarter_with_a_february_start_is_february_to_april() -> None:
    calendar = Calendar(fiscal_year_start_month=2)
    assert calendar.parse_key("quarter", "FY2027-Q1") == (date(2026, 2, 1), date(2026, 5, 1))
    assert calendar.key_for_date(date(2026, 2, 1), "quarter") == "FY2027-Q1"
    assert calendar.key_for_date(date(2026, 4, 30), "quarter") == "FY2027-Q1"
    assert calendar.key_for_date(date(2026, 5, 1), "quarter") == "FY2027-Q2"
    assert calendar.key_for_date(date(2027, 1, 31), "quarter") == "FY2027-Q4"


def test_iso_week_uses_the_iso_year_at_year_boundaries() -> None:
    calendar = Calendar()
    assert calendar.key_for_date(date(2027, 1, 1), "week") == "2026-W53"
    assert calendar.key_for_date(date(2024, 12, 30), "week") == "2025-W01"
    assert calendar.parse_key("week", "2026-W53") == (date(2026, 12, 28), date(2027, 1, 4))


def test_an_instant_belongs_to_the_period_that_contains_it_in_the_business_timezone() -> None:
    calendar = Calendar("America/New_York")
    late_evening = datetime(2026, 4, 1, 2, 30, tzinfo=UTC)  # 22:30 on 31 March in New York
    assert calendar.key(late_evening, "day") == "2026-03-31"
    assert calendar.key(late_evening, "month") == "2026-03"
    assert calendar.key(late_evening, "quarter") == "FY2026-Q1"


# -- properties ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(instant=instants, calendar=calendars)
def test_keys_match_an_independent_computation(instant: datetime, calendar: Calendar) -> None:
    local = instant.astimezone(ZoneInfo(calendar.timezone)).date()
    expected = independent_keys(local, calendar.fiscal_year_start_month)
    assert calendar.keys(instant) == expected
    assert {kind: calendar.key(instant, kind) for kind in PERIOD_KINDS} == expected
    assert calendar.period_keys(instant) == tuple(expected[kind] for kind in PERIOD_KINDS)


@settings(max_examples=300, deadline=None)
@given(instant=instants, calendar=calendars, kind=kinds)
def test_bounds_contain_the_instant_and_consecutive_periods_tile_time(
    instant: datetime, calendar: Calendar, kind: str
) -> None:
    key = calendar.key(instant, kind)  # type: ignore[arg-type]
    start, end = calendar.bounds(kind, key)  # type: ignore[arg-type]
    assert start.tzinfo == calendar.zone and end.tzinfo == calendar.zone
    assert start.timestamp() <= instant.timestamp() < end.timestamp()
    # The first instant is in the period, the instant before it is not; likewise at the end.
    tick = timedelta(microseconds=1)
    assert calendar.key(start, kind) == key  # type: ignore[arg-type]
    assert calendar.key(start.astimezone(UTC) - tick, kind) != key  # type: ignore[arg-type]
    assert calendar.key(end.astimezone(UTC) - tick, kind) == key  # type: ignore[arg-type]
    following = calendar.key(end, kind)  # type: ignore[arg-type]
    assert following > key
    assert calendar.bounds(kind, following)[0].timestamp() == end.timestamp()  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(instant=instants, calendar=calendars, kind=kinds)
def test_a_key_round_trips_through_its_first_date(instant: datetime, calendar: Calendar, kind: str) -> None:
    key = calendar.key(instant, kind)  # type: ignore[arg-type]
    first, end = calendar.parse_key(kind, key)  # type: ignore[arg-type]
    assert calendar.key_for_date(first, kind) == key  # type: ignore[arg-type]
    assert calendar.key_for_date(end - timedelta(days=1), kind) == key  # type: ignore[arg-type]
    assert calendar.key_for_date(end, kind) != key  # type: ignore[arg-type]


# -- daylight saving -------------------------------------------------------------------------------


def test_a_spring_forward_day_lasts_23_hours_and_a_fall_back_day_25() -> None:
    calendar = Calendar("America/New_York")
    start, end = calendar.bounds("day", "2026-03-08")
    assert end.timestamp() - start.timestamp() == 23 * 3600
    start, end = calendar.bounds("day", "2026-11-01")
    assert end.timestamp() - start.timestamp() == 25 * 3600


def test_a_day_whose_midnight_is_skipped_starts_when_the_clocks_jump() -> None:
    calendar = Calendar("America/Havana")  # 2024-03-10: 00:00 → 01:00
    start, _ = calendar.bounds("day", "2024-03-10")
    assert (start.hour, start.minute) == (1, 0)
    assert start.astimezone(UTC) == datetime(2024, 3, 10, 5, tzinfo=UTC)


# -- elapsed fraction ------------------------------------------------------------------------------


def test_elapsed_fraction_is_clamped_to_zero_and_one() -> None:
    calendar = Calendar()
    assert calendar.elapsed_fraction("month", "2026-11", datetime(2026, 10, 1, tzinfo=UTC)) == 0.0
    assert calendar.elapsed_fraction("month", "2026-11", datetime(2026, 11, 1, tzinfo=UTC)) == 0.0
    assert calendar.elapsed_fraction("month", "2026-11", datetime(2026, 12, 1, tzinfo=UTC)) == 1.0
    assert calendar.elapsed_fraction("month", "2026-11", datetime(2027, 1, 1, tzinfo=UTC)) == 1.0


def test_elapsed_fraction_counts_real_time_across_a_dst_change() -> None:
    calendar = Calendar("America/New_York")
    # 2026-03-08 lasts 23 hours (05:00Z to 04:00Z next day); half of it has gone at 16:30Z.
    now = datetime(2026, 3, 8, 16, 30, tzinfo=UTC)
    assert calendar.elapsed_fraction("day", "2026-03-08", now) == pytest.approx(0.5)


def test_elapsed_fraction_of_a_utc_day_at_noon_is_one_half() -> None:
    assert Calendar().elapsed_fraction("day", "2026-11-29", datetime(2026, 11, 29, 12, tzinfo=UTC)) == 0.5


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key", "message"),
    [
        ("day", "2026-02-30", "day is out of range"),
        ("day", "2026-2-3", "expected YYYY-MM-DD"),
        ("week", "2025-W53", "has no week 53"),
        ("week", "2026-W00", "has no week 0"),
        ("week", "2026-48", "expected YYYY-Www"),
        ("month", "2026-13", "month must be 01–12"),
        ("month", "2026-11-01", "expected YYYY-MM"),
        ("quarter", "FY2026-Q5", "expected FYyyyy-Qn"),
        ("quarter", "2026-Q1", "expected FYyyyy-Qn"),
        ("year", "2026", "expected FYyyyy"),
        ("year", "FY２０２６", "expected FYyyyy"),  # non-ASCII digits are not a key
        ("year", "FY2026\n", "expected FYyyyy"),
    ],
)
def test_parse_key_rejects_malformed_keys_with_a_clear_message(kind: str, key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Calendar().parse_key(kind, key)  # type: ignore[arg-type]


def test_unknown_period_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown period kind 'fortnight'"):
        Calendar().key(datetime(2026, 1, 1, tzinfo=UTC), "fortnight")  # type: ignore[arg-type]


def test_naive_instants_are_rejected() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        Calendar().key(datetime(2026, 1, 1), "day")
    with pytest.raises(ValueError, match="no UTC offset"):
        Calendar().elapsed_fraction("day", "2026-01-01", datetime(2026, 1, 1))


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_calendar_rejects_an_unknown_timezone(timezone: str) -> None:
    with pytest.raises(ValueError, match="timezone"):
        Calendar(timezone)


@pytest.mark.parametrize("month", [0, 13, True, "2"])
def test_calendar_rejects_a_fiscal_start_month_outside_1_to_12(month: object) -> None:
    with pytest.raises(ValueError, match="fiscal_year_start_month"):
        Calendar("UTC", month)  # type: ignore[arg-type]


def test_calendars_with_the_same_settings_are_equal_and_hashable() -> None:
    assert Calendar("Asia/Kolkata", 4) == Calendar("Asia/Kolkata", 4)
    assert len({Calendar("Asia/Kolkata", 4), Calendar("Asia/Kolkata", 4)}) == 1


# Zones with DST, with transitions at local midnight (Santiago, Havana, Beirut), half-hour shifts (Lord Howe), a
# date-line jump (Apia skipped 2011-12-30) and local mean time with seconds in its offset before 1900 (Amsterdam).
AWKWARD_ZONES = ["America/New_York", "America/Santiago", "America/Havana", "Asia/Beirut", "Australia/Lord_Howe",
                 "Pacific/Apia", "Europe/Amsterdam", "Asia/Kolkata", "UTC"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(AWKWARD_ZONES),
    st.lists(st.datetimes(min_value=datetime(1880, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
             min_size=1, max_size=6),
    st.lists(st.integers(0, 59_999_999), min_size=1, max_size=4),
)
def test_the_local_date_by_minute_is_the_local_date_of_every_instant_in_it(
    zone: str, instants: list[datetime], offsets_us: list[int]
) -> None:
    calendar = Calendar(zone)
    for instant in instants:
        start = EPOCH + (instant - EPOCH) // timedelta(minutes=1) * timedelta(minutes=1)
        for offset in offsets_us:  # several instants of one minute, the cache filled by the first
            at = start + timedelta(microseconds=offset)
            minute = (at - EPOCH) // timedelta(minutes=1)
            assert calendar.local_date_in_minute(at, minute) == at.astimezone(calendar.zone).date()


@pytest.mark.parametrize(("zone", "utc"), [
    ("America/Santiago", datetime(2026, 4, 5, 2, 59, 30, tzinfo=UTC)),  # 24:00 → 23:00: back into the day before
    ("America/Santiago", datetime(2026, 9, 6, 3, 59, 59, tzinfo=UTC)),  # 24:00 → 01:00
    ("America/New_York", datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 5, 0, 1, tzinfo=UTC)),
    ("Pacific/Apia", datetime(2011, 12, 30, 9, 59, 59, tzinfo=UTC)),  # the day that was skipped
    ("Europe/Amsterdam", datetime(1892, 5, 10, 23, 40, 10, tzinfo=UTC)),  # midnight at +00:19:32 LMT
    ("Europe/Amsterdam", datetime(1892, 5, 10, 23, 40, 40, tzinfo=UTC)),
])
def test_the_local_date_by_minute_on_transitions_and_odd_offsets(zone: str, utc: datetime) -> None:
    calendar = Calendar(zone)
    minute = (utc - EPOCH) // timedelta(minutes=1)
    for second in range(60):  # every second of the minute, in both orders
        at = EPOCH + minute * timedelta(minutes=1) + timedelta(seconds=second)
        assert calendar.local_date_in_minute(at, minute) == at.astimezone(calendar.zone).date()
    for second in reversed(range(60)):
        at = EPOCH + minute * timedelta(minutes=1) + timedelta(seconds=second, microseconds=999_999)
        assert calendar.local_date_in_minute(at, minute) == at.astimezone(calendar.zone).date()
