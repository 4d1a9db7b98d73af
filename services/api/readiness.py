"""Readiness that tells the truth: the gateway is ready once scoring serves every partition and the whole
pipeline has caught up with the ledger as it was when the gateway started.

Catching up is a chain, each stage measured against the end of the one before, taken once that one is done:

1. **ledger**: the relay's cursor reaches the ledger's last sequence number at start;
2. **scoring (deals, activities)**: how far scoring has folded them (the group's committed offsets, or a live
   worker's own account in its presence row where that is further) reaches the end of `deals` and
   `activities` as they stood when the relay was done (a batch's credits and snapshots are acknowledged by
   the broker before its offsets are committed, so everything those events produce is in the topics);
3. **scoring (credits)**: the same for `credits`, against its end as it stood after stage 2;
4. **read model**: this gateway has read `rep-snapshots` up to its end as it stood after stage 3.

Once caught up it stays so (later events are the live flow, not a backlog), but "ready" also needs, at each
ask, the database reachable and every source partition served by a live scoring worker
(services/scoring/presence.py): a worker that joined its group but is still restoring its tables does not
serve yet. While catching up, `progress()` gives the events still behind and an estimate of the seconds left
from the rate they have been going down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from services.common.background import BackgroundLoop
from services.common.backoff import Backoff
from services.common.db import Sessions
from services.common.kafka import consume_with_reconnect, log_ends
from services.common.models import LedgerEntry, ScoringPresence, relay_cursor
from services.common.settings import Settings
from services.common.topics import ACTIVITIES, CREDITS, DEALS, REP_SNAPSHOTS, topic_name

log = logging.getLogger("salespulse.api.readiness")

__all__ = ["PRESENCE_TTL_MS", "Progress", "Readiness"]

PRESENCE_TTL_MS = 10_000
"""A scoring worker's presence row counts while refreshed within this many milliseconds (it refreshes every
second; the margin covers a long batch or a slow database)."""

STAGES = ("ledger", "scoring", "credits", "read model")
LIVE_EVERY = 2.0
"""Seconds between measures of what is in flight once caught up (`live_behind`)."""


@dataclass(frozen=True)
class Progress:
    caught_up: bool
    stage: str
    """The first stage not done yet ("live" once caught up)."""
    behind: int
    """Events (or messages) still to go through the stages not yet done, as last measured."""
    eta_seconds: float | None
    """Estimated seconds until caught up, from the recent rate; None until there is a rate."""

    def as_json(self) -> dict[str, Any]:
        eta = None if self.eta_seconds is None else round(self.eta_seconds, 1)
        return {"caught_up": self.caught_up, "stage": self.stage, "behind": self.behind, "eta_seconds": eta}


def _behind(ends: Mapping[TopicPartition, int], done: Mapping[TopicPartition, int]) -> int:
    return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())


class Readiness(BackgroundLoop):
    """Follows the catch-up chain every `interval` seconds until done; answers `progress()` and `serving()`."""

    loop_name = "readiness"

    def __init__(
        self,
        settings: Settings,
        sessions: Sessions,
        read_positions: Callable[[], Mapping[TopicPartition, int]],
        *,
        interval: float = 0.25,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._read_positions = read_positions
        self._interval = interval
        parts = range(settings.partitions)
        self.event_tps = [TopicPartition(topic_name(settings, t), p) for t in (DEALS, ACTIVITIES) for p in parts]
        self.credit_tps = [TopicPartition(topic_name(settings, CREDITS), p) for p in parts]
        self.snapshot_tps = [TopicPartition(topic_name(settings, REP_SNAPSHOTS), p) for p in parts]
        self.source = {f"{tp.topic}:{tp.partition}" for tp in (*self.event_tps, *self.credit_tps)}
        self.group = f"{settings.topic_prefix}scoring"
        self.ledger_end: int | None = None
        self._targets: dict[str, dict[TopicPartition, int]] = {}
        self._stage = 0
        self._behind = 0
        self._samples: deque[tuple[float, int]] = deque(maxlen=40)
        self.caught_up = asyncio.Event()
        self._live_behind: int | None = None

    # --- what /v1/ready asks -------------------------------------------------------------------------------

    def progress(self) -> Progress:
        if self.caught_up.is_set():
            return Progress(True, "live", 0, 0.0)
        return Progress(False, STAGES[self._stage], self._behind, self._eta())

    async def serving(self) -> bool:
        """Every source partition served by a scoring worker seen within PRESENCE_TTL_MS (machine time)."""
        return self.source <= set(await self._served())

    async def _served(self) -> dict[str, int]:
        """"topic:partition" → the furthest offset a live worker has folded it up to."""
        fresh = int(time.time() * 1000) - PRESENCE_TTL_MS
        async with self._sessions() as session:
            rows = (await session.execute(
                select(ScoringPresence.partitions).where(ScoringPresence.seen_ms >= fresh)
            )).scalars()
            served: dict[str, int] = {}
            for row in rows:
                for where, offset in orjson.loads(row).items():
                    served[where] = max(served.get(where, 0), int(offset))
        return served

    def _eta(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 1.0 or b0 <= b1:
            return None
        rate = (b0 - b1) / (t1 - t0)
        return b1 / rate

    # --- the chain -------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        # A screen waits on this answer: ask again every second at most while the broker is away.
        await consume_with_reconnect(
            self._new_consumer, self._until_caught_up, name="readiness", backoff=Backoff(first=0.5, most=1.0)
        )

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap,
            group_id=self.group,  # only to read its committed offsets: never subscribes or commits
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )

    async def _until_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        while not self.caught_up.is_set():
            await self.check(consumer)
            if not self.caught_up.is_set():
                await asyncio.sleep(self._interval)
        # Live: what is still in flight through the pipeline, for the console's health page.
        while True:
            self._live_behind = await self._measure(consumer, {})
            await asyncio.sleep(LIVE_EVERY)

    def live_behind(self) -> int | None:
        """Once caught up: events and messages in flight through the pipeline as last measured (every
        LIVE_EVERY seconds); None until measured."""
        return self._live_behind

    async def check(self, consumer: AIOKafkaConsumer) -> None:
        """One pass: advance through every stage that is done; measure what is behind."""
        if self.ledger_end is None:
            async with self._sessions() as session:
                self.ledger_end = int((await session.execute(select(func.max(LedgerEntry.seq)))).scalar() or 0)
            log.info("catching up to ledger sequence %d", self.ledger_end)
        async with self._sessions() as session:
            cursor = await relay_cursor(session)
        committed = await self._committed(consumer, [*self.event_tps, *self.credit_tps])
        ledger_behind = max(0, self.ledger_end - cursor)
        if self._stage == 0 and ledger_behind == 0:
            self._targets["scoring"] = await log_ends(consumer, self.event_tps)
            self._stage = 1
        if self._stage == 1 and _behind(self._targets["scoring"], committed) == 0:
            self._targets["credits"] = await log_ends(consumer, self.credit_tps)
            self._stage = 2
        if self._stage == 2 and _behind(self._targets["credits"], committed) == 0:
            self._targets["read model"] = await log_ends(consumer, self.snapshot_tps)
            self._stage = 3
        if self._stage == 3 and _behind(self._targets["read model"], self._read_positions()) == 0:
            self._stage = len(STAGES)
            self._behind = 0
            log.info("caught up with the ledger as of start (sequence %d)", self.ledger_end)
            self.caught_up.set()
            return
        # What is still to go: the ledger not yet published, plus each stage's backlog against its target
        # (or, for a stage not reached yet, against the topic's end now).
        behind = await self._measure(consumer, self._targets, ledger_behind=ledger_behind, committed=committed)
        self._behind = behind
        self._samples.append((time.monotonic(), behind))

    async def _measure(
        self, consumer: AIOKafkaConsumer, targets: Mapping[str, Mapping[TopicPartition, int]], *,
        ledger_behind: int | None = None, committed: Mapping[TopicPartition, int] | None = None,
    ) -> int:
        """The ledger not yet published, plus each stage's backlog against its target in `targets` (or the
        topic's end now)."""
        if ledger_behind is None:
            async with self._sessions() as session:
                end = int((await session.execute(select(func.max(LedgerEntry.seq)))).scalar() or 0)
                cursor = await relay_cursor(session)
            ledger_behind = max(0, end - cursor)
        if committed is None:
            committed = await self._committed(consumer, [*self.event_tps, *self.credit_tps])
        behind = ledger_behind
        behind += _behind(targets.get("scoring") or await consumer.end_offsets(self.event_tps), committed)
        behind += _behind(targets.get("credits") or await consumer.end_offsets(self.credit_tps), committed)
        behind += _behind(targets.get("read model") or await consumer.end_offsets(self.snapshot_tps),
                          self._read_positions())
        return behind

    async def _committed(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """How far scoring has folded each partition: the group's committed offset, or further where a live
        worker says it has folded more (Faust commits only up to the first offset not yet acknowledged)."""
        offsets = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        served = await self._served()
        return {tp: max(offset or 0, served.get(f"{tp.topic}:{tp.partition}", 0))
                for tp, offset in zip(tps, offsets, strict=True)}
