"""Achievements (docs/achievements.md): badges a rep earns when a rule over their KPIs holds, once per
(rep, achievement, period) — or once for a window rule — across restarts, replays and duplicate events.

What a rep has earned is kept in the rep's state beside the totals it is judged on (`RepState.earned`), the
way tiers reached are: a badge once recorded stays recorded whatever the totals do afterwards (a correction
that takes the deal back does not take the badge back), and the notifier records each one once more in SQL
on its own unique key. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from msgspec.structs import replace

from services.scoring.domain.contests import DayLookup, contest_totals
from services.scoring.domain.credits import Credit
from services.scoring.domain.periods import Calendar, PeriodKind
from services.scoring.domain.plans import is_participant
from services.scoring.domain.rep_state import RepState

__all__ = [
    "WINDOW_KEY",
    "deal_achievements",
    "needs_deal_totals",
    "period_achievements",
    "window_achievements",
    "with_deal_totals",
]

WINDOW_KEY: Final = "window"
"""The period key of an achievement whose rule is over a window: it is earned once."""

_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal(0)
_DAY: Final = timedelta(days=1)


def _applies(achievement: Any, rep_id: str, team_id: str | None) -> bool:
    return bool(is_participant(rep_id, team_id, achievement.participants))


def _in_effect(achievement: Any, start: date) -> bool:
    return achievement.effective_from is None or start >= achievement.effective_from


def needs_deal_totals(achievements: Iterable[Any]) -> bool:
    """Whether any achievement is judged on a single deal (the deal agent then says each deal's whole credit)."""
    return any(a.rule.kind == "deal" for a in achievements)


def with_deal_totals(credits: Sequence[Credit], whole: Iterable[Credit]) -> list[Credit]:
    """`credits` (a deal event's deltas) each marked with the rep's whole revenue credit from the deal in that
    credit's role (`whole`: what the deal credits now, in the reporting currency); roll-up credits and credits in
    a deal's own currency are left as they are."""
    totals: dict[tuple[str, bool], Decimal] = {}
    for credit in whole:
        if not credit.rollup and credit.currency is None:
            slot = (credit.rep_id, credit.overlay)
            totals[slot] = totals.get(slot, _ZERO) + credit.revenue
    return [
        credit if credit.rollup or credit.currency is not None
        else replace(credit, deal_total=totals.get((credit.rep_id, credit.overlay), _ZERO))
        for credit in credits
    ]


def _candidate_keys(
    rule: Any, state: RepState, calendar: Calendar, changed: Collection[tuple[PeriodKind, str]] | None
) -> list[str]:
    """The periods of the rule's kind to look at: those whose totals changed (every held one when `changed` is
    None); for a growth rule also the period after each, whose growth a change of its predecessor moves."""
    kind: PeriodKind = rule.period
    keys = set(state.periods[kind]) if changed is None else {key for k, key in changed if k == kind}
    if rule.kind == "growth":
        for key in list(keys):
            _, end = calendar.parse_key(kind, key)
            keys.add(calendar.key_for_date(end, kind))
    return sorted(key for key in keys if state.holds(kind, key))


def _value(state: RepState, kind: PeriodKind, key: str, metric: str) -> Decimal | None:
    totals = state.periods[kind].get(key)
    return None if totals is None else totals.value(metric)


def _holds(rule: Any, state: RepState, calendar: Calendar, key: str) -> bool:
    kind: PeriodKind = rule.period
    value = _value(state, kind, key, rule.metric)
    if value is None:
        return False
    if rule.kind == "total":
        return bool(value >= rule.at_least)
    start, _ = calendar.parse_key(kind, key)
    before_key = calendar.key_for_date(start - _DAY, kind)
    if not state.holds(kind, before_key):
        return False  # the period before is in history: growth is judged while both are hot
    before = _value(state, kind, before_key, rule.metric)
    if before is None or before <= 0:
        return False
    return bool(value >= before * (1 + rule.percent / _HUNDRED))


def period_achievements(
    achievements: Sequence[Any],
    state: RepState,
    team_id: str | None,
    calendar: Calendar,
    at: datetime,
    changed: Collection[tuple[PeriodKind, str]] | None,
) -> list[tuple[str, str]]:
    """Record in `state` the period achievements (rules `total` over a period, and `growth`) newly earned in the
    periods `changed` (None: every period the state holds, after an achievement was created or changed);
    returns them as `(achievement_id, period_key)`."""
    earned: list[tuple[str, str]] = []
    for achievement in achievements:
        rule = achievement.rule
        if rule.kind == "deal" or getattr(rule, "window", None) is not None:
            continue
        if not _applies(achievement, state.rep_id, team_id):
            continue
        for key in _candidate_keys(rule, state, calendar, changed):
            if state.has_earned(achievement.achievement_id, key):
                continue
            if not _in_effect(achievement, calendar.parse_key(rule.period, key)[0]):
                continue
            if _holds(rule, state, calendar, key) and state.earn(achievement.achievement_id, key, at):
                earned.append((achievement.achievement_id, key))
    return earned


def window_achievements(
    achievements: Sequence[Any], state: RepState, team_id: str | None, days: DayLookup, at: datetime
) -> list[tuple[str, str]]:
    """Record in `state` the window achievements (rule `total` with a window) newly earned; the window's totals
    come from the rep's minute days (`days`) and outbox, as a contest's do."""
    earned: list[tuple[str, str]] = []
    for achievement in achievements:
        rule = achievement.rule
        window = getattr(rule, "window", None)
        if window is None or state.has_earned(achievement.achievement_id, WINDOW_KEY):
            continue
        if not _applies(achievement, state.rep_id, team_id):
            continue
        value = contest_totals(state, days, window.starts_at, window.ends_at).value(rule.metric)
        if value is not None and value >= rule.at_least and state.earn(achievement.achievement_id, WINDOW_KEY, at):
            earned.append((achievement.achievement_id, WINDOW_KEY))
    return earned


def deal_achievements(
    achievements: Sequence[Any],
    state: RepState,
    team_id: str | None,
    credits: Sequence[Credit],
    calendar: Calendar,
    at: datetime,
) -> list[tuple[str, str]]:
    """Record in `state` the deal achievements these credits of one deal event earn: a credit that carries the
    deal's whole revenue credit to the rep (`deal_total`, in the reporting currency; roll-up credits do not
    count) at or above the rule's amount earns it in the rule's period containing the deal's close."""
    earned: list[tuple[str, str]] = []
    for achievement in achievements:
        rule = achievement.rule
        if rule.kind != "deal" or not _applies(achievement, state.rep_id, team_id):
            continue
        for credit in credits:
            total = credit.deal_total
            if total is None or credit.rollup or credit.currency is not None or total < rule.at_least:
                continue
            key = calendar.key(credit.at, rule.period)
            if state.has_earned(achievement.achievement_id, key):
                continue
            if _in_effect(achievement, calendar.parse_key(rule.period, key)[0]) and state.earn(
                achievement.achievement_id, key, at
            ):
                earned.append((achievement.achievement_id, key))
    return earned
