"""Strict-roster support: which rep ids the roster knows, cached for a few seconds."""

from __future__ import annotations

import time

from sqlalchemy import select

from schemas.events import ActivityEvent, DealEvent, ValidationProblem
from services.common.db import Sessions
from services.common.models import ConfigEntry


class RosterCache:
    def __init__(self, sessions: Sessions, ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._loaded = -1e9
        self._reps: set[str] = set()

    async def rep_ids(self) -> set[str]:
        if time.monotonic() - self._loaded > self._ttl:
            async with self._sessions() as session:
                rows = await session.execute(select(ConfigEntry.entry_id).where(ConfigEntry.kind == "rep"))
            self._reps = set(rows.scalars())
            self._loaded = time.monotonic()
        return self._reps

    async def unknown_reps(self, events: list[DealEvent | ActivityEvent]) -> list[ValidationProblem]:
        known = await self.rep_ids()
        problems = []
        for index, event in enumerate(events):
            for rep in sorted(event.rep_ids() - known):
                field = "rep_id" if isinstance(event, ActivityEvent) else "owner_id"
                problems.append(
                    ValidationProblem(index, field, f"unknown rep {rep!r}: add it with PUT /v1/reps/{rep} first")
                )
        return problems
