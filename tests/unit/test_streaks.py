"""Streaks (docs/achievements.md, Streaks): consecutive working days on which a rep met a daily rule — weekends
and holidays neither break nor extend them, days are the business timezone's (DST and all), milestones are
recorded once per streak, and a late day that fills a gap joins two streaks without notifying twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.config import Streak
from schemas.messages import RepProgress
from services.notifier.messages import celebration_message, generic_payload, headline, slack_payload, tier_email
from services.notifier.tier_crossings import STREAK, milestones_in_snapshot
from services.scoring.domain.credits import Credit
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import RepState
from services.scoring.domain.streaks import StreakCalendar, judge_streaks, set_day, status, streaks

AT = datetime(2026, 3, 20, 12, tzinfo=UTC)
CALLS = Streak.model_validate({
    "streak_id": "calls", "name": "20 calls a day", "rule": {"metric": "activities.call", "at_least": 3},
    "holidays": ["2026-04-03"], "milestones": [3, 5],
})
WORK = StreakCalendar.of(CALLS)  # Monday to Friday, Good Friday 2026 off
BERLIN = Calendar("Europe/Berlin")


def d(text: str) -> date:
    return date.fromisoformat(text)


def runs_of(*days: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for day in days:
        out = set_day(out, d(day), True)
    return out


def test_runs_merge_split_and_stay_sorted() -> None:
    runs = runs_of("2026-03-04", "2026-03-02", "2026-03-03", "2026-03-10")
    assert runs == [("2026-03-02", "2026-03-04"), ("2026-03-10", "2026-03-10")]
    assert set_day(runs, d("2026-03-03"), False) == [("2026-03-02", "2026-03-02"), ("2026-03-04", "2026-03-04"),
                                                    ("2026-03-10", "2026-03-10")]
    assert set_day(runs, d("2026-03-03"), True) == runs  # already in
    assert set_day(runs, d("2026-03-20"), False) == runs  # not in


def test_a_weekend_neither_breaks_nor_extends_a_streak_and_a_holiday_is_skipped() -> None:
    # Wed 1 April, Thu 2, (Good Friday 3 off), (weekend), Mon 6, Tue 7: five working days in a row.
    runs = runs_of("2026-04-01", "2026-04-02", "2026-04-06", "2026-04-07")
    assert [(s.first, s.last, s.length) for s in streaks(runs, WORK)] == [(d("2026-04-01"), d("2026-04-07"), 4)]
    # A call on Saturday counts for nothing, and breaks nothing.
    assert streaks(runs_of("2026-04-01", "2026-04-02", "2026-04-04", "2026-04-06"), WORK)[0].length == 3
    # A missed Monday breaks it.
    split = streaks(runs_of("2026-03-26", "2026-03-27", "2026-03-31"), WORK)
    assert [s.length for s in split] == [2, 1]


@pytest.mark.parametrize(
    ("today", "current", "at_risk", "met_today"),
    [
        ("2026-04-07", 4, False, True),  # met today
        ("2026-04-08", 4, True, False),  # a working day, not met yet: about to break
        ("2026-04-09", 0, False, False),  # Wednesday missed: broken
    ],
)
def test_status_is_as_of_a_day(today: str, current: int, at_risk: bool, met_today: bool) -> None:
    runs = runs_of("2026-04-01", "2026-04-02", "2026-04-06", "2026-04-07")
    found = status(runs, WORK, d(today))
    assert (found.current, found.at_risk, found.met_today, found.longest) == (current, at_risk, met_today, 4)


def test_over_a_weekend_a_streak_is_alive_and_not_at_risk() -> None:
    runs = runs_of("2026-03-16", "2026-03-17", "2026-03-18", "2026-03-19", "2026-03-20")
    for weekend_day in ("2026-03-21", "2026-03-22"):
        found = status(runs, WORK, d(weekend_day))
        assert (found.current, found.at_risk, found.since) == (5, False, d("2026-03-16"))
    assert status(runs, WORK, d("2026-03-23")).at_risk  # Monday morning


def test_the_29th_of_february_is_a_working_day_like_any_other() -> None:
    leap = StreakCalendar(frozenset(range(5)), frozenset())
    runs = runs_of("2028-02-28", "2028-02-29", "2028-03-01")  # Mon, Tue, Wed
    assert status(runs, leap, d("2028-03-01")).current == 3
    assert leap.workdays_between(d("2028-02-01"), d("2028-02-29")) == 21


def test_workdays_between_counts_any_week_and_holiday_layout() -> None:
    six_days = StreakCalendar(frozenset(range(6)), frozenset({d("2026-12-25")}))
    for start in range(14):
        first = d("2026-12-01") + timedelta(days=start)
        for span in range(40):
            last = first + timedelta(days=span)
            expected = sum(1 for n in range(span + 1) if six_days.works(first + timedelta(days=n)))
            assert six_days.workdays_between(first, last) == expected


def calls_on(state: RepState, moments: list[datetime], calendar: Calendar = BERLIN) -> set[str]:
    """Three calls at each moment; returns the day keys the state's totals changed on (and clears them)."""
    for moment in moments:
        for minute in range(3):
            seq = state.activity_marks.get("activities/0", -1) + 1
            state.apply_activity("call", moment + timedelta(minutes=minute), source="activities/0", seq=seq,
                                 calendar=calendar)
    touched, state.touched = state.touched, set()
    return {key for kind, key in touched if kind == "day"}


def test_days_are_the_business_timezones_across_a_dst_change() -> None:
    # Berlin moves to summer time on Sunday 29 March 2026. 23:30 UTC on Friday 27 March is already Saturday 00:30
    # in Berlin (a weekend day); 22:30 UTC on Monday 30 March is 00:30 on Tuesday (summer time, UTC+2).
    state = RepState("ana")
    touched = calls_on(state, [datetime(2026, 3, 26, 10, tzinfo=UTC), datetime(2026, 3, 27, 23, 30, tzinfo=UTC),
                               datetime(2026, 3, 30, 22, 30, tzinfo=UTC)])
    assert touched == {"2026-03-26", "2026-03-28", "2026-03-31"}
    judge_streaks([(CALLS, WORK)], state, None, touched, AT)
    # Thursday, then Monday 30 missed (its calls fell on Tuesday in Berlin): two streaks of one day.
    assert [s.length for s in streaks(state.streak_days["calls"], WORK)] == [1, 1]


def test_milestones_are_recorded_once_and_a_late_day_joining_two_streaks_notifies_nothing_twice() -> None:
    state = RepState("ana")
    week = [datetime(2026, 3, day, 9, tzinfo=UTC) for day in (16, 17, 18)]  # Mon–Wed
    earned = judge_streaks([(CALLS, WORK)], state, None, calls_on(state, week), AT)
    assert earned == [("calls", "2026-03-16", 3)]
    assert judge_streaks([(CALLS, WORK)], state, None, calls_on(state, []), AT) == []
    # Friday and the next Monday and Tuesday: a streak of its own from Friday (Thursday missed) reaching 3.
    later = [datetime(2026, 3, 20, 9, tzinfo=UTC), datetime(2026, 3, 23, 9, tzinfo=UTC),
             datetime(2026, 3, 24, 9, tzinfo=UTC)]
    assert judge_streaks([(CALLS, WORK)], state, None, calls_on(state, later), AT) == [("calls", "2026-03-20", 3)]
    # Thursday's calls arrive late: one streak of 7 from the 16th, which reaches 5 — its 3 was already recorded.
    late = calls_on(state, [datetime(2026, 3, 19, 9, tzinfo=UTC)])
    assert judge_streaks([(CALLS, WORK)], state, None, late, AT) == [("calls", "2026-03-16", 5)]
    assert state.streak_marks == {"calls": {"2026-03-16": {"3": "2026-03-20T12:00:00Z", "5": "2026-03-20T12:00:00Z"},
                                            "2026-03-20": {"3": "2026-03-20T12:00:00Z"}}}
    assert status(state.streak_days["calls"], WORK, d("2026-03-24")).current == 7
    # Everything judged again from scratch (a streak changed): nothing new.
    assert judge_streaks([(CALLS, WORK)], state, None, None, AT) == []
    again = RepState.from_dict(state.to_dict())
    assert again.streak_days == state.streak_days and again.streak_marks == state.streak_marks


def test_a_day_that_no_longer_meets_the_rule_leaves_the_streak() -> None:
    revenue_days = Streak.model_validate({"streak_id": "sold", "name": "A sale a day",
                                          "rule": {"metric": "deals_won", "at_least": 1}})
    state = RepState("ana")

    def deal(seq: int, won: str) -> set[str]:
        state.apply_credits([Credit("ana", datetime(2026, 3, 16, 9, tzinfo=UTC), deals_won=Decimal(won))],
                            source="deals/0", seq=seq, calendar=BERLIN)
        touched, state.touched = state.touched, set()
        return {key for kind, key in touched if kind == "day"}

    calendar = StreakCalendar.of(revenue_days)
    judge_streaks([(revenue_days, calendar)], state, None, deal(1, "1"), AT)
    assert state.streak_days == {"sold": [("2026-03-16", "2026-03-16")]}
    judge_streaks([(revenue_days, calendar)], state, None, deal(2, "-1"), AT)  # the deal corrected to lost
    assert state.streak_days == {}


def test_a_streak_configuration_says_what_to_change() -> None:
    base = {"streak_id": "s", "name": "S", "rule": {"metric": "activities.call", "at_least": 20}}
    with pytest.raises(ValidationError, match="at least one day"):
        Streak.model_validate({**base, "workdays": []})
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        Streak.model_validate({**base, "milestones": [1]})
    with pytest.raises(ValidationError, match="greater than 0"):
        Streak.model_validate({**base, "rule": {"metric": "activities.call", "at_least": 0}})
    with pytest.raises(ValidationError, match="Input should be 'mon'"):
        Streak.model_validate({**base, "workdays": ["monday"]})
    ok = Streak.model_validate({**base, "workdays": ["fri", "mon", "fri"], "milestones": [10, 5, 10]})
    assert (ok.workdays, ok.milestones, ok.badge) == (["mon", "fri"], [5, 10], "\U0001F525")


def test_a_milestones_messages_say_how_long_the_streak_is() -> None:
    snapshot = RepProgress.model_validate({"rep_id": "ana", "version": 4, "milestones": {
        "calls": {"2026-03-16": {"5": "2026-03-20T12:00:00Z", "3": "2026-03-18T12:00:00Z"}}}})
    found = milestones_in_snapshot(snapshot, {"calls": CALLS.model_dump(mode="json")})
    assert [(c.kind, c.tier_id, c.period_key) for c in found] == [
        (STREAK, "3", "2026-03-16"), (STREAK, "5", "2026-03-16")]
    five = found[1]
    five.details["rep_name"] = "Ana <3"
    assert headline(five) == "Ana <3 is on a 5-day streak: 20 calls a day \U0001F525"
    party = celebration_message(five).screen_payload()
    assert party["kind"] == "streak" and party["streak"] == {
        "streak_id": "calls", "name": "20 calls a day", "badge": "\U0001F525", "days": 5, "since": "2026-03-16"}
    assert "Ana &lt;3" in slack_payload(five)["blocks"][0]["text"]["text"]
    assert generic_payload(five, 1)["type"] == "streak_milestone"
    assert tier_email(five, to="a@example.com", sender="s@example.com")["Subject"] == (
        "You are on a 5-day streak: 20 calls a day \U0001F525")
    assert found[0].notification_id.startswith("sk_") and found[0].notification_id != five.notification_id
