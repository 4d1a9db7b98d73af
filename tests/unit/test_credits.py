"""Deal snapshots and credits (CONTRACT §1): ordering, contribution, deltas and exact money splits."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.credits import Credit, allocate, contribution, delta, net
from services.scoring.domain.deals import DealSnapshot, is_newer
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import Calendar
from services.scoring.outputs import credits_message, read_credits
from tests.support.deal_snapshots import (
    CLOSE_TIMES,
    OCCURRED,
    amounts,
    deal_snapshot_lists,
    fold,
    snapshot,
    split_lists,
)

# -- ordering and staleness ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data(), snapshots=deal_snapshot_lists())
def test_any_reordering_or_duplication_ends_with_the_totals_of_the_newest_snapshot(
    data: st.DataObject, snapshots: list[DealSnapshot]
) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(snapshots), max_size=8))
    feed = data.draw(st.permutations(snapshots + duplicates))
    applied: DealSnapshot | None = None
    credits: list[Credit] = []
    stale = 0
    for candidate in feed:
        if not is_newer(candidate, applied):
            stale += 1
            continue
        credits += delta(applied, candidate)
        applied = candidate
    newest = max(snapshots, key=DealSnapshot.order_key)
    assert applied is newest
    assert stale == len(feed) - sum(1 for _ in _increasing_prefix_maxima(feed))
    assert fold(credits) == fold(contribution(newest))


def _increasing_prefix_maxima(feed: list[DealSnapshot]) -> Iterable[DealSnapshot]:
    best = None
    for candidate in feed:
        if best is None or candidate.order_key() > best.order_key():
            best = candidate
            yield candidate


def test_a_snapshot_is_not_newer_than_itself() -> None:
    assert not is_newer(snapshot(), snapshot())
    assert is_newer(snapshot(), None)


def test_version_orders_snapshots_before_occurred_at() -> None:
    older = snapshot(version=2, occurred_at=OCCURRED[2], event_id="a")
    newer = snapshot(version=3, occurred_at=OCCURRED[0], event_id="b")
    assert is_newer(newer, older) and not is_newer(older, newer)


def test_a_missing_version_counts_as_zero() -> None:
    assert snapshot(version=None).order_key()[0] == 0
    assert not is_newer(snapshot(version=None, event_id="a"), snapshot(version=0, event_id="a"))


def test_occurred_at_is_compared_as_an_instant_not_as_text() -> None:
    # "2026-01-02T03:00-05:00" sorts after "2026-01-02T09:00Z" as text but happens an hour earlier.
    earlier = snapshot(occurred_at=OCCURRED[3], event_id="b")
    later = snapshot(occurred_at=OCCURRED[2], event_id="a")
    assert is_newer(later, earlier) and not is_newer(earlier, later)


def test_event_id_breaks_ties_between_equal_versions_and_instants() -> None:
    first = snapshot(occurred_at=OCCURRED[0], event_id="e1")
    second = snapshot(occurred_at=OCCURRED[1], event_id="e2")  # the same instant in Berlin time
    assert is_newer(second, first) and not is_newer(first, second)


def test_snapshots_of_different_deals_cannot_be_ordered() -> None:
    other = DealSnapshot("deal-2", "x", 1, OCCURRED[0], "ana", "open", Decimal(0))
    with pytest.raises(ValueError, match="different deals"):
        is_newer(other, snapshot())


# -- contribution ----------------------------------------------------------------------------------


def test_won_deal_credits_revenue_and_a_won_deal_in_the_close_period() -> None:
    assert contribution(snapshot("won")) == [
        Credit("ana", CLOSE_TIMES[2], revenue=Decimal("1000.00"), deals_won=Decimal(1))
    ]


def test_won_renewal_also_counts_a_won_renewal() -> None:
    [credit] = contribution(snapshot("won", kind="renewal"))
    assert (credit.deals_won, credit.renewals_won, credit.renewals_lost) == (1, 1, 0)


def test_lost_deal_counts_a_lost_deal_and_no_revenue() -> None:
    [credit] = contribution(snapshot("lost", kind="renewal"))
    assert (credit.revenue, credit.deals_won, credit.deals_lost, credit.renewals_lost) == (0, 0, 1, 1)


def test_open_deal_credits_nothing() -> None:
    assert contribution(snapshot("open", closed_at=None)) == []
    assert contribution(snapshot("open", closed_at=CLOSE_TIMES[0])) == []


def test_splits_share_revenue_and_deal_counts() -> None:
    splits = (("ana", Decimal("0.6")), ("ben", Decimal("0.4")))
    credits = contribution(snapshot("won", amount="999.99", splits=splits))
    assert [(c.rep_id, c.revenue, c.deals_won) for c in credits] == [
        ("ana", Decimal("599.99"), Decimal("0.6")),
        ("ben", Decimal("400.00"), Decimal("0.4")),
    ]


def test_a_rep_listed_twice_in_splits_gets_the_sum_of_both_shares() -> None:
    splits = (("ana", Decimal("0.25")), ("ben", Decimal("0.5")), ("ana", Decimal("0.25")))
    credits = contribution(snapshot("won", amount="100.00", splits=splits))
    assert [(c.rep_id, c.revenue, c.deals_won) for c in credits] == [
        ("ana", Decimal("50.00"), Decimal("0.50")),
        ("ben", Decimal("50.00"), Decimal("0.5")),
    ]


def test_no_splits_means_the_owner_gets_100_percent() -> None:
    assert snapshot(owner_id="cy").splits == (("cy", Decimal(1)),)


def test_won_or_lost_without_a_close_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="closed_at is required"):
        snapshot("won", closed_at=None)


# -- deltas: the one rule that covers every change -------------------------------------------------


def test_reversal_claws_back_revenue_in_the_close_period() -> None:
    won = snapshot("won", event_id="e1")
    reopened = snapshot("open", closed_at=None, version=2, event_id="e2")
    assert delta(won, reopened) == [Credit("ana", CLOSE_TIMES[2], revenue=Decimal("-1000.00"), deals_won=Decimal(-1))]


def test_won_then_lost_moves_the_deal_from_won_to_lost() -> None:
    won = snapshot("won", event_id="e1")
    lost = snapshot("lost", version=2, event_id="e2")
    [credit] = delta(won, lost)
    assert (credit.revenue, credit.deals_won, credit.deals_lost) == (Decimal("-1000.00"), -1, 1)


def test_an_amount_change_credits_only_the_difference() -> None:
    [credit] = delta(snapshot(amount="1000.00"), snapshot(amount="1250.50", version=2))
    assert (credit.revenue, credit.deals_won) == (Decimal("250.50"), 0)


def test_close_date_change_moves_credit_between_periods() -> None:
    calendar = Calendar()
    january = snapshot(closed_at=CLOSE_TIMES[0])
    february = snapshot(closed_at=CLOSE_TIMES[2], version=2)
    by_month: dict[str, KpiTotals] = {}
    for credit in contribution(january) + delta(january, february):
        by_month.setdefault(calendar.key(credit.at, "month"), KpiTotals()).apply_credit(credit)
    assert by_month["2026-01"].is_zero()
    assert (by_month["2026-02"].revenue, by_month["2026-02"].deals_won) == (Decimal("1000.00"), 1)


def test_the_same_close_instant_in_another_offset_is_no_change() -> None:
    assert delta(snapshot(closed_at=CLOSE_TIMES[0]), snapshot(closed_at=CLOSE_TIMES[1], version=2)) == []


def test_owner_change_moves_credit_between_reps() -> None:
    credits = delta(snapshot(owner_id="ana"), snapshot(owner_id="ben", version=2))
    assert [(c.rep_id, c.revenue, c.deals_won) for c in credits] == [
        ("ana", Decimal("-1000.00"), -1),
        ("ben", Decimal("1000.00"), 1),
    ]


def test_split_change_moves_only_the_changed_shares() -> None:
    before = snapshot(splits=(("ana", Decimal("0.5")), ("ben", Decimal("0.5"))))
    after = snapshot(splits=(("ana", Decimal("0.5")), ("cy", Decimal("0.5"))), version=2)
    credits = delta(before, after)
    assert [(c.rep_id, c.revenue, c.deals_won) for c in credits] == [
        ("ben", Decimal("-500.00"), Decimal("-0.5")),
        ("cy", Decimal("500.00"), Decimal("0.5")),
    ]


def test_delta_from_nothing_is_the_contribution() -> None:
    current = snapshot(splits=(("ben", Decimal("0.3")), ("ana", Decimal("0.7"))))
    assert fold(delta(None, current)) == fold(contribution(current))


@settings(max_examples=100, deadline=None)
@given(snapshots=deal_snapshot_lists())
def test_delta_is_deterministic_and_never_holds_zero_credits(snapshots: list[DealSnapshot]) -> None:
    previous, current = snapshots[0], snapshots[-1]
    credits = delta(previous, current)
    assert credits == delta(previous, current)
    assert not any(credit.is_zero() for credit in credits)
    assert len({(c.rep_id, c.at) for c in credits}) == len(credits)
    assert credits == sorted(credits, key=lambda c: (c.at.astimezone(UTC), c.rep_id))


# -- exact money splits ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(amount=amounts, splits=split_lists(), data=st.data())
def test_splits_conserve_the_amount_exactly(
    amount: Decimal, splits: tuple[tuple[str, Decimal], ...], data: st.DataObject
) -> None:
    splits = splits or (("ana", Decimal(1)),)
    parts = allocate(amount, splits)
    assert sum(part for _, part in parts) == amount
    assert [rep for rep, _ in parts] == [rep for rep, _ in splits]
    for (_, share), (_, part) in zip(splits, parts, strict=True):
        assert part == part.quantize(Decimal("0.01"))
        assert abs(part - amount * share) < Decimal("0.01") + amount * Decimal("1e-9")
    # Deterministic: the order in which the CRM lists the reps does not change who gets which cent.
    shuffled = data.draw(st.permutations(splits))
    assert dict(allocate(amount, shuffled)) == dict(parts)


def test_leftover_cents_go_to_the_largest_remainders_then_the_smaller_rep_id() -> None:
    thirds = (("cy", Decimal("0.34")), ("ben", Decimal("0.33")), ("ana", Decimal("0.33")))
    assert allocate(Decimal("1.00"), thirds) == [
        ("cy", Decimal("0.34")),
        ("ben", Decimal("0.33")),
        ("ana", Decimal("0.33")),
    ]
    halves = (("ben", Decimal("0.5")), ("ana", Decimal("0.5")))
    assert allocate(Decimal("0.01"), halves) == [("ben", Decimal("0.00")), ("ana", Decimal("0.01"))]
    equal_thirds = tuple((rep, Decimal("0.333333333333")) for rep in ("cy", "ana", "ben"))
    assert dict(allocate(Decimal("100.00"), equal_thirds)) == {
        "ana": Decimal("33.34"),
        "ben": Decimal("33.33"),
        "cy": Decimal("33.33"),
    }


def test_allocate_rejects_sub_cent_amounts_and_empty_splits() -> None:
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        allocate(Decimal("1.001"), (("ana", Decimal(1)),))
    with pytest.raises(ValueError, match="without splits"):
        allocate(Decimal("1.00"), ())
    with pytest.raises(ValueError, match="must be > 0"):
        allocate(Decimal("1.00"), (("ana", Decimal(0)),))


def test_allocate_splits_a_negative_amount_symmetrically() -> None:
    halves = (("ben", Decimal("0.5")), ("ana", Decimal("0.5")))
    assert allocate(Decimal("-0.03"), halves) == [("ben", Decimal("-0.01")), ("ana", Decimal("-0.02"))]


# -- storage ---------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(snapshots=deal_snapshot_lists())
def test_snapshots_and_credits_round_trip_through_json(snapshots: list[DealSnapshot]) -> None:
    for original in snapshots:
        stored = json.loads(json.dumps(original.to_dict()))
        restored = DealSnapshot.from_dict(stored)
        assert restored == original
        assert restored.order_key() == original.order_key()
        assert restored.to_dict() == original.to_dict()
        credits = contribution(original)
        assert read_credits(credits_message("deals/0", 1, 0, credits))[1] == credits


# -- overlay credit ----------------------------------------------------------------------------------


def test_overlays_are_credited_on_top_of_the_primary_split_each_rounded_half_even() -> None:
    won = snapshot(
        amount="1000.05",
        splits=(("ana", Decimal("0.5")), ("ben", Decimal("0.5"))),
        overlays=(("se", Decimal("0.5")), ("pm", Decimal("0.3"))),
    )
    by_rep = {(c.rep_id, c.overlay): (c.revenue, c.deals_won) for c in contribution(won)}
    assert by_rep == {
        ("ana", False): (Decimal("500.03"), Decimal("0.5")),  # the split's cents: largest remainder, as before
        ("ben", False): (Decimal("500.02"), Decimal("0.5")),
        ("se", True): (Decimal("500.02"), Decimal("0.5")),  # 500.025 → half to even
        ("pm", True): (Decimal("300.02"), Decimal("0.3")),  # 300.015 → half to even
    }
    primary = sum((c.revenue for c in contribution(won) if not c.overlay), Decimal(0))
    assert primary == Decimal("1000.05")  # the overlays take nothing from the deal's split


def test_a_lost_deal_counts_a_lost_share_for_its_overlays() -> None:
    lost = snapshot("lost", overlays=(("se", Decimal("0.4")),), kind="renewal")
    [_, se] = contribution(lost)
    assert (se.rep_id, se.overlay, se.deals_lost, se.renewals_lost, se.revenue) == (
        "se", True, Decimal("0.4"), Decimal("0.4"), Decimal(0)
    )


def test_a_rep_moved_from_overlay_to_the_split_moves_their_credit_between_roles() -> None:
    before = snapshot(overlays=(("ben", Decimal("1")),))
    after = snapshot(splits=(("ana", Decimal("0.5")), ("ben", Decimal("0.5"))), version=2, event_id="e2")
    moved = {(c.rep_id, c.overlay): c.revenue for c in delta(before, after)}
    assert moved == {("ana", False): Decimal("-500.00"), ("ben", False): Decimal("500.00"),
                     ("ben", True): Decimal("-1000.00")}


def test_totals_keep_overlay_credit_apart_and_count_the_roles_asked() -> None:
    totals = KpiTotals()
    for credit in contribution(snapshot(amount="900.00", overlays=(("ana", Decimal("0.5")),))):
        totals.apply_credit(credit)  # ana as primary and (an odd but storable case) as overlay
    assert totals.revenue == Decimal("900.00") and totals.overlay is not None
    assert totals.value("revenue") == Decimal("1350.00")  # a rep's own number: every role
    assert totals.credited({"primary"}).value("revenue") == Decimal("900.00")
    assert totals.credited({"overlay"}).value("deals_won") == Decimal("0.5")
    assert totals.report()["avg_deal_size"] == 900.0  # 1350 / 1.5 deals
    restored = KpiTotals.from_dict(json.loads(json.dumps(totals.to_dict())))
    assert restored == totals
    merged = KpiTotals().merged([totals, restored])
    assert merged.credited({"primary"}).revenue == Decimal("1800.00")
    assert merged.value("revenue") == Decimal("2700.00")


def test_a_credit_on_the_wire_leaves_out_the_measures_and_flags_it_does_not_set() -> None:
    credit = Credit("ana", CLOSE_TIMES[0], deals_lost=Decimal("0.5"))
    assert json.loads(credits_message("deals/0", 1, 0, [credit]))["credits"] == [
        {"rep_id": "ana", "at": "2026-01-31T23:30:00Z", "deals_lost": "0.5"}]


def test_from_dict_rejects_something_that_is_not_a_snapshot() -> None:
    with pytest.raises(ValueError, match="not a deal snapshot"):
        DealSnapshot.from_dict({"deal_id": "d"})
    with pytest.raises(ValueError, match="not a deal snapshot.*rep_id"):
        DealSnapshot.from_event({**snapshot().to_dict(), "splits": [{"share": "1"}]})


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        snapshot(occurred_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="UTC offset"):
        Credit("ana", datetime(2026, 1, 1))


def test_an_event_and_its_stored_form_give_the_same_snapshot() -> None:
    stored = snapshot(splits=(("ana", Decimal("0.6")), ("bo", Decimal("0.4")))).to_dict()
    event = {**stored, "splits": [{"rep_id": rep_id, "share": share} for rep_id, share in stored["splits"]]}
    assert DealSnapshot.from_event(event) == DealSnapshot.from_dict(stored)
    as_number = DealSnapshot.from_event({**event, "amount": 1000.1})  # a JSON number: exact, never binary
    assert as_number.amount == Decimal("1000.1")
    assert DealSnapshot.from_event({**event, "splits": None}).splits == (("ana", Decimal(1)),)


credit_lines = st.lists(
    st.builds(
        Credit,
        st.sampled_from(["ana", "ben"]),
        st.sampled_from([
            datetime(2026, 3, 1, 12, tzinfo=UTC),
            datetime(2026, 3, 1, 7, tzinfo=timezone(timedelta(hours=-5))),  # the same instant in another offset
            datetime(2026, 3, 2, tzinfo=UTC),
        ]),
        revenue=st.decimals(min_value=-1000, max_value=1000, places=2),
        deals_won=st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1)]),
        overlay=st.booleans(),
        currency=st.sampled_from([None, "EUR"]),
        deal_total=st.sampled_from([None, Decimal("12.50")]),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(plus=credit_lines)
def test_net_with_nothing_taken_back_is_the_full_sum(plus: list[Credit]) -> None:
    """`net`'s shortcut (no minus, no two credits to merge) gives what summing them gives."""
    summed = net(plus, [Credit("nobody", datetime(2026, 1, 1, tzinfo=UTC))])  # a zero minus: the summing path
    assert net(plus, []) == summed
    assert net(iter(plus), ()) == summed
    assert all(credit.deal_total is None and not credit.is_zero() for credit in net(plus, []))
