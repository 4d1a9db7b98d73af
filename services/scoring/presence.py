"""Presence: each scoring worker says, every second, which source partitions it serves and how far.

A worker serves a partition once the group assigned it, its tables are recovered, its flow runs and it has
republished the snapshots of the reps it restored; during a rebalance, a table recovery or that republish it
serves none. With each partition goes the offset it has folded it up to
(the larger of its own completed batches and the group's committed offset), which the gateway's catch-up
reads. The gateway's readiness (services/api/readiness.py) needs every source partition served by a row
refreshed within `PRESENCE_TTL_MS`: a worker that joined its group but is still recovering, or one killed
without a word, does not count."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping

import orjson
from sqlalchemy import delete

from services.common import db
from services.common.db import Sessions
from services.common.models import ScoringPresence
from services.common.settings import Settings

log = logging.getLogger("salespulse.scoring.presence")

PRESENCE_INTERVAL = 1.0
"""Seconds between two refreshes of a worker's row."""


class Presence:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.db_url
        self._sessions: Sessions | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._failing = False

    def _open(self) -> Sessions:
        if self._sessions is None:
            self._sessions = db.sessionmaker(db.create_engine(self._url))
        return self._sessions

    async def beat(self, served: Mapping[tuple[str, int], int]) -> None:
        """Record the partitions served now, each with the offset this worker has folded up to (machine
        time); a database outage is logged once, not raised."""
        row = ScoringPresence(
            worker_id=self.worker_id,
            partitions=orjson.dumps({f"{topic}:{partition}": offset
                                     for (topic, partition), offset in sorted(served.items())}).decode(),
            seen_ms=int(time.time() * 1000),
        )
        try:
            async with self._open()() as session, session.begin():
                await session.merge(row)
        except Exception as exc:  # noqa: BLE001  (database unreachable: readiness shows it; keep scoring)
            if not self._failing:
                log.warning("presence not recorded (%s: %s); scoring goes on", type(exc).__name__, exc)
            self._failing = True
        else:
            self._failing = False

    async def leave(self) -> None:
        try:
            async with self._open()() as session, session.begin():
                await session.execute(delete(ScoringPresence).where(ScoringPresence.worker_id == self.worker_id))
        except Exception as exc:  # noqa: BLE001  (stopping anyway: the row expires)
            log.debug("presence not removed: %r", exc)
