"""When a delivery may go out: quiet hours in the rep's time zone, the hourly cap, and the coaching digest's
schedule (retries back off with services/common/backoff.py). Pure functions over aware datetimes; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schemas.preferences import QuietHours

__all__ = [
    "DIGEST_SCHEDULES",
    "Decision",
    "cap_deferral",
    "digest_slot",
    "hour_window",
    "local_instant",
    "next_digest_slot",
    "quiet_until",
    "schedule_delivery",
]

DIGEST_SCHEDULES = ("off", "daily", "weekdays", "weekly")


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"time {at.isoformat()} has no UTC offset; naive times are ambiguous")
    return at


def local_instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a wall clock in `zone` shows `clock` on `day`.

    A wall time inside a DST gap does not exist; fold=0 reads it with the offset from before the gap, which
    lands just after the gap (02:30 on a spring-forward night becomes 03:30). A repeated wall time (autumn)
    is its first occurrence.
    """
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def quiet_until(now: datetime, quiet: QuietHours | None, zone: ZoneInfo) -> datetime | None:
    """When the quiet period that contains `now` ends (UTC), or None when `now` is not quiet."""
    if quiet is None:
        return None
    local = _aware(now).astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if not quiet.contains(clock):
        return None
    day = local.date()
    # A period across midnight that we are in before midnight ends tomorrow; otherwise it ends today.
    if quiet.start > quiet.end and clock >= quiet.start:
        day += timedelta(days=1)
    end = local_instant(day, quiet.end, zone)
    if end <= now:
        # In the repeated hour of an autumn night, the wall clock shows the end time twice: the second one.
        end = datetime.combine(day, quiet.end, tzinfo=zone).replace(fold=1).astimezone(UTC)
    return end if end > now else None


def hour_window(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The clock hour on the rep's wall clock that contains `now`, as UTC instants [start, end)."""
    local = _aware(now).astimezone(zone)
    start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return start, start + timedelta(hours=1)


def cap_deferral(now: datetime, sent_in_window: int, max_per_hour: int | None, zone: ZoneInfo) -> datetime | None:
    """When a delivery over the hourly cap may go (the start of the next hour window), or None if under it."""
    if max_per_hour is None or sent_in_window < max_per_hour:
        return None
    return hour_window(now, zone)[1]


@dataclass(frozen=True, slots=True)
class Decision:
    """Send now (`due_at` None) or defer until `due_at` for `reason` ("quiet_hours" or "hourly_cap")."""

    due_at: datetime | None = None
    reason: str | None = None

    @property
    def send_now(self) -> bool:
        return self.due_at is None


def schedule_delivery(
    now: datetime, *, quiet: QuietHours | None, max_per_hour: int | None, sent_in_window: int, zone: ZoneInfo
) -> Decision:
    """Quiet hours first (nothing goes out while the rep sleeps), then the hourly cap. A deferred delivery
    is judged again when it comes due, so a delivery pushed past the cap into quiet hours waits for both."""
    until = quiet_until(now, quiet, zone)
    if until is not None:
        return Decision(until, "quiet_hours")
    until = cap_deferral(now, sent_in_window, max_per_hour, zone)
    if until is not None:
        return Decision(until, "hourly_cap")
    return Decision()


# --- coaching digest ----------------------------------------------------------------------------------------


def _slot_days(schedule: str, day: date) -> bool:
    if schedule == "daily":
        return True
    if schedule == "weekdays":
        return day.weekday() < 5
    if schedule == "weekly":
        return day.weekday() == 0
    return False


def digest_slot(now: datetime, *, schedule: str, at: time, zone: ZoneInfo) -> tuple[str, datetime] | None:
    """The latest digest slot at or before `now`: (slot key = local date, instant), or None if there is none
    in the past 8 days (or the schedule is off). Daily, weekdays (Mon–Fri) or weekly (Mondays) at `at`."""
    if schedule not in DIGEST_SCHEDULES:
        raise ValueError(f"unknown digest schedule {schedule!r}; use one of {', '.join(DIGEST_SCHEDULES)}")
    if schedule == "off":
        return None
    today = _aware(now).astimezone(zone).date()
    for back in range(0, 9):
        day = today - timedelta(days=back)
        if not _slot_days(schedule, day):
            continue
        instant = local_instant(day, at, zone)
        if instant <= now:
            return day.isoformat(), instant
    return None


def next_digest_slot(now: datetime, *, schedule: str, at: time, zone: ZoneInfo) -> datetime | None:
    """The first digest slot after `now` (UTC), or None when the schedule is off."""
    if schedule == "off":
        return None
    today = _aware(now).astimezone(zone).date()
    for ahead in range(0, 9):
        day = today + timedelta(days=ahead)
        if _slot_days(schedule, day):
            instant = local_instant(day, at, zone)
            if instant > now:
                return instant
    return None
