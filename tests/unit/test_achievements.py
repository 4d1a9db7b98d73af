"""Achievements (docs/achievements.md): the configuration's rules, what earns a badge, once per (rep, achievement,
period) whatever the totals do afterwards, and what the notifier makes of an earned badge."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from msgspec.structs import replace
from pydantic import ValidationError

from schemas.config import Achievement
from schemas.messages import Celebration, InAppNotification, RepProgress
from services.notifier.messages import celebration_message, generic_payload, headline, in_app_message, slack_payload
from services.notifier.messages import tier_email as email_of
from services.notifier.tier_crossings import ACHIEVEMENT, TierCrossing, achievements_in_snapshot, notification_id
from services.scoring.codecs import RepStateEncoder
from services.scoring.domain.achievements import (
    WINDOW_KEY,
    deal_achievements,
    period_achievements,
    window_achievements,
    with_deal_totals,
)
from services.scoring.domain.credits import Credit, contribution
from services.scoring.domain.deals import DealSnapshot
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import RepState
from tests.support.minutes import MemoryDays

CALENDAR = Calendar("America/New_York")
AT = datetime(2026, 3, 16, 15, tzinfo=UTC)  # a Monday, 11:00 in New York
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def achievement(rule: dict[str, Any], **extra: Any) -> Achievement:
    return Achievement.model_validate({"achievement_id": extra.pop("achievement_id", "a1"), "name": "A badge",
                                       "rule": rule, **extra})


FIRST_DEAL = achievement({"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1},
                         achievement_id="first-deal", name="First deal of the month", badge="\U0001F947")
FIVE_DEMOS = achievement({"kind": "total", "metric": "activities.demo", "period": "day", "at_least": 5},
                         achievement_id="five-demos", name="Five demos in a day")
BIG_DEAL = achievement({"kind": "deal", "period": "month", "at_least": 50000}, achievement_id="big-deal",
                       name="Deal over $50,000")
GROWTH = achievement({"kind": "growth", "metric": "revenue", "period": "month", "percent": 10},
                     achievement_id="growth", name="10 % above last month")


def credit(amount: str, at: datetime = AT, rep: str = "ana", won: str = "1", **extra: Any) -> Credit:
    return Credit(rep, at, revenue=Decimal(amount), deals_won=Decimal(won), **extra)


def fold(state: RepState, credits: list[Credit], seq: int) -> set[tuple[str, str]]:
    """Apply one event's credits (to the state's rep); return the touched periods (what a refresh looks at) and
    clear them."""
    credits = [replace(c, rep_id=state.rep_id) for c in credits]
    state.apply_credits(credits, source="deals/0", seq=seq, calendar=CALENDAR)
    touched, state.touched = state.touched, set()
    return touched


def activity(state: RepState, kind: str, at: datetime, seq: int) -> set[tuple[str, str]]:
    state.apply_activity(kind, at, source="activities/0", seq=seq, calendar=CALENDAR)
    touched, state.touched = state.touched, set()
    return touched


# -- configuration -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "total", "metric": "deals_won", "at_least": 1}, "exactly one of period"),
        ({"kind": "total", "metric": "deals_won", "period": "month", "at_least": 0}, "greater than 0"),
        ({"kind": "total", "metric": "calls", "period": "day", "at_least": 3}, "unknown metric 'calls'"),
        ({"kind": "deal", "at_least": -5}, "greater than 0"),
        ({"kind": "growth", "metric": "revenue", "period": "month", "percent": -1}, "greater than or equal to 0"),
        ({"kind": "streak", "metric": "revenue"}, "does not match any of the expected tags"),
        ({"kind": "total", "metric": "revenue", "period": "fortnight", "at_least": 1}, "period"),
    ],
)
def test_a_rule_that_cannot_be_judged_is_refused_with_what_to_change(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        achievement(rule)
    assert message in str(refused.value)


def test_an_achievement_is_for_reps_and_its_badge_is_short() -> None:
    rule = {"kind": "deal", "at_least": 1}
    with pytest.raises(ValidationError, match="earned by reps"):
        achievement(rule, participants={"managers": ["mia"]})
    with pytest.raises(ValidationError, match="1 to 8 characters"):
        achievement(rule, badge="a badge that is far too long")
    with pytest.raises(ValidationError, match="control characters"):
        achievement(rule, badge="\x07")
    assert achievement(rule).badge == "\U0001F3C5"  # the default: a medal
    assert achievement(rule, badge="\U0001F680").model_dump(mode="json")["rule"] == {
        "kind": "deal", "period": "month", "at_least": 1}


# -- period rules ----------------------------------------------------------------------------------------------------


def test_a_total_rule_is_earned_once_per_period_however_the_totals_move_afterwards() -> None:
    state = RepState("ana")
    touched = fold(state, [credit("10.00", won="0.5")], 1)  # half a deal (a split): not yet one deal won
    assert period_achievements([FIRST_DEAL], state, None, CALENDAR, NOW, touched) == []
    touched = fold(state, [credit("10.00", won="0.5")], 2)
    assert period_achievements([FIRST_DEAL], state, None, CALENDAR, NOW, touched) == [("first-deal", "2026-03")]
    # Taken back, then won again: the badge stays earned and is not earned twice.
    touched = fold(state, [credit("-20.00", won="-1")], 3)
    assert period_achievements([FIRST_DEAL], state, None, CALENDAR, NOW, touched) == []
    touched = fold(state, [credit("20.00", won="1")], 4)
    assert period_achievements([FIRST_DEAL], state, None, CALENDAR, NOW, touched) == []
    assert state.earned == {"first-deal": {"2026-03": "2026-03-20T12:00:00Z"}}
    # The next month is a period of its own.
    touched = fold(state, [credit("5.00", at=datetime(2026, 4, 1, 4, 30, tzinfo=UTC))], 5)  # 00:30 in New York
    assert period_achievements([FIRST_DEAL], state, None, CALENDAR, NOW, touched) == [("first-deal", "2026-04")]


def test_a_daily_count_counts_each_business_day_in_the_business_timezone() -> None:
    state = RepState("ana")
    # 22:00 to 02:00 UTC is 18:00 to 22:00 in New York: one business day, though two UTC days.
    start = datetime(2026, 3, 16, 22, tzinfo=UTC)
    earned = []
    for n in range(5):
        touched = activity(state, "demo", start + timedelta(hours=n), n)
        earned += period_achievements([FIVE_DEMOS], state, None, CALENDAR, NOW, touched)
    assert earned == [("five-demos", "2026-03-16")]
    touched = activity(state, "call", start + timedelta(hours=5), 9)  # another kind does not count
    assert period_achievements([FIVE_DEMOS], state, None, CALENDAR, NOW, touched) == []


def test_participants_and_the_effective_date_limit_who_earns_what() -> None:
    east_only = achievement({"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1},
                            participants={"teams": ["east"], "reps": ["zed"]})
    state = RepState("ana")
    touched = fold(state, [credit("10.00")], 1)
    assert period_achievements([east_only], state, "west", CALENDAR, NOW, set(touched)) == []
    assert period_achievements([east_only], state, "east", CALENDAR, NOW, set(touched)) == [("a1", "2026-03")]
    from_april = achievement({"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1},
                             effective_from=date(2026, 4, 1), achievement_id="a2")
    assert period_achievements([from_april], state, None, CALENDAR, NOW, None) == []  # March started before it


def test_growth_is_judged_against_the_period_before_exactly_and_moves_with_a_late_deal_into_it() -> None:
    state = RepState("ana")
    march, april = datetime(2026, 3, 10, 15, tzinfo=UTC), datetime(2026, 4, 10, 15, tzinfo=UTC)
    fold(state, [credit("1000.00", at=march)], 1)
    touched = fold(state, [credit("1099.99", at=april)], 2)
    assert period_achievements([GROWTH], state, None, CALENDAR, NOW, touched) == []  # 9.999 % above
    touched = fold(state, [credit("0.01", at=april)], 3)
    assert period_achievements([GROWTH], state, None, CALENDAR, NOW, touched) == [("growth", "2026-04")]  # 10 %

    # A correction into the period before moves the growth of the period after: lowering March by 100 lifts
    # April's 1,050 past the bar (990).
    other = RepState("bo")
    fold(other, [credit("1000.00", at=march)], 1)
    touched = fold(other, [credit("1050.00", at=april)], 2)
    assert period_achievements([GROWTH], other, None, CALENDAR, NOW, touched) == []
    touched = fold(other, [credit("-100.00", won="0", at=march)], 3)  # a correction into March only
    assert period_achievements([GROWTH], other, None, CALENDAR, NOW, touched) == [("growth", "2026-04")]

    fresh = RepState("cy")
    touched = fold(fresh, [credit("500.00", at=april)], 1)
    assert period_achievements([GROWTH], fresh, None, CALENDAR, NOW, touched) == []  # March had 0


def test_a_growth_whose_period_before_is_in_history_is_not_judged() -> None:
    state = RepState("ana", retention={"day": 62, "week": 27, "month": 1, "quarter": 9, "year": 4})
    fold(state, [credit("100.00", at=datetime(2026, 3, 10, 15, tzinfo=UTC))], 1)
    touched = fold(state, [credit("500.00", at=datetime(2026, 4, 10, 15, tzinfo=UTC))], 2)
    assert not state.holds("month", "2026-03")
    assert period_achievements([GROWTH], state, None, CALENDAR, NOW, touched) == []


# -- deal rules ------------------------------------------------------------------------------------------------------


def deal(amount: str, version: int, splits: tuple[tuple[str, str], ...] = (), **extra: Any) -> DealSnapshot:
    return DealSnapshot(
        deal_id="d1", event_id=f"e{version}", version=version, occurred_at=AT, owner_id="ana", stage="won",
        amount=Decimal(amount), closed_at=AT, splits=tuple((r, Decimal(s)) for r, s in splits), **extra,
    )


def test_a_deal_rule_looks_at_the_deals_whole_credit_not_at_a_corrections_delta() -> None:
    state = RepState("ana")
    first = deal("40000.00", 1)
    credits = with_deal_totals(contribution(first), contribution(first))
    fold(state, credits, 1)
    assert deal_achievements([BIG_DEAL], state, None, credits, CALENDAR, NOW) == []
    # Corrected to 60,000: the delta is 20,000, the deal is 60,000.
    second = deal("60000.00", 2)
    delta = [credit("20000.00", won="0")]
    marked = with_deal_totals(delta, contribution(second))
    assert marked[0].deal_total == Decimal("60000.00") and marked[0].revenue == Decimal("20000.00")
    fold(state, marked, 2)
    assert deal_achievements([BIG_DEAL], state, None, marked, CALENDAR, NOW) == [("big-deal", "2026-03")]
    assert deal_achievements([BIG_DEAL], state, None, marked, CALENDAR, NOW) == []  # once


def test_a_split_deal_counts_each_reps_share_and_roll_up_credit_never_earns() -> None:
    split = deal("100000.00", 1, splits=(("ana", "0.5"), ("bo", "0.5")))
    marked = with_deal_totals(contribution(split), contribution(split))
    assert {c.rep_id: c.deal_total for c in marked} == {"ana": Decimal("50000.00"), "bo": Decimal("50000.00")}
    ana = RepState("ana")
    assert deal_achievements([BIG_DEAL], ana, None, [c for c in marked if c.rep_id == "ana"], CALENDAR, NOW) == [
        ("big-deal", "2026-03")]
    rolled = Credit("mia", AT, revenue=Decimal("90000"), deals_won=Decimal(1), rollup=True, deal_total=Decimal(90000))
    assert with_deal_totals([rolled], []) == [rolled]  # left as it is
    assert deal_achievements([BIG_DEAL], RepState("mia"), None, [rolled], CALENDAR, NOW) == []


# -- window rules ----------------------------------------------------------------------------------------------------


def test_a_window_rule_is_earned_once_from_the_minutes_in_its_window() -> None:
    rule = {"kind": "total", "metric": "activities", "window": {
        "starts_at": "2026-03-16T14:00:00Z", "ends_at": "2026-03-16T16:00:00Z"}, "at_least": 3}
    blitz = achievement(rule, achievement_id="blitz")
    state, days = RepState("ana"), MemoryDays()
    for seq, minute in enumerate((5, 70, 130)):  # 14:05, 15:10 and 16:10 (outside)
        activity(state, "call", datetime(2026, 3, 16, 14, tzinfo=UTC) + timedelta(minutes=minute), seq)
    assert window_achievements([blitz], state, None, days.days.get, NOW) == []
    activity(state, "call", datetime(2026, 3, 16, 15, 59, tzinfo=UTC), 9)
    assert window_achievements([blitz], state, None, days.days.get, NOW) == [("blitz", WINDOW_KEY)]
    assert window_achievements([blitz], state, None, days.days.get, NOW) == []
    assert period_achievements([blitz], state, None, CALENDAR, NOW, None) == []  # not a period rule


# -- storage ---------------------------------------------------------------------------------------------------------


def test_what_was_earned_is_stored_with_the_state_and_comes_back() -> None:
    state = RepState("ana")
    fold(state, [credit("10.00")], 1)
    version = state.version
    assert state.earn("first-deal", "2026-03", NOW) and state.version == version + 1
    assert not state.earn("first-deal", "2026-03", NOW + timedelta(days=1)) and state.version == version + 1
    again = RepState.from_dict(json.loads(RepStateEncoder().encode(state)))
    assert again.earned == {"first-deal": {"2026-03": "2026-03-20T12:00:00Z"}} and again == state


# -- the notifier's side ---------------------------------------------------------------------------------------------


def snapshot(earned: dict[str, Any]) -> RepProgress:
    return RepProgress.model_validate({"rep_id": "ana", "version": 3, "earned": earned})


def test_each_earned_badge_is_one_notification_with_an_id_of_its_own() -> None:
    docs = {"first-deal": FIRST_DEAL.model_dump(mode="json")}
    found = achievements_in_snapshot(snapshot({
        "first-deal": {"2026-04": "2026-04-02T09:00:00Z", "2026-03": "2026-03-20T12:00:00Z"},
        "gone": {"window": "2026-03-21T08:00:00Z"},
    }), docs)
    assert [(c.plan_id, c.period_key, c.kind) for c in found] == [
        ("first-deal", "2026-03", ACHIEVEMENT), ("gone", "window", ACHIEVEMENT), ("first-deal", "2026-04", ACHIEVEMENT)]
    assert found[0].tier_name == "First deal of the month" and found[0].details["badge"] == "\U0001F947"
    assert found[1].tier_name == "gone"  # deleted since: its id
    # An achievement and a plan may share an id and a period: two notifications, never one.
    assert found[0].notification_id.startswith("ac_")
    assert found[0].notification_id != notification_id("ana", "first-deal", "2026-03", "")


def test_an_achievements_messages_name_the_badge_and_escape_what_users_wrote() -> None:
    earned = TierCrossing(
        rep_id="<!channel>", plan_id="first-deal", period_key="2026-03", tier_id="", tier_name="First <deal> & co",
        threshold=None, reward=None, crossed_at=NOW, kind=ACHIEVEMENT,
        details={"rep_name": "Ana <b>", "badge": "\U0001F947", "description": "Won a deal *this* month"},
    )
    assert headline(earned) == "Ana <b> earned \U0001F947 First <deal> & co, in 2026-03"
    note = in_app_message(earned)
    assert isinstance(note, InAppNotification) and note.kind == "achievement" and note.tier is None
    assert note.achievement is not None and note.achievement.achievement_id == "first-deal"
    party = celebration_message(earned)
    assert isinstance(party, Celebration) and party.achievement is not None and party.plan_id is None
    slack = json.dumps(slack_payload(earned))
    assert "<!channel>" not in slack and "&lt;!channel&gt;" not in slack  # the rep's name is shown, not the id
    assert "First &lt;deal&gt; &amp; co" in slack and "Ana &lt;b&gt;" in slack
    assert generic_payload(earned, 1)["type"] == "achievement"
    mail = email_of(earned, to="ana@example.com", sender="sp@example.com")
    assert mail["Subject"] == "You earned \U0001F947 First <deal> & co, in 2026-03"
    assert "First &lt;deal&gt; &amp; co" in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
