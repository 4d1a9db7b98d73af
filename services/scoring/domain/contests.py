"""Contests (CONTRACT §5): a board over a window `[starts_at, ends_at)` instead of a period.

A rep's contest value is the board's metric over the credits and activities attributed in the window, read
from the rep's per-minute totals (so windows have minute resolution; see `RepState.window_totals`), which live
in minute days beside the state: `days(day_key)` gives a stored day.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from services.scoring.domain.kpis import KpiTotals, is_kpi_name
from services.scoring.domain.minute_days import MinuteDay
from services.scoring.domain.rep_state import RepState, ceil_minute

__all__ = ["DayLookup", "contest_totals", "contest_value", "window_minutes"]

DayLookup = Callable[[str], MinuteDay | None]


def window_minutes(starts_at: datetime, ends_at: datetime) -> tuple[int, int]:
    """The UTC minutes `[first, end)` a window counts: those whose start lies in `[starts_at, ends_at)`."""
    return ceil_minute(starts_at), ceil_minute(ends_at)


def contest_totals(state: RepState, days: DayLookup, starts_at: datetime, ends_at: datetime) -> KpiTotals:
    """The rep's totals over the window: every KPI of the contest can be read from them."""
    return state.window_totals(starts_at, ends_at, days)


def contest_value(
    state: RepState, days: DayLookup, starts_at: datetime, ends_at: datetime, metric: str
) -> Decimal | None:
    """The rep's value of `metric` (any KPI of CONTRACT §3) over the window `[starts_at, ends_at)`.

    None for a rate or average over nothing (e.g. `win_rate` with no deal closed in the window); a board
    ranks that as 0. Raises ValueError for an unknown metric, a naive bound or a window that ends before
    it starts.
    """
    if not is_kpi_name(metric):
        raise ValueError(f"unknown KPI {metric!r} for a contest")
    return contest_totals(state, days, starts_at, ends_at).value(metric)
