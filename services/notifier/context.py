"""What the notifier's three parts share — the crossing recorder, the delivery worker and the digest scheduler:
settings, the database, the clock, metrics, the roster and plans from the config feed, the channels, and the
event that wakes the delivery worker."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.config import Plan, Streak
from schemas.preferences import Preferences
from services.common.config_feed import ConfigFollower
from services.common.db import Sessions
from services.common.preferences import default_preferences
from services.common.settings import Settings
from services.notifier.channels import EmailChannel, Sender, WebhookChannel
from services.notifier.metrics import NotifierMetrics
from services.scoring.domain.periods import Calendar

__all__ = ["NotifierContext", "Now"]

Now = Callable[[], datetime]
"""What time it is; by default the settings' clock (services/common/clock.py)."""



@dataclass
class NotifierContext:
    settings: Settings
    sessions: Sessions
    clock: Now
    metrics: NotifierMetrics
    config: ConfigFollower
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}")
    """Who holds a lease: host, process and a random tag."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when something may have come due: the delivery worker looks at once instead of at its next poll."""
    channels: dict[str, Sender] = field(default_factory=dict)
    webhook: WebhookChannel | None = None
    email: EmailChannel | None = None

    def __post_init__(self) -> None:
        self.calendar = Calendar(self.settings.timezone, self.settings.fiscal_year_start_month)
        self.defaults: Preferences = default_preferences(self.settings)

    # --- roster and plans ---------------------------------------------------------------------------------------

    def rep(self, rep_id: str) -> dict[str, Any]:
        return self.config.state.reps().get(rep_id) or {}

    def email_of(self, rep_id: str) -> str | None:
        return self.rep(rep_id).get("email")

    def zone_of(self, rep_id: str) -> ZoneInfo:
        """The rep's roster time zone, else the business time zone."""
        name = self.rep(rep_id).get("timezone")
        try:
            return ZoneInfo(name) if name else self.settings.zone
        except (KeyError, ValueError):
            return self.settings.zone

    def plans(self) -> list[Plan]:
        """Every valid plan of the config feed, parsed once per version."""
        return self.config.state.models("plan", Plan)

    def streaks(self) -> list[Streak]:
        """Every valid streak of the config feed, parsed once per version."""
        return self.config.state.models("streak", Streak)

    def lease_until(self, now: datetime) -> datetime:
        """How long a claimed delivery or digest stays this process's."""
        return now + timedelta(seconds=self.settings.notify_lease_seconds)

    def unavailable(self, channel: str, rep_id: str) -> str | None:
        """Why `channel` cannot reach the rep, or None when it can."""
        if channel == "webhook" and not (self.webhook and self.webhook.configured):
            return "no webhook configured (SALESPULSE_NOTIFY_SLACK_WEBHOOK_URLS / SALESPULSE_NOTIFY_WEBHOOK_URLS)"
        if channel == "email":
            if not (self.email and self.email.configured):
                return "no SMTP server configured (SALESPULSE_NOTIFY_SMTP_HOST)"
            if not self.email_of(rep_id):
                return f"rep {rep_id} has no e-mail address on the roster"
        return None
