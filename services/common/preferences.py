"""The notification preferences table (schemas/preferences.py): written by the gateway's admin route, read by
the gateway and by the notifier when it records a crossing and again when a delivery comes due."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.preferences import Preferences, QuietHoursBody, parse_channels
from services.common.db import Sessions
from services.common.models import NotificationPreference
from services.common.settings import Settings

__all__ = ["default_preferences", "load_preferences", "read_preferences", "write_preferences"]


def default_preferences(settings: Settings) -> Preferences:
    """Preferences of a rep who never set any: the default channels, no quiet hours, no cap."""
    return Preferences(channels=parse_channels(settings.notify_default_channels))


def _from_row(row: NotificationPreference) -> Preferences:
    quiet = QuietHoursBody(start=row.quiet_start, end=row.quiet_end) if row.quiet_start and row.quiet_end else None
    return Preferences(channels=orjson.loads(row.channels), quiet_hours=quiet, max_per_hour=row.max_per_hour)


async def load_preferences(session: AsyncSession, rep_ids: Iterable[str]) -> dict[str, Preferences]:
    """Stored preferences of the given reps (reps without a row are absent)."""
    ids = sorted(set(rep_ids))
    if not ids:
        return {}
    rows = await session.execute(select(NotificationPreference).where(NotificationPreference.rep_id.in_(ids)))
    return {row.rep_id: _from_row(row) for row in rows.scalars()}


async def read_preferences(sessions: Sessions, rep_id: str) -> Preferences | None:
    async with sessions() as session:
        return (await load_preferences(session, [rep_id])).get(rep_id)


async def write_preferences(sessions: Sessions, rep_id: str, prefs: Preferences) -> None:
    """Create or replace the rep's preferences."""
    try:
        await _write(sessions, rep_id, prefs)
    except IntegrityError:  # another request created the row at the same moment: replace it
        await _write(sessions, rep_id, prefs)


async def _write(sessions: Sessions, rep_id: str, prefs: Preferences) -> None:
    now = datetime.now(UTC)
    quiet = prefs.quiet_hours
    async with sessions() as session, session.begin():
        row = await session.get(NotificationPreference, rep_id)
        if row is None:
            row = NotificationPreference(rep_id=rep_id)
            session.add(row)
        row.channels = orjson.dumps(list(prefs.channels)).decode()
        row.quiet_start = quiet.start if quiet else None
        row.quiet_end = quiet.end if quiet else None
        row.max_per_hour = prefs.max_per_hour
        row.updated_at = now
