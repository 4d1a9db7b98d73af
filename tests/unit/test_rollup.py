"""Manager roll-up (docs/plans-and-boards.md, Manager roll-up): whose team number a credit counts in, at the
credit's instant, and corrections that take back exactly what was rolled up before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.config import Plan
from services.api.config_store import with_history
from services.common.problems import Problem
from services.scoring.domain.credits import Credit, contribution, rolled_up
from services.scoring.domain.deals import DealSnapshot, is_newer
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.ledger_fold import LedgerFold
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rollup import deal_delta, manager_at
from tests.support.deal_snapshots import deal_snapshot_lists, fold, snapshot

MOVED = datetime(2026, 3, 15, 12, tzinfo=UTC)
"""When ana moved from east to west."""
HANDED_OVER = datetime(2026, 2, 1, tzinfo=UTC)
"""When east passed from mo to mia."""

REPS: dict[str, dict[str, Any]] = {
    "ana": {"rep_id": "ana", "team_id": "west", "team_history": [{"team_id": "east", "until": "2026-03-15T12:00:00Z"}]},
    "ben": {"rep_id": "ben", "team_id": "east"},
    "cy": {"rep_id": "cy", "team_id": None},
    "mia": {"rep_id": "mia", "team_id": None},
}
TEAMS: dict[str, dict[str, Any]] = {
    "east": {"team_id": "east", "manager_rep_id": "mia",
             "manager_history": [{"manager_rep_id": "mo", "until": "2026-02-01T00:00:00Z"}]},
    "west": {"team_id": "west", "manager_rep_id": "wu"},
    "solo": {"team_id": "solo"},
}


def test_a_credit_rolls_up_to_the_manager_of_the_reps_team_at_its_instant() -> None:
    second = timedelta(seconds=1)
    assert manager_at(REPS, TEAMS, "ana", MOVED - second) == "mia"  # still in east, east managed by mia
    assert manager_at(REPS, TEAMS, "ana", MOVED) == "wu"  # the move's instant belongs to the new team
    assert manager_at(REPS, TEAMS, "ana", HANDED_OVER - second) == "mo"  # east before mia took it over
    assert manager_at(REPS, TEAMS, "ben", HANDED_OVER - second) == "mo"
    assert manager_at(REPS, TEAMS, "ben", MOVED) == "mia"
    # Before the first recorded change, the first value applies (a roster set up after its history).
    assert manager_at(REPS, TEAMS, "ana", datetime(2020, 1, 1, tzinfo=UTC)) == "mo"


def test_no_roll_up_without_a_team_a_manager_or_a_place_on_the_roster() -> None:
    assert manager_at(REPS, TEAMS, "cy", MOVED) is None
    assert manager_at({"x": {"team_id": "solo"}}, TEAMS, "x", MOVED) is None
    assert manager_at({"x": {"team_id": "gone"}}, TEAMS, "x", MOVED) is None
    assert manager_at(REPS, TEAMS, "stranger", MOVED) is None


def test_a_won_deal_rolls_up_each_members_credit_and_keeps_whom_it_went_to() -> None:
    deal = snapshot(owner_id="ana", splits=(("ana", Decimal("0.6")), ("ben", Decimal("0.4"))),
                    overlays=(("cy", Decimal("0.1")),), closed_at=MOVED - timedelta(hours=1))
    credits, managers = deal_delta(None, None, deal, REPS, TEAMS)
    assert managers == {"ana": "mia", "ben": "mia"}  # cy has no team
    rolled = [c for c in credits if c.rollup]
    assert [(c.rep_id, c.revenue, c.deals_won) for c in rolled] == [("mia", Decimal("1000.00"), Decimal(1))]
    own = [c for c in credits if not c.rollup]
    assert sorted((c.rep_id, c.revenue) for c in own) == [
        ("ana", Decimal("600.00")), ("ben", Decimal("400.00")), ("cy", Decimal("100.00"))]


def test_a_correction_after_a_move_takes_back_from_whom_it_went_to_and_credits_by_the_new_close_time() -> None:
    before = snapshot(owner_id="ana", closed_at=MOVED - timedelta(days=1), amount="500.00")
    _, managers = deal_delta(None, None, before, REPS, TEAMS)
    assert managers == {"ana": "mia"}
    # The deal's close moves past ana's move: mia loses what she got, wu gains the new amount.
    after = snapshot(owner_id="ana", closed_at=MOVED + timedelta(days=1), amount="800.00", event_id="e2", version=2)
    credits, managers = deal_delta(before, managers, after, REPS, TEAMS)
    assert managers == {"ana": "wu"}
    assert {(c.rep_id, c.revenue) for c in credits if c.rollup} == {("mia", Decimal("-500.00")),
                                                                    ("wu", Decimal("800.00"))}


def test_a_correction_takes_back_what_was_rolled_up_even_when_the_roster_now_says_otherwise() -> None:
    before = snapshot(owner_id="ben", amount="300.00", closed_at=MOVED)
    after = snapshot(owner_id="ben", amount="350.00", closed_at=MOVED, event_id="e2", version=2)
    credits, _ = deal_delta(before, {"ben": "someone-else"}, after, REPS, TEAMS)
    assert {(c.rep_id, c.revenue) for c in credits if c.rollup} == {("someone-else", Decimal("-300.00")),
                                                                    ("mia", Decimal("350.00"))}


ROSTERS = st.sampled_from([
    (REPS, TEAMS),
    ({}, {}),
    ({"ana": {"team_id": "east"}, "ben": {"team_id": "west"}, "dee": {"team_id": "east"}}, TEAMS),
    ({r: {"team_id": "west"} for r in ("ana", "ben", "cy", "dee", "se", "pm")}, TEAMS),
])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), snapshots=deal_snapshot_lists())
def test_whatever_the_order_and_roster_changes_the_roll_up_ends_as_the_applied_snapshot_rolled_up_last(
    data: st.DataObject, snapshots: list[DealSnapshot]
) -> None:
    """Deal events in any order, the roster changing between them: the roll-up credits sent add up to what
    the snapshot applied last credits, counted for the managers it rolled up to when it was applied."""
    feed = data.draw(st.permutations(snapshots + data.draw(st.lists(st.sampled_from(snapshots), max_size=4))))
    applied: DealSnapshot | None = None
    kept: dict[str, str] | None = None
    sent: list[Credit] = []
    for event in feed:
        if applied is not None and not is_newer(event, applied):
            continue
        reps, teams = data.draw(ROSTERS)
        credits, kept = deal_delta(applied, kept, event, reps, teams)
        sent += [c for c in credits if c.rollup]
        applied = event
    assert applied is not None
    assert fold(sent) == fold(rolled_up(contribution(applied), kept or {}))


def test_a_managers_totals_keep_the_roll_up_out_of_their_own_kpis() -> None:
    totals = KpiTotals()
    totals.apply_credit(Credit("mia", MOVED, revenue=Decimal("100.00"), deals_won=Decimal(1)))
    totals.apply_credit(Credit("mia", MOVED, revenue=Decimal("900.00"), deals_won=Decimal(1), rollup=True))
    totals.apply_credit(Credit("mia", MOVED, revenue=Decimal("50.00"), deals_won=Decimal("0.5"), overlay=True,
                               rollup=True))
    assert totals.value("revenue") == Decimal("100.00")  # her own
    assert totals.report()["revenue"] == 100.0
    assert totals.rollup(["primary"]).value("revenue") == Decimal("900.00")
    assert totals.rollup(["primary", "overlay"]).value("revenue") == Decimal("950.00")
    assert totals.credited(["primary"]).team is None
    stored = KpiTotals.from_dict(totals.to_dict())
    assert stored == totals
    assert (stored + stored).rollup(["primary"]).value("revenue") == Decimal("1800.00")
    assert KpiTotals().rollup(["primary"]).is_zero()


def test_the_statement_fold_rolls_up_as_scoring_does_line_by_member() -> None:
    calendar = Calendar("UTC")
    events = [
        {"type": "deal", "event_id": "d1", "deal_id": "d1", "owner_id": "ana", "stage": "won", "amount": "500.00",
         "currency": "USD", "occurred_at": "2026-03-20T00:00:00Z", "closed_at": "2026-03-10T00:00:00Z"},
        {"type": "deal", "event_id": "d2", "deal_id": "d2", "owner_id": "ana", "stage": "won", "amount": "700.00",
         "currency": "USD", "occurred_at": "2026-03-20T00:00:00Z", "closed_at": "2026-03-20T00:00:00Z"},
        {"type": "deal", "event_id": "d3", "deal_id": "d3", "owner_id": "ben", "stage": "won", "amount": "200.00",
         "currency": "USD", "occurred_at": "2026-03-20T00:00:00Z", "closed_at": "2026-03-21T00:00:00Z"},
    ]
    fold = LedgerFold(REPS, TEAMS).add_all(enumerate(events, start=1))
    mia = fold.totals("mia", "month", "2026-03", calendar)
    wu = fold.totals("wu", "month", "2026-03", calendar)
    assert mia.rollup(["primary"]).value("revenue") == Decimal("700.00")  # ana before her move, and ben
    assert wu.rollup(["primary"]).value("revenue") == Decimal("700.00")  # ana after it
    assert mia.value("revenue") == Decimal(0)
    lines = fold.lines("mia", "revenue", "month", "2026-03", calendar, ["primary"], rollup=True)
    assert [(line.key, line.member_rep_id, line.credit) for line in lines] == [
        ("deal:d1:rep:ana", "ana", Decimal("500.00")), ("deal:d3:rep:ben", "ben", Decimal("200.00"))]
    assert LedgerFold().add_all(enumerate(events, start=1)).totals("mia", "month", "2026-03", calendar).team is None


def test_the_gateway_keeps_a_reps_team_history_from_the_changes_it_is_sent() -> None:
    first = datetime(2026, 3, 15, 12, tzinfo=UTC)
    created = with_history("rep", {"rep_id": "ana", "name": "Ana", "team_id": "east"}, None, first)
    assert "team_history" not in created  # a new rep's first team counts from the start
    same = with_history("rep", {**created, "name": "Ana B."}, created, first + timedelta(hours=1))
    assert "team_history" not in same
    moved = with_history("rep", {**same, "team_id": "west"}, same, first + timedelta(days=1))
    assert moved["team_history"] == [{"team_id": "east", "until": "2026-03-16T12:00:00Z"}]
    # Sent back as read: fine. Moved again at the same instant (a pinned clock): the middle team held no time.
    again = with_history("rep", {**moved, "team_id": "north"}, moved, first + timedelta(days=1))
    assert again["team_history"] == moved["team_history"] and again["team_id"] == "north"
    # The first team a rep is given applies from the start; leaving it for no team, then joining one, does not.
    unassigned = with_history("rep", {"rep_id": "bo", "name": "Bo"}, None, first)
    assert "team_history" not in with_history("rep", {**unassigned, "team_id": "east"}, unassigned, first)
    left = with_history("rep", {**created, "team_id": None}, created, first + timedelta(days=1))
    rejoined = with_history("rep", {**left, "team_id": "east"}, left, first + timedelta(days=2))
    assert [spell["team_id"] for spell in rejoined["team_history"]] == ["east", None]
    with pytest.raises(Problem) as problem:
        with_history("rep", {**moved, "team_history": []}, moved, first + timedelta(days=2))
    assert problem.value.status == 422 and "team_history is kept by salespulse" in problem.value.detail
    handed = with_history("team", {"team_id": "east", "name": "East", "manager_rep_id": "mia"},
                          {"team_id": "east", "name": "East", "manager_rep_id": "mo"}, first)
    assert handed["manager_history"] == [{"manager_rep_id": "mo", "until": "2026-03-15T12:00:00Z"}]
    given = with_history("team", {"team_id": "east", "name": "East", "manager_rep_id": "mia"},
                         {"team_id": "east", "name": "East"}, first)
    assert "manager_history" not in given  # a team's first manager manages it from the start


def test_a_manager_plan_lists_managers_only_and_measures_deal_credit() -> None:
    base = {"plan_id": "p", "name": "P", "metric": "revenue", "period": "month", "effective_from": "2026-01-01",
            "quota": 100, "tiers": [{"tier_id": "a", "name": "A", "threshold": 0.5, "rate": 0.1}]}
    plan = Plan.model_validate({**base, "participants": {"managers": ["mia"]}})
    assert plan.participants.managers == ["mia"]
    assert "managers" not in Plan.model_validate(base).model_dump(mode="json")["participants"]
    with pytest.raises(ValueError, match="lists managers only"):
        Plan.model_validate({**base, "participants": {"managers": ["mia"], "reps": ["ana"]}})
    with pytest.raises(ValueError, match="measures its team's deal credit"):
        Plan.model_validate({**base, "metric": "activities.call", "participants": {"managers": ["mia"]}})
