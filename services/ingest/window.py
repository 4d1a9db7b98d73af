"""The timestamps an event may carry, as of now (docs/decisions.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import AcceptWindow
from services.common.settings import Settings

__all__ = ["accept_window"]


def accept_window(settings: Settings) -> AcceptWindow:
    """From SALESPULSE_EVENTS_NOT_BEFORE to a few days past now."""
    return AcceptWindow.around(
        settings.clock.now(),
        not_before=datetime.combine(settings.events_not_before, datetime.min.time(), UTC),
        ahead=timedelta(days=settings.events_max_future_days),
    )
