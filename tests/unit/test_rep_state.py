"""Rep state: exactly-once folding by (source, seq), bounded periods with evictions, exact storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.credits import Credit
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.minute_days import MinuteDay, MinuteEntry, day_of
from services.scoring.domain.periods import PERIOD_KINDS, Calendar, PeriodKind
from services.scoring.domain.rep_state import (
    DEFAULT_MINUTE_HORIZON,
    DEFAULT_RETENTION,
    LEGACY_SOURCE,
    MINUTE,
    RepState,
    ceil_minute,
    epoch_minute,
    minute_key,
)
from tests.support.minutes import MemoryDays

CALENDAR = Calendar("America/New_York", fiscal_year_start_month=2)
AT = datetime(2026, 3, 15, 18, tzinfo=UTC)
SMALL: dict[PeriodKind, int] = {"day": 3, "week": 2, "month": 2, "quarter": 2, "year": 1}


def won(amount: str = "100.00", at: datetime = AT, rep_id: str = "ana") -> Credit:
    return Credit(rep_id, at, revenue=Decimal(amount), deals_won=Decimal(1))


# -- exactly-once ----------------------------------------------------------------------------------


def test_a_credit_is_applied_once_per_source_and_sequence() -> None:
    state = RepState("ana")
    assert state.apply_credit(won(), source="deals/0", seq=7, calendar=CALENDAR)
    before = state.to_dict()
    assert not state.apply_credit(won(), source="deals/0", seq=7, calendar=CALENDAR)
    assert not state.apply_credit(won(), source="deals/0", seq=3, calendar=CALENDAR)
    assert state.to_dict() == before
    assert state.totals("day", "2026-03-15").revenue == Decimal("100.00")


def test_sequences_are_tracked_per_source() -> None:
    state = RepState("ana")
    assert state.apply_credit(won(), source="deals/0", seq=7, calendar=CALENDAR)
    assert state.apply_credit(won(), source="deals/1", seq=2, calendar=CALENDAR)
    assert state.credit_marks == {"deals/0": 7, "deals/1": 2}
    assert state.totals("month", "2026-03").deals_won == 2


def test_all_credits_of_one_source_event_apply_as_one_unit() -> None:
    state = RepState("ana")
    moved_from = Credit("ana", AT - timedelta(days=40), revenue=Decimal("-100.00"), deals_won=Decimal(-1))
    unit = [moved_from, won("100.00", AT)]  # a close-date change
    assert state.apply_credits(unit, source="deals/0", seq=1, calendar=CALENDAR)
    assert not state.apply_credits(unit[1:], source="deals/0", seq=1, calendar=CALENDAR)
    assert state.totals("day", "2026-02-03").revenue == Decimal("-100.00")
    assert state.totals("day", "2026-03-15").revenue == Decimal("100.00")
    assert state.version == 1


def test_an_activity_is_counted_once_and_its_marks_are_separate_from_credit_marks() -> None:
    state = RepState("ana")
    assert state.apply_activity("call", AT, source="p0", seq=5, calendar=CALENDAR)
    assert not state.apply_activity("call", AT, source="p0", seq=5, calendar=CALENDAR)
    assert state.apply_credit(won(), source="p0", seq=5, calendar=CALENDAR)
    assert state.activity_marks == {"p0": 5} and state.credit_marks == {"p0": 5}
    assert state.totals("week", "2026-W11").activities_by_kind == {"call": 1}


def test_a_credit_for_another_rep_is_refused_without_changing_anything() -> None:
    state = RepState("ana")
    with pytest.raises(ValueError, match="rep 'ben'"):
        state.apply_credits([won(), won(rep_id="ben")], source="deals/0", seq=1, calendar=CALENDAR)
    assert state == RepState("ana")


def test_an_invalid_activity_kind_is_refused_without_changing_anything() -> None:
    state = RepState("ana")
    with pytest.raises(ValueError, match="activity kind"):
        state.apply_activity("Call", AT, source="p0", seq=1, calendar=CALENDAR)
    assert state == RepState("ana")


def test_version_counts_changes_and_not_skipped_duplicates() -> None:
    state = RepState("ana")
    state.apply_credit(won(), source="deals/0", seq=1, calendar=CALENDAR)
    state.apply_credit(won(), source="deals/0", seq=1, calendar=CALENDAR)
    state.apply_activity("email", AT, source="activities/0", seq=1, calendar=CALENDAR)
    assert state.version == 2


# -- periods ---------------------------------------------------------------------------------------


def test_a_credit_lands_in_every_period_kind_that_contains_its_instant() -> None:
    state = RepState("ana")
    late_evening = datetime(2026, 2, 1, 2, tzinfo=UTC)  # 21:00 on 31 January in New York
    state.apply_credit(won(at=late_evening), source="deals/0", seq=1, calendar=CALENDAR)
    keys = {kind: state.period_keys(kind) for kind in PERIOD_KINDS}
    assert keys == {
        "day": ["2026-01-31"],
        "week": ["2026-W05"],
        "month": ["2026-01"],
        "quarter": ["FY2026-Q4"],
        "year": ["FY2026"],
    }


def test_totals_of_an_unknown_period_are_zeros_and_totals_are_copies() -> None:
    state = RepState("ana")
    assert state.totals("month", "2026-01") == KpiTotals()
    state.apply_credit(won(), source="deals/0", seq=1, calendar=CALENDAR)
    state.totals("month", "2026-03").revenue += 1
    assert state.totals("month", "2026-03").revenue == Decimal("100.00")


def test_only_the_most_recent_periods_are_kept_and_older_ones_are_evicted() -> None:
    state = RepState("ana", retention=SMALL)
    for day in range(5):
        state.apply_credit(won(at=AT + timedelta(days=day)), source="deals/0", seq=day, calendar=CALENDAR)
    assert state.period_keys("day") == ["2026-03-17", "2026-03-18", "2026-03-19"]
    evicted_days = [(e.kind, e.key, e.totals.revenue) for e in state.evictions if e.kind == "day"]
    assert evicted_days == [
        ("day", "2026-03-15", Decimal("100.00")),
        ("day", "2026-03-16", Decimal("100.00")),
    ]
    assert state.horizons["day"] == "2026-03-16"
    assert not state.holds("day", "2026-03-16") and state.holds("day", "2026-03-17")


def test_a_late_credit_for_an_evicted_period_becomes_an_eviction_of_its_delta() -> None:
    state = RepState("ana", retention=SMALL)
    for day in range(4):
        state.apply_credit(won(at=AT + timedelta(days=day)), source="deals/0", seq=day, calendar=CALENDAR)
    state.acknowledge_evictions(state.eviction_seq)
    reversal = Credit("ana", AT, revenue=Decimal("-100.00"), deals_won=Decimal(-1))
    state.apply_credit(reversal, source="deals/0", seq=10, calendar=CALENDAR)
    assert "2026-03-15" not in state.period_keys("day")
    [eviction] = [e for e in state.evictions if e.kind == "day"]
    assert (eviction.key, eviction.totals.revenue, eviction.totals.deals_won) == (
        "2026-03-15",
        Decimal("-100.00"),
        -1,
    )


def test_acknowledged_evictions_leave_the_outbox() -> None:
    state = RepState("ana", retention=SMALL)
    for day in range(6):
        state.apply_credit(won(at=AT + timedelta(days=day)), source="deals/0", seq=day, calendar=CALENDAR)
    seqs = [e.seq for e in state.evictions]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    state.acknowledge_evictions(seqs[1])
    assert [e.seq for e in state.evictions] == seqs[2:]


def test_draining_hands_out_every_outstanding_eviction_once() -> None:
    state = RepState("ana", retention=SMALL)
    for day in range(5):
        state.apply_credit(won(at=AT + timedelta(days=day)), source="deals/0", seq=day, calendar=CALENDAR)
    outstanding = [(e.kind, e.key, e.totals) for e in state.evictions]
    assert [(kind, key) for kind, key, _ in outstanding] == [("day", "2026-03-15"), ("day", "2026-03-16")]
    assert state.drain_evicted() == outstanding
    assert state.drain_evicted() == [] and state.evictions == []


events = st.lists(
    st.tuples(
        st.sampled_from(["credit", "activity"]),
        st.integers(min_value=0, max_value=500),  # days after the start
        st.integers(min_value=0, max_value=23),  # hour
        st.integers(min_value=-(10**6), max_value=10**6),  # cents
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(events=events, replays=st.lists(st.integers(min_value=0, max_value=39), max_size=10))
def test_eviction_keeps_state_bounded_and_loses_nothing(
    events: list[tuple[str, int, int, int]], replays: list[int]
) -> None:
    start = datetime(2025, 12, 1, tzinfo=UTC)
    state = RepState("ana", retention=SMALL)
    expected: dict[tuple[str, str], KpiTotals] = {}
    feed = list(enumerate(events)) + [(i, events[i]) for i in replays if i < len(events)]
    for seq, (what, day, hour, cents) in feed:
        at = start + timedelta(days=day, hours=hour)
        if what == "credit":
            credit = Credit("ana", at, revenue=Decimal(cents).scaleb(-2), deals_won=Decimal(1))
            state.apply_credit(credit, source="deals/0", seq=seq, calendar=CALENDAR)
        else:
            state.apply_activity("call", at, source="activities/0", seq=seq, calendar=CALENDAR)
    for what, day, hour, cents in events:  # each event once, whatever was replayed
        at = start + timedelta(days=day, hours=hour)
        for kind, key in CALENDAR.keys(at).items():
            totals = expected.setdefault((kind, key), KpiTotals())
            if what == "credit":
                totals.apply_credit(Credit("ana", at, revenue=Decimal(cents).scaleb(-2), deals_won=Decimal(1)))
            else:
                totals.add_activity("call")

    observed: dict[tuple[str, str], KpiTotals] = {}
    for kind, bucket in state.periods.items():
        assert len(bucket) <= SMALL[kind]
        for key, totals in bucket.items():
            assert state.holds(kind, key)
            observed[(kind, key)] = totals.copy()
    for eviction in state.evictions:
        if eviction.kind == MINUTE:
            continue  # contest detail, checked with the windows below
        assert not state.holds(eviction.kind, eviction.key)
        observed[(eviction.kind, eviction.key)] = (
            observed.get((eviction.kind, eviction.key), KpiTotals()) + eviction.totals
        )
    nonzero = {key: totals for key, totals in expected.items() if not totals.is_zero()}
    assert {key: totals for key, totals in observed.items() if not totals.is_zero()} == nonzero


def test_retention_must_be_positive_for_every_kind() -> None:
    with pytest.raises(ValueError, match="retention for week"):
        RepState("ana", retention={**DEFAULT_RETENTION, "week": 0})


# -- storage ---------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(events=events)
def test_storage_round_trips_exactly(events: list[tuple[str, int, int, int]]) -> None:
    state = RepState("ana", retention=SMALL)
    start = datetime(2025, 12, 1, tzinfo=UTC)
    for seq, (what, day, hour, cents) in enumerate(events):
        at = start + timedelta(days=day, hours=hour)
        if what == "credit":
            credit = Credit("ana", at, revenue=Decimal(cents).scaleb(-2), deals_lost=Decimal("0.5"))
            state.apply_credit(credit, source=f"deals/{seq % 3}", seq=seq, calendar=CALENDAR)
        else:
            state.apply_activity("demo", at, source="activities/1", seq=seq, calendar=CALENDAR)
    stored = json.loads(json.dumps(state.to_dict()))
    restored = RepState.from_dict(stored, retention=SMALL)
    assert restored == state
    assert restored.to_dict() == state.to_dict()


def test_a_state_restored_with_a_shorter_retention_hands_the_excess_to_history_at_its_next_change() -> None:
    state = RepState("ana")
    for day in range(5):
        state.apply_credit(won(at=AT + timedelta(days=day)), source="deals/0", seq=day, calendar=CALENDAR)
    state.drain_evicted()
    restored = RepState.from_dict(json.loads(json.dumps(state.to_dict())), retention=SMALL)
    assert len(restored.periods["day"]) == 5  # nothing moves until something changes
    restored.apply_activity("call", AT + timedelta(days=4), source="activities/0", seq=1, calendar=CALENDAR)
    assert len(restored.periods["day"]) == SMALL["day"]  # a change that opens no period still trims
    evicted = {(kind, key) for kind, key, _ in restored.drain_evicted()}
    assert {key for kind, key in evicted if kind == "day"} == {
        CALENDAR.key(AT, "day"), CALENDAR.key(AT + timedelta(days=1), "day")}


def test_a_restored_state_still_refuses_what_it_already_applied() -> None:
    state = RepState("ana")
    state.apply_credit(won(), source="deals/0", seq=9, calendar=CALENDAR)
    restored = RepState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert not restored.apply_credit(won(), source="deals/0", seq=9, calendar=CALENDAR)
    assert restored.totals("year", "FY2027").revenue == Decimal("100.00")


def test_an_empty_state_stores_only_its_identity() -> None:
    assert RepState("ana").to_dict() == {"rep_id": "ana", "version": 0}


def test_from_dict_rejects_something_that_is_not_a_rep_state() -> None:
    with pytest.raises(ValueError, match="not a stored rep state"):
        RepState.from_dict({"version": 1})
    with pytest.raises(ValueError, match="unknown period kind"):
        RepState.from_dict({"rep_id": "ana", "periods": {"fortnight": {}}})


# -- minutes (contest windows) ---------------------------------------------------------------------

NOON = datetime(2026, 3, 15, 12, tzinfo=UTC)


def minute(hour: int, minute: int, second: int = 0) -> datetime:
    return NOON.replace(hour=hour, minute=minute, second=second)


def test_epoch_minute_is_whole_utc_minutes_since_1970_in_any_offset() -> None:
    assert epoch_minute(datetime(1970, 1, 1, 0, 1, 59, 999999, tzinfo=UTC)) == 1
    assert epoch_minute(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)) == -1
    berlin = datetime(2026, 3, 15, 13, 5, 30, tzinfo=timezone(timedelta(hours=1)))
    assert epoch_minute(berlin) == epoch_minute(minute(12, 5)) == int(minute(12, 5).timestamp()) // 60


def test_credits_and_activities_are_kept_per_utc_minute_of_their_attribution_time() -> None:
    state, days = RepState("ana"), MemoryDays()
    state.apply_credit(won("100.00", minute(12, 5, 10)), source="deals/0", seq=1, calendar=CALENDAR)
    state.apply_credit(won("50.00", minute(12, 5, 59)), source="deals/0", seq=2, calendar=CALENDAR)
    state.apply_activity("call", minute(12, 6), source="activities/0", seq=1, calendar=CALENDAR)
    held = days.minutes(state)
    assert sorted(held) == [epoch_minute(minute(12, 5)), epoch_minute(minute(12, 6))]
    assert held[epoch_minute(minute(12, 5))].revenue == Decimal("150.00")
    assert held[epoch_minute(minute(12, 6))].activities_by_kind == {"call": 1}
    assert state.days == {day_of(epoch_minute(NOON))} and not state.minute_outbox


def test_the_state_keeps_only_the_minute_entries_since_its_days_were_written() -> None:
    state, days = RepState("ana"), MemoryDays()
    for seq in range(50):
        state.apply_activity("call", minute(12, seq), source="activities/0", seq=seq, calendar=CALENDAR)
    assert len(state.minute_outbox) == 50
    days.flush(state)
    assert state.minute_outbox == [] and len(days.minutes(state)) == 50
    state.apply_activity("email", minute(13, 0), source="activities/0", seq=50, calendar=CALENDAR)
    assert [entry.minute for entry in state.minute_outbox] == [epoch_minute(minute(13, 0))]
    assert "minutes" not in state.to_dict() and len(state.to_dict()["minute_outbox"]) == 1


def test_a_window_sums_the_minutes_that_start_inside_it() -> None:
    state, days = RepState("ana"), MemoryDays()
    for seq, (at, amount) in enumerate([(minute(11, 59, 59), "1"), (minute(12, 0), "10"), (minute(12, 59, 59), "100")]):
        state.apply_credit(won(amount, at), source="deals/0", seq=seq, calendar=CALENDAR)
    state.apply_credit(won("1000", minute(13, 0)), source="deals/0", seq=9, calendar=CALENDAR)
    totals = days.window(state, minute(12, 0), minute(13, 0))
    assert (totals.revenue, totals.deals_won) == (Decimal("110"), 2)


def test_a_window_bound_inside_a_minute_counts_that_minute_by_its_start() -> None:
    state, days = RepState("ana"), MemoryDays()
    state.apply_credit(won("10", minute(12, 0, 45)), source="deals/0", seq=1, calendar=CALENDAR)
    state.apply_credit(won("20", minute(13, 0, 50)), source="deals/0", seq=2, calendar=CALENDAR)
    # 12:00 starts before 12:00:30, so none of it counts; 13:00 starts before 13:00:30, so all of it counts.
    assert days.window(state, minute(12, 0, 30), minute(13, 0, 30)).revenue == Decimal("20")
    assert days.window(state, minute(12, 0, 30), minute(12, 0, 50)) == KpiTotals()


def test_a_reversal_subtracts_in_the_window_of_its_close_time_only() -> None:
    state, days = RepState("ana"), MemoryDays()
    state.apply_credit(won("500.00", minute(12, 10)), source="deals/0", seq=1, calendar=CALENDAR)
    state.apply_credit(won("70.00", minute(14, 10)), source="deals/0", seq=2, calendar=CALENDAR)
    days.flush(state)
    reversal = Credit("ana", minute(12, 10), revenue=Decimal("-500.00"), deals_won=Decimal(-1))
    state.apply_credit(reversal, source="deals/0", seq=3, calendar=CALENDAR)
    assert days.window(state, minute(12, 0), minute(13, 0)).value("deals_won") == 0
    assert days.window(state, minute(12, 0), minute(13, 0)).revenue == 0
    assert days.window(state, minute(14, 0), minute(15, 0)).revenue == Decimal("70.00")


def test_a_close_date_change_moves_the_credit_between_windows() -> None:
    state, days = RepState("ana"), MemoryDays()
    state.apply_credit(won("300.00", minute(12, 10)), source="deals/0", seq=1, calendar=CALENDAR)
    moved = [
        Credit("ana", minute(12, 10), revenue=Decimal("-300.00"), deals_won=Decimal(-1)),
        won("300.00", minute(14, 20)),
    ]
    state.apply_credits(moved, source="deals/0", seq=2, calendar=CALENDAR)
    assert days.window(state, minute(12, 0), minute(13, 0)).revenue == 0
    assert days.window(state, minute(14, 0), minute(15, 0)).revenue == Decimal("300.00")
    assert days.window(state, minute(12, 0), minute(15, 0)).value("deals_won") == 1


def test_a_replayed_event_is_not_counted_again_in_any_window() -> None:
    state, days = RepState("ana"), MemoryDays()
    state.apply_activity("call", minute(12, 1), source="activities/0", seq=4, calendar=CALENDAR)
    state.apply_activity("call", minute(12, 1), source="activities/0", seq=4, calendar=CALENDAR)
    assert days.window(state, minute(12, 0), minute(13, 0)).activities == 1


def test_an_outbox_carried_out_twice_counts_once_in_its_days() -> None:
    """A worker killed after writing the days but before storing the state that no longer holds the outbox:
    whoever restores the state carries the same outbox out again."""
    state, days = RepState("ana"), MemoryDays()
    credits = [won("10", minute(12, 1)), won("20", minute(12, 1)), won("40", minute(12, 2))]  # one event
    state.apply_credits(credits, source="deals/0", seq=1, calendar=CALENDAR)
    stored = state.to_dict()
    days.flush(state)
    restored = RepState.from_dict(stored)
    assert len(restored.minute_outbox) == 3
    assert days.window(restored, minute(12, 0), minute(13, 0)).revenue == Decimal("70")
    assert days.window(state, minute(12, 0), minute(13, 0)).revenue == Decimal("70")


def test_a_window_that_ends_before_it_starts_or_has_a_naive_bound_is_refused() -> None:
    state, days = RepState("ana"), MemoryDays()
    assert days.window(state, minute(12, 0), minute(12, 0)) == KpiTotals()
    with pytest.raises(ValueError, match="before it starts"):
        state.window_totals(minute(13, 0), minute(12, 0), days.days.get)
    with pytest.raises(ValueError, match="before it starts"):
        state.window_totals(minute(12, 0, 40), minute(12, 0, 30), days.days.get)
    with pytest.raises(ValueError, match="no UTC offset"):
        state.window_totals(datetime(2026, 3, 15, 12), minute(13, 0), days.days.get)


def on_day(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant on the `day`-th day after 2026-03-15 (0: that day), UTC."""
    return NOON.replace(hour=hour, minute=minute) + timedelta(days=day)


def test_days_wholly_behind_the_horizon_behind_the_newest_minute_leave_for_history() -> None:
    state, days = RepState("ana", minute_horizon=timedelta(days=1)), MemoryDays()
    for seq, (day, hour) in enumerate([(0, 10), (0, 23), (1, 12), (2, 0)]):
        state.apply_activity("call", on_day(day, hour), source="activities/0", seq=seq, calendar=CALENDAR)
    # The newest minute is day 2 00:00; a day behind is day 1 00:00: days from day 1 on are kept, day 0 leaves.
    assert state.minute_floor == epoch_minute(on_day(1, 0))
    assert days.window(state, on_day(-1, 0), on_day(3, 0)).activities == 2
    assert sorted(days.history["ana"]) == [epoch_minute(on_day(0, h)) for h in (10, 23)]
    state.apply_activity("call", on_day(2, 0, 1), source="activities/0", seq=9, calendar=CALENDAR)
    assert state.minute_floor == epoch_minute(on_day(1, 0))  # day 1 00:01 is still on day 1
    assert days.window(state, on_day(-1, 0), on_day(3, 0)).activities == 3
    state.apply_activity("call", on_day(3, 8), source="activities/0", seq=10, calendar=CALENDAR)
    # Day 3 08:00 minus a day is day 2 08:00: day 1 leaves too, whole.
    assert state.minute_floor == epoch_minute(on_day(2, 0))
    assert days.window(state, on_day(-1, 0), on_day(4, 0)).activities == 3
    assert sorted(days.history["ana"]) == [epoch_minute(on_day(d, h)) for d, h in [(0, 10), (0, 23), (1, 12)]]
    assert {day_of(m) for m in days.minutes(state)} == state.days == {day_of(epoch_minute(on_day(2, 0))),
                                                                      day_of(epoch_minute(on_day(3, 0)))}
    assert sorted(days.days) == [f"ana@{day}" for day in sorted(state.days)]
    assert minute_key(epoch_minute(on_day(0, 10))) == f"{epoch_minute(on_day(0, 10)):010d}"


def test_a_late_event_behind_the_floor_counts_in_its_periods_and_its_minute_goes_to_history() -> None:
    state, days = RepState("ana", minute_horizon=timedelta(days=1)), MemoryDays()
    state.apply_credit(won("10", on_day(2, 15)), source="deals/0", seq=1, calendar=CALENDAR)
    days.flush(state)
    state.apply_credit(won("20", on_day(0, 12)), source="deals/0", seq=2, calendar=CALENDAR)  # behind the floor
    state.apply_credit(won("40", on_day(1, 0)), source="deals/0", seq=3, calendar=CALENDAR)  # on it
    assert days.window(state, on_day(-1, 0), on_day(3, 0)).revenue == Decimal("50")
    assert days.history["ana"] == {epoch_minute(on_day(0, 12)): KpiTotals(revenue=Decimal("20"), deals_won=Decimal(1))}
    assert state.totals("month", "2026-03").revenue == Decimal("70")


def test_the_default_horizon_keeps_35_whole_days_of_minutes() -> None:
    assert DEFAULT_MINUTE_HORIZON == timedelta(days=35)
    state, days = RepState("ana"), MemoryDays()
    start = datetime(2026, 1, 1, 6, tzinfo=UTC)
    for seq, later in enumerate([0, 1, 35, 36]):
        state.apply_activity("call", start + timedelta(days=later), source="activities/0", seq=seq, calendar=CALENDAR)
    assert sorted(days.minutes(state)) == [epoch_minute(start + timedelta(days=d)) for d in (1, 35, 36)]


def test_the_minute_horizon_must_be_at_least_a_minute() -> None:
    with pytest.raises(ValueError, match="minute_horizon"):
        RepState("ana", minute_horizon=timedelta(seconds=59))


def test_a_state_stored_with_its_minutes_inside_brings_them_into_its_days_once() -> None:
    """The form before minute days: `minutes` in the state. Rebuilt, they are outbox entries (legacy source),
    carried out once however many times the same stored form is restored."""
    legacy = {
        "rep_id": "ana",
        "version": 3,
        "activity_marks": {"activities/0": 2},
        "minutes": {
            str(epoch_minute(minute(12, 0))): {"activities": 2, "activities_by_kind": {"call": 2}},
            str(epoch_minute(on_day(1, 9))): {"revenue": "5", "deals_won": "1"},
        },
    }
    days = MemoryDays()
    first = RepState.from_dict(legacy)
    assert {entry.source for entry in first.minute_outbox} == {LEGACY_SOURCE}
    assert days.window(first, minute(0, 0), on_day(2, 0)).activities == 2
    again = RepState.from_dict(legacy)
    assert days.window(again, minute(0, 0), on_day(2, 0)).to_dict() == {
        "activities": 2, "activities_by_kind": {"call": 2}, "revenue": "5", "deals_won": "1"}
    assert "minutes" not in again.to_dict()


def test_the_stored_form_carries_the_outbox_and_the_days_and_round_trips() -> None:
    state = RepState("ana", minute_horizon=timedelta(days=1))
    state.apply_credit(won("100.00", minute(12, 5, 10)), source="deals/0", seq=1, calendar=CALENDAR)
    state.apply_credit(won("7.00", on_day(3, 1)), source="deals/0", seq=2, calendar=CALENDAR)
    stored = json.loads(json.dumps(state.to_dict()))
    entry = ["deals/0", 2, epoch_minute(on_day(3, 1)), {"revenue": "7.00", "deals_won": "1"}]
    assert stored["minute_outbox"] == [entry]
    assert stored["days"] == [day_of(epoch_minute(on_day(3, 1)))]
    assert stored["day_evictions"] == [[state.day_evictions[0][0], day_of(epoch_minute(NOON))]]
    assert stored["minute_floor"] == epoch_minute(on_day(2, 0))
    assert RepState.from_dict(stored) == state


# Seconds after the start: anywhere in three days, or crowded into the first twenty minutes so that
# minutes get several events.
instants = st.one_of(st.integers(min_value=0, max_value=3 * 86_400 - 1), st.integers(min_value=0, max_value=1_200))
timed_events = st.lists(
    st.tuples(
        st.sampled_from(["credit", "activity", "close-date change"]),
        instants,
        instants,  # a second instant (close-date changes)
        st.integers(min_value=-(10**6), max_value=10**6),  # cents
        st.sampled_from(["call", "email"]),
    ),
    max_size=40,
)
# Windows as (start, length) in seconds, bounds anywhere (inside minutes too), around the events.
windows = st.lists(
    st.tuples(
        st.integers(min_value=-3_600, max_value=3 * 86_400),
        st.integers(min_value=0, max_value=86_400),
    ),
    min_size=1,
    max_size=6,
)
EVENTS_START = datetime(2026, 3, 1, tzinfo=UTC)


def _credits_of(event: tuple[str, int, int, int, str]) -> list[Credit]:
    what, offset, other, cents, _ = event
    at, amount = EVENTS_START + timedelta(seconds=offset), Decimal(cents).scaleb(-2)
    credit = Credit("ana", at, revenue=amount, deals_won=Decimal(1))
    if what == "close-date change":
        return [-credit, Credit("ana", EVENTS_START + timedelta(seconds=other), revenue=amount, deals_won=Decimal(1))]
    return [credit]


def _fold(state: RepState, feed: list[tuple[int, tuple[str, int, int, int, str]]]) -> None:
    for seq, event in feed:
        if event[0] == "activity":
            at = EVENTS_START + timedelta(seconds=event[1])
            state.apply_activity(event[4], at, source="activities/0", seq=seq, calendar=CALENDAR)
        else:
            state.apply_credits(_credits_of(event), source="deals/0", seq=seq, calendar=CALENDAR)


def _brute_force(
    events: list[tuple[str, int, int, int, str]], starts_at: datetime, ends_at: datetime, kept_from: int | None = None
) -> KpiTotals:
    """Every applied credit and activity whose minute starts in the window (and is not before `kept_from`)."""
    totals = KpiTotals()

    def counts(at: datetime) -> bool:
        minute_start = at.replace(second=0, microsecond=0)
        kept = kept_from is None or epoch_minute(at) >= kept_from
        return kept and starts_at <= minute_start < ends_at

    for event in events:
        if event[0] == "activity":
            at = EVENTS_START + timedelta(seconds=event[1])
            if counts(at):
                totals.add_activity(event[4])
        else:
            for credit in _credits_of(event):
                if counts(credit.at):
                    totals.apply_credit(credit)
    return totals


def _same(left: KpiTotals, right: KpiTotals) -> bool:
    # A minute whose credits cancel holds zeros; compare sums, not the presence of zero entries.
    return left.to_dict() == right.to_dict()


@settings(max_examples=200, deadline=None)
@given(
    events=timed_events,
    replays=st.lists(st.integers(min_value=0, max_value=39), max_size=8),
    flushes=st.sets(st.integers(min_value=0, max_value=48), max_size=8),
    windows=windows,
)
def test_window_totals_equal_a_brute_force_sum_of_everything_applied(
    events: list[tuple[str, int, int, int, str]], replays: list[int], flushes: set[int], windows: list[tuple[int, int]]
) -> None:
    state, days = RepState("ana"), MemoryDays()
    feed = list(enumerate(events)) + [(i, events[i]) for i in replays if i < len(events)]
    for position, item in enumerate(feed):
        _fold(state, [item])
        if position in flushes:  # the worker's batches end anywhere
            days.flush(state)
    for start, length in windows:
        starts_at = EVENTS_START + timedelta(seconds=start)
        ends_at = starts_at + timedelta(seconds=length)
        assert _same(days.window(state, starts_at, ends_at), _brute_force(events, starts_at, ends_at))


@settings(max_examples=200, deadline=None)
@given(
    events=timed_events,
    horizon=st.integers(min_value=1, max_value=2 * 1440),
    flushes=st.sets(st.integers(min_value=0, max_value=40), max_size=8),
    windows=windows,
)
def test_the_minute_days_keep_whole_days_back_to_the_horizon_and_history_has_the_rest(
    events: list[tuple[str, int, int, int, str]], horizon: int, flushes: set[int], windows: list[tuple[int, int]]
) -> None:
    state, days = RepState("ana", minute_horizon=timedelta(minutes=horizon)), MemoryDays()
    for seq, event in enumerate(events):
        _fold(state, [(seq, event)])
        if seq in flushes:
            days.flush(state)
    instants = [EVENTS_START + timedelta(seconds=e[1]) for e in events]
    instants += [EVENTS_START + timedelta(seconds=e[2]) for e in events if e[0] == "close-date change"]
    newest = max(map(epoch_minute, instants)) if instants else None
    # The floor is the UTC midnight at or before (newest minute − horizon) as it moved: an event behind the floor
    # of its moment went to history even if a later floor would be no further on.
    kept = days.minutes(state)
    if newest is None:
        assert not kept and state.minute_floor is None
    else:
        floor = (newest - horizon) // 1440 * 1440
        assert state.minute_floor == floor and all(m >= floor for m in kept)
    history = days.history.get("ana", {})
    assert all(m < floor for m in history) if newest is not None else not history
    for start, length in [*windows, (-86_400, 5 * 86_400)]:
        starts_at = EVENTS_START + timedelta(seconds=start)
        ends_at = starts_at + timedelta(seconds=length)
        # Hot minutes and history together are exact for any window.
        first, end = ceil_minute(starts_at), ceil_minute(ends_at)
        past = KpiTotals().merged([t for m, t in history.items() if first <= m < end])
        assert _same(days.window(state, starts_at, ends_at) + past, _brute_force(events, starts_at, ends_at))
    restored = RepState.from_dict(json.loads(json.dumps(state.to_dict())), minute_horizon=timedelta(minutes=horizon))
    assert restored == state


@settings(max_examples=100, deadline=None)
@given(
    events=timed_events,
    cuts=st.sets(st.integers(min_value=0, max_value=40), max_size=5),
    lost=st.sets(st.integers(min_value=0, max_value=40), max_size=5),
)
def test_a_worker_killed_between_storing_a_state_and_its_days_ends_where_an_undisturbed_one_does(
    events: list[tuple[str, int, int, int, str]], cuts: set[int], lost: set[int]
) -> None:
    """At each cut a batch ends: the state is stored, then its outbox carried out. At a lost cut the worker dies
    after storing the state: the replacement restores the stored form and carries the outbox out itself."""
    horizon = timedelta(hours=20)
    calm, calm_days = RepState("ana", minute_horizon=horizon), MemoryDays()
    state, days = RepState("ana", minute_horizon=horizon), MemoryDays()
    for seq, event in enumerate(events):
        _fold(calm, [(seq, event)])
        _fold(state, [(seq, event)])
        if seq in cuts:
            calm_days.flush(calm)
            stored = json.loads(json.dumps(state.to_dict()))
            if seq in lost:
                days.flush(state)  # the days were written; the state's next write never happened
                state = RepState.from_dict(stored, minute_horizon=horizon)
            days.flush(state)
    calm_days.flush(calm)
    days.flush(state)
    assert calm_days.days == days.days
    assert calm_days.history == days.history
    before, after = EVENTS_START - timedelta(days=1), EVENTS_START + timedelta(days=4)
    assert _same(days.window(state, before, after), calm_days.window(calm, before, after))


# -- tiers reached ---------------------------------------------------------------------------------

TIERS = [("base", 0.0), ("target", 1.0), ("accel", 1.25)]


def test_recording_tiers_bumps_the_version_only_when_a_tier_is_new() -> None:
    state = RepState("ana")
    assert state.record_tiers("ae", "FY2026-Q1", TIERS, Decimal("1.3"), NOON) == ["target", "accel"]
    assert state.version == 1
    assert state.record_tiers("ae", "FY2026-Q1", TIERS, Decimal("1.4"), NOON) == []
    assert state.version == 1


def test_tiers_reached_survive_storage_and_a_replay_does_not_cross_again() -> None:
    state = RepState("ana")
    state.record_tiers("ae", "FY2026-Q1", TIERS, Decimal("1.0"), NOON)
    restored = RepState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert restored.reached.reached_for("ae", "FY2026-Q1") == {"target": "2026-03-15T12:00:00Z"}
    assert restored.record_tiers("ae", "FY2026-Q1", TIERS, Decimal("1.0"), NOON + timedelta(hours=1)) == []


def test_pruning_reached_plan_periods_bumps_the_version() -> None:
    state = RepState("ana")
    state.record_tiers("ae", "FY2025-Q1", TIERS, 2, NOON)
    state.record_tiers("ae", "FY2026-Q1", TIERS, 2, NOON)
    version = state.version
    assert state.prune_reached(lambda plan_id, key: key >= "FY2026") == 1
    assert state.version == version + 1
    assert state.prune_reached(lambda plan_id, key: True) == 0
    assert state.version == version + 1


def test_a_minute_day_encodes_as_its_stored_form_after_every_change() -> None:
    day = MinuteDay("ana", day_of(epoch_minute(NOON)))
    entries = [MinuteEntry("deals/0", seq, epoch_minute(minute(12, seq % 3)), KpiTotals(revenue=Decimal(seq)))
               for seq in range(1, 7)]
    for entry in entries:
        day.apply([entry])
        assert json.loads(day.encode()) == json.loads(json.dumps(day.to_dict()))
        assert MinuteDay.from_dict(json.loads(day.encode())) == day
    assert day.within(epoch_minute(minute(12, 0)), epoch_minute(minute(12, 3))).revenue == Decimal(21)


# -- counting a batch of activities at once --------------------------------------------------------

activity_feed = st.lists(
    st.tuples(
        st.sampled_from(["call", "demo", "email"]),
        st.integers(min_value=0, max_value=40),  # day
        st.integers(min_value=0, max_value=23),  # hour
        st.sampled_from(["activities/0", "activities/1"]),
        st.integers(min_value=0, max_value=30),  # seq: repeats and steps back are duplicates
    ),
    max_size=60,
)


def _history(state: RepState) -> dict[tuple[str, str], KpiTotals]:
    """Every period's totals, whether kept or handed to history (evictions summed), minutes included."""
    seen: dict[tuple[str, str], KpiTotals] = {}
    for kind, bucket in state.periods.items():
        for key, totals in bucket.items():
            seen[(kind, key)] = totals.copy()
    for eviction in state.evictions:
        where = (eviction.kind, eviction.key)
        seen[where] = seen.get(where, KpiTotals()) + eviction.totals
    for entry in state.minute_outbox:
        where = ("outbox", minute_key(entry.minute))
        seen[where] = seen.get(where, KpiTotals()) + entry.totals
    return {where: totals for where, totals in seen.items() if not totals.is_zero()}


@settings(max_examples=200, deadline=None)
@given(feed=activity_feed, cut=st.integers(min_value=0, max_value=60))
def test_a_batch_of_activities_counts_exactly_what_one_by_one_would(
    feed: list[tuple[str, int, int, str, int]], cut: int
) -> None:
    """Grouping a batch per local date and kind changes no total, mark, version, minute entry or retained period;
    only how the evictions of one batch are cut up (and so their sequence numbers) may differ: history adds them,
    each once by its sequence."""
    start = datetime(2026, 2, 20, tzinfo=UTC)
    horizon = timedelta(days=3)
    items = [(kind, start + timedelta(days=day, hours=hour), source, seq) for kind, day, hour, source, seq in feed]
    one_by_one = RepState("ana", retention=SMALL, minute_horizon=horizon)
    counted = [
        one_by_one.apply_activity(kind, at, source=source, seq=seq, calendar=CALENDAR)
        for kind, at, source, seq in items
    ]
    batched = RepState("ana", retention=SMALL, minute_horizon=horizon)
    first = batched.apply_activities(items[:cut], calendar=CALENDAR)
    second = batched.apply_activities(iter(items[cut:]), calendar=CALENDAR, checked=True)  # valid: the same
    assert first + second == sum(counted)
    assert batched.periods == one_by_one.periods
    assert batched.horizons == one_by_one.horizons
    assert batched.activity_marks == one_by_one.activity_marks
    assert batched.version == one_by_one.version
    assert (batched.minute_floor, batched.days) == (one_by_one.minute_floor, one_by_one.days)
    assert batched.minute_outbox == one_by_one.minute_outbox
    assert [day for _, day in batched.day_evictions] == [day for _, day in one_by_one.day_evictions]
    seqs = sorted([e.seq for e in batched.evictions] + [seq for seq, _ in batched.day_evictions])
    assert seqs == sorted(set(seqs)) and all(seq <= batched.eviction_seq for seq in seqs)  # history's guard
    assert batched.touched == one_by_one.touched
    assert _history(batched) == _history(one_by_one)


def test_a_batch_with_an_invalid_activity_changes_nothing() -> None:
    state = RepState("ana")
    good = ("call", AT, "activities/0", 1)
    with pytest.raises(ValueError, match="activity kind"):
        state.apply_activities([good, ("Not A Kind", AT, "activities/0", 2)], calendar=CALENDAR)
    with pytest.raises(ValueError, match="no UTC offset"):
        state.apply_activities([good, ("call", AT.replace(tzinfo=None), "activities/0", 2)], calendar=CALENDAR)
    assert state == RepState("ana")
    assert state.apply_activities([good, good], calendar=CALENDAR) == 1
    assert state.totals("day", "2026-03-15").activities_by_kind == {"call": 1}
