"""When a notification may go out: quiet hours on the rep's wall clock, the hourly cap, retry back-off and the
coaching digest's schedule."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.preferences import QuietHours, parse_clock
from services.notifier.scheduling import (
    cap_deferral,
    digest_slot,
    hour_window,
    next_digest_slot,
    quiet_until,
    schedule_delivery,
)

LA = ZoneInfo("America/Los_Angeles")
TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
NIGHT = QuietHours.parse("22:00", "07:00")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_quiet_hours_before_midnight_end_the_next_local_morning() -> None:
    # 06:30 UTC on Nov 30 is 22:30 on Nov 29 in Los Angeles: quiet until 07:00 PST on Nov 30 = 15:00 UTC.
    assert quiet_until(at("2026-11-30T06:30:00+00:00"), NIGHT, LA) == at("2026-11-30T15:00:00+00:00")


def test_quiet_hours_after_midnight_end_the_same_local_morning() -> None:
    # 14:00 UTC is 06:00 PST: still quiet, one hour to go.
    assert quiet_until(at("2026-11-30T14:00:00+00:00"), NIGHT, LA) == at("2026-11-30T15:00:00+00:00")


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another() -> None:
    instant = at("2026-11-30T06:30:00+00:00")  # 22:30 in Los Angeles, 15:30 in Tokyo
    assert quiet_until(instant, NIGHT, LA) is not None
    assert quiet_until(instant, NIGHT, TOKYO) is None


def test_quiet_hours_cross_the_month_and_year_boundary() -> None:
    # 23:15 on Dec 31 in Tokyo (14:15 UTC): quiet until 07:00 on Jan 1 in Tokyo (22:00 UTC Dec 31).
    assert quiet_until(at("2026-12-31T14:15:00+00:00"), NIGHT, TOKYO) == at("2026-12-31T22:00:00+00:00")


def test_quiet_end_is_exclusive_and_start_inclusive() -> None:
    assert quiet_until(at("2026-11-30T15:00:00+00:00"), NIGHT, LA) is None  # 07:00 PST exactly
    assert quiet_until(at("2026-11-30T06:00:00+00:00"), NIGHT, LA) == at("2026-11-30T15:00:00+00:00")  # 22:00


def test_a_daytime_quiet_period_does_not_wrap() -> None:
    lunch = QuietHours.parse("12:00", "13:00")
    assert quiet_until(at("2026-06-01T10:30:00+00:00"), lunch, BERLIN) == at("2026-06-01T11:00:00+00:00")
    assert quiet_until(at("2026-06-01T11:30:00+00:00"), lunch, BERLIN) is None


def test_quiet_hours_over_a_spring_forward_night_end_at_local_seven() -> None:
    # Berlin moves from CET to CEST on 2026-03-29 at 02:00; 07:00 CEST is 05:00 UTC.
    assert quiet_until(at("2026-03-28T22:30:00+00:00"), NIGHT, BERLIN) == at("2026-03-29T05:00:00+00:00")


def test_quiet_hours_in_the_repeated_autumn_hour_end_at_the_second_occurrence() -> None:
    # Berlin repeats 02:00–03:00 on 2026-10-25. Quiet 23:00–02:30: at 02:10 CET (the second pass, 01:10 UTC)
    # the wall clock has not yet shown 02:30 for the last time; that is at 01:30 UTC.
    quiet = QuietHours.parse("23:00", "02:30")
    assert quiet_until(at("2026-10-25T01:10:00+00:00"), quiet, BERLIN) == at("2026-10-25T01:30:00+00:00")


def test_no_quiet_hours_never_defers() -> None:
    assert quiet_until(at("2026-11-30T06:30:00+00:00"), None, LA) is None


@pytest.mark.parametrize("bad", ["7:00", "24:00", "07:60", "0700", "ab:cd", ""])
def test_clock_times_must_be_hh_mm(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_clock(bad)


def test_equal_start_and_end_is_rejected() -> None:
    with pytest.raises(ValueError, match="equal"):
        QuietHours.parse("22:00", "22:00")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
       st.sampled_from([LA, TOKYO, BERLIN, KOLKATA]),
       st.times().map(lambda t: t.replace(second=0, microsecond=0)),
       st.times().map(lambda t: t.replace(second=0, microsecond=0)))
def test_quiet_until_is_later_and_outside_the_quiet_period(now: datetime, zone: ZoneInfo, start: time,
                                                          end: time) -> None:
    if start == end:
        return
    quiet = QuietHours(start, end)
    until = quiet_until(now, quiet, zone)
    if until is None:
        assert not quiet.contains(now.astimezone(zone).time().replace(tzinfo=None))
        return
    assert now < until <= now + timedelta(hours=25)
    wall = until.astimezone(zone).time().replace(tzinfo=None)
    if wall == end:  # (the end time can fall into a DST gap; then the clock jumps past it)
        assert not quiet.contains(wall)


def test_hour_window_follows_the_reps_wall_clock() -> None:
    # Kolkata is UTC+05:30, so its clock hours start at :30 UTC.
    start, end = hour_window(at("2026-11-30T10:45:00+00:00"), KOLKATA)
    assert (start, end) == (at("2026-11-30T10:30:00+00:00"), at("2026-11-30T11:30:00+00:00"))
    start, end = hour_window(at("2026-11-30T10:45:00+00:00"), LA)
    assert (start, end) == (at("2026-11-30T10:00:00+00:00"), at("2026-11-30T11:00:00+00:00"))


def test_over_the_hourly_cap_waits_for_the_next_hour_window() -> None:
    now = at("2026-11-30T10:45:00+00:00")
    assert cap_deferral(now, 1, 2, LA) is None
    assert cap_deferral(now, 2, 2, LA) == at("2026-11-30T11:00:00+00:00")
    assert cap_deferral(now, 50, None, LA) is None


def test_quiet_hours_come_before_the_cap() -> None:
    now = at("2026-11-30T06:30:00+00:00")  # 22:30 in LA
    decision = schedule_delivery(now, quiet=NIGHT, max_per_hour=1, sent_in_window=5, zone=LA)
    assert (decision.due_at, decision.reason) == (at("2026-11-30T15:00:00+00:00"), "quiet_hours")
    decision = schedule_delivery(at("2026-11-30T18:10:00+00:00"), quiet=NIGHT, max_per_hour=1, sent_in_window=1,
                                 zone=LA)
    assert (decision.due_at, decision.reason) == (at("2026-11-30T19:00:00+00:00"), "hourly_cap")
    assert schedule_delivery(at("2026-11-30T18:10:00+00:00"), quiet=NIGHT, max_per_hour=1, sent_in_window=0,
                             zone=LA).send_now


def test_weekday_digest_slots_skip_weekends_in_the_managers_zone() -> None:
    eight = time(8, 0)
    # Monday 2026-11-30 07:59 in Berlin: the latest weekday slot is Friday 2026-11-27 08:00.
    slot = digest_slot(at("2026-11-30T06:59:00+00:00"), schedule="weekdays", at=eight, zone=BERLIN)
    assert slot == ("2026-11-27", at("2026-11-27T07:00:00+00:00"))
    slot = digest_slot(at("2026-11-30T07:00:00+00:00"), schedule="weekdays", at=eight, zone=BERLIN)
    assert slot == ("2026-11-30", at("2026-11-30T07:00:00+00:00"))


def test_daily_and_weekly_digest_slots() -> None:
    eight = time(8, 0)
    sunday = at("2026-11-29T12:00:00+00:00")
    assert digest_slot(sunday, schedule="daily", at=eight, zone=UTC)[0] == "2026-11-29"  # type: ignore[arg-type,index]
    assert digest_slot(sunday, schedule="weekly", at=eight, zone=UTC)[0] == "2026-11-23"  # type: ignore[arg-type,index]
    assert digest_slot(sunday, schedule="off", at=eight, zone=UTC) is None  # type: ignore[arg-type]
    assert next_digest_slot(sunday, schedule="weekdays", at=eight, zone=LA) == at("2026-11-30T16:00:00+00:00")


def test_a_local_digest_time_on_the_date_line() -> None:
    # 08:00 in Tokyo on Monday is 23:00 UTC on Sunday.
    slot = digest_slot(at("2026-11-29T23:30:00+00:00"), schedule="weekdays", at=time(8, 0), zone=TOKYO)
    assert slot == ("2026-11-30", at("2026-11-29T23:00:00+00:00"))
