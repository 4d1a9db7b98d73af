"""A rep's notification preferences: channels, quiet hours and an hourly cap, stored in SQL.

Used by the gateway (`PUT/GET /v1/reps/{rep_id}/preferences`) and by the notifier when it records a
crossing and again when a delivery comes due."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.models import NotificationPreference
from services.common.settings import Settings
from services.notifier.scheduling import QuietHours, parse_clock

__all__ = [
    "CHANNELS",
    "Channel",
    "Preferences",
    "QuietHoursBody",
    "default_preferences",
    "load_preferences",
    "read_preferences",
    "write_preferences",
]

Channel = Literal["in_app", "webhook", "email"]
CHANNELS: tuple[Channel, ...] = ("in_app", "webhook", "email")


class QuietHoursBody(BaseModel):
    """`{"start": "22:00", "end": "07:00"}` on the rep's wall clock; crosses midnight when end ≤ start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @model_validator(mode="after")
    def _a_period(self) -> QuietHoursBody:
        if self.start == self.end:
            raise ValueError("start and end are equal; give a period, or null for no quiet hours")
        return self

    def rule(self) -> QuietHours:
        return QuietHours.parse(self.start, self.end)


class Preferences(BaseModel):
    """What a rep chose. `channels` may be empty (no personal notifications; board celebrations still show)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: list[Channel] = Field(default_factory=lambda: list(CHANNELS))
    quiet_hours: QuietHoursBody | None = None
    max_per_hour: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("channels")
    @classmethod
    def _unique(cls, channels: list[Channel]) -> list[Channel]:
        if len(set(channels)) != len(channels):
            raise ValueError("a channel is listed twice")
        return channels

    def quiet(self) -> QuietHours | None:
        return self.quiet_hours.rule() if self.quiet_hours else None


def parse_channels(text: str) -> list[Channel]:
    """A comma-separated channel list (SALESPULSE_NOTIFY_DEFAULT_CHANNELS); unknown names are an error."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown notification channel(s) {', '.join(unknown)}; use {', '.join(CHANNELS)}")
    return list(dict.fromkeys(names))  # type: ignore[arg-type]


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


async def read_preferences(sessions: async_sessionmaker, rep_id: str) -> Preferences | None:
    async with sessions() as session:
        return (await load_preferences(session, [rep_id])).get(rep_id)


async def write_preferences(sessions: async_sessionmaker, rep_id: str, prefs: Preferences) -> None:
    """Create or replace the rep's preferences."""
    try:
        await _write(sessions, rep_id, prefs)
    except IntegrityError:  # another request created the row at the same moment: replace it
        await _write(sessions, rep_id, prefs)


async def _write(sessions: async_sessionmaker, rep_id: str, prefs: Preferences) -> None:
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
