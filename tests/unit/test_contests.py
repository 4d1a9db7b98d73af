"""Contests: a board's metric over a window of time instead of a period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.scoring.domain.contests import DayLookup, contest_totals, contest_value
from services.scoring.domain.credits import Credit
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import RepState
from services.scoring.domain.standings import Entry, rank
from tests.support.minutes import MemoryDays

CALENDAR = Calendar("Europe/Berlin")
STARTS = datetime(2026, 3, 15, 9, tzinfo=UTC)
ENDS = STARTS + timedelta(hours=8)


def state_with(*events: tuple[str, datetime, str]) -> tuple[RepState, DayLookup]:
    """A rep's state after `("won" | "lost" | <activity kind>, at, amount)` events, its outbox carried out into
    its minute days, and the lookup of those days."""
    state, days = RepState("ana"), MemoryDays()
    for seq, (what, at, amount) in enumerate(events):
        if what == "won":
            credit = Credit("ana", at, revenue=Decimal(amount), deals_won=Decimal(1))
            state.apply_credit(credit, source="deals/0", seq=seq, calendar=CALENDAR)
        elif what == "lost":
            state.apply_credit(Credit("ana", at, deals_lost=Decimal(1)), source="deals/0", seq=seq, calendar=CALENDAR)
        else:
            state.apply_activity(what, at, source="activities/0", seq=seq, calendar=CALENDAR)
    days.flush(state)
    return state, days.days.get


def test_a_contest_counts_only_what_is_attributed_inside_its_window() -> None:
    rep = state_with(
        ("won", STARTS - timedelta(seconds=1), "1000.00"),
        ("won", STARTS, "200.00"),
        ("won", ENDS - timedelta(minutes=1), "30.00"),
        ("won", ENDS, "4000.00"),
    )
    assert contest_value(*rep, STARTS, ENDS, "revenue") == Decimal("230.00")
    assert contest_value(*rep, STARTS, ENDS, "deals_won") == 2


def test_a_contest_can_rank_any_kpi_including_activities_of_one_kind() -> None:
    rep = state_with(
        ("call", STARTS + timedelta(minutes=5), ""),
        ("call", STARTS + timedelta(minutes=6), ""),
        ("email", STARTS + timedelta(minutes=7), ""),
        ("won", STARTS + timedelta(hours=1), "100.00"),
        ("lost", STARTS + timedelta(hours=2), ""),
        ("call", ENDS + timedelta(minutes=1), ""),
    )
    assert contest_value(*rep, STARTS, ENDS, "activities.call") == 2
    assert contest_value(*rep, STARTS, ENDS, "activities") == 3
    assert contest_value(*rep, STARTS, ENDS, "win_rate") == Decimal("0.5")
    assert contest_totals(*rep, STARTS, ENDS).report()["activities.email"] == 1


def test_a_rate_over_nothing_in_the_window_is_none() -> None:
    rep = state_with(("won", STARTS - timedelta(days=1), "100.00"))
    assert contest_value(*rep, STARTS, ENDS, "win_rate") is None
    assert contest_value(*rep, STARTS, ENDS, "revenue") == 0


def test_a_reversal_of_a_deal_won_in_the_window_takes_it_off_the_contest() -> None:
    rep = state_with(("won", STARTS + timedelta(minutes=30), "500.00"), ("won", STARTS + timedelta(hours=3), "50.00"))
    reversal = Credit("ana", STARTS + timedelta(minutes=30), revenue=Decimal("-500.00"), deals_won=Decimal(-1))
    rep[0].apply_credit(reversal, source="deals/0", seq=99, calendar=CALENDAR)  # in the outbox, not a day
    assert contest_value(*rep, STARTS, ENDS, "revenue") == Decimal("50.00")
    assert contest_value(*rep, STARTS, ENDS, "deals_won") == 1


def test_contest_values_rank_like_any_board() -> None:
    values = {
        "ana": contest_value(*state_with(("call", STARTS, ""), ("call", STARTS, "")), STARTS, ENDS, "activities.call"),
        "ben": contest_value(*state_with(("call", STARTS - timedelta(hours=1), "")), STARTS, ENDS, "activities.call"),
    }
    ranked = rank([Entry(rep_id, value or Decimal(0)) for rep_id, value in values.items()], size=10)
    assert [(entry.rank, entry.rep_id, entry.value) for entry in ranked] == [(1, "ana", 2), (2, "ben", 0)]


def test_an_unknown_metric_or_a_window_that_ends_before_it_starts_is_refused() -> None:
    rep = RepState("ana"), MemoryDays().days.get
    with pytest.raises(ValueError, match="unknown KPI"):
        contest_value(*rep, STARTS, ENDS, "happiness")
    with pytest.raises(ValueError, match="before it starts"):
        contest_value(*rep, ENDS, STARTS, "revenue")
