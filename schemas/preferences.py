"""A rep's notification preferences, as `PUT /v1/reps/{rep_id}/preferences` takes them and the notifier reads
them: channels, quiet hours on the rep's wall clock, an hourly cap (docs/notifications.md, "Preferences")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CHANNELS", "Channel", "Preferences", "QuietHours", "QuietHoursBody", "parse_channels", "parse_clock"]

Channel = Literal["in_app", "webhook", "email"]
CHANNELS: tuple[Channel, ...] = ("in_app", "webhook", "email")


def parse_clock(text: str) -> time:
    """"HH:MM" (24-hour) as a time; ValueError with a reason otherwise."""
    hours, sep, minutes = text.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{text!r} is not a time of day; write it as HH:MM, e.g. 22:00")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError(f"{text!r} is not a time of day; hours run 00–23 and minutes 00–59")
    return time(h, m)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily quiet period on the rep's wall clock, [start, end); it crosses midnight when end ≤ start."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> QuietHours:
        quiet = cls(parse_clock(start), parse_clock(end))
        if quiet.start == quiet.end:
            raise ValueError("quiet_hours start and end are equal; give a period, or null for no quiet hours")
        return quiet

    def contains(self, clock: time) -> bool:
        """True when `clock` (a wall time) is inside the quiet period."""
        if self.start < self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M")}


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
