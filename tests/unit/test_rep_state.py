"""Rep state: exactly-once folding by (source, seq), bounded periods with evictions, exact storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.credits import Credit
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import PERIOD_KINDS, Calendar, PeriodKind
from services.scoring.domain.rep_state import DEFAULT_RETENTION, RepState

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
                totals.apply_credit(
                    Credit("ana", at, revenue=Decimal(cents).scaleb(-2), deals_won=Decimal(1))
                )
            else:
                totals.add_activity("call")

    observed: dict[tuple[str, str], KpiTotals] = {}
    for kind, bucket in state.periods.items():
        assert len(bucket) <= SMALL[kind]
        for key, totals in bucket.items():
            assert state.holds(kind, key)
            observed[(kind, key)] = totals.copy()
    for eviction in state.evictions:
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
