"""Keeping the embedded broker's cost flat as history grows: `salespulse up` renews it once it has grown.

The embedded broker (Tansu, memory storage) keeps each record batch as an object and, for every fetch that
returns data, lists every batch the partition holds to find where to start: a fetch's cost grows with the
partition's whole history (measured: 0.65–1 µs of broker CPU per batch held, so 13–19 ms per fetch at 20,000
batches; `python -m bench.broker`; docs/BENCHMARKS.md, "Eleventh run"). Its DeleteRecords is not
implemented, so old records cannot be trimmed. Left alone, a stack that runs for months would slow down until
every push took seconds, and the broker's memory would grow with it.

`salespulse up` already knows how to rebuild the embedded broker from the ledger (the repair it runs when the
broker dies: new topics, the ledger after the scoring checkpoint replayed, every service started on them). This
module asks for the same thing on purpose: every `SALESPULSE_BROKER_RENEW_CHECK` seconds it reads the log end of
every partition, and once one partition has grown by `SALESPULSE_BROKER_RENEW_RECORDS` records since the last
renewal (records bound the batches from above), the broker is renewed at the first look that finds no new
event: a quiet moment, when the screens' few seconds of reconnecting go unnoticed. A floor that is never quiet
for that long is renewed anyway once the growth reaches `FORCED_AFTER` times the setting: the broker's cost
under a light steady load doubles with every few thousand batches a partition holds (`python -m bench.broker
--steady`), so waiting long for a quiet moment costs more than the renewal. A bulk load (events arriving faster
than `BULK_RATE` a partition over a look) grows by records in big batches, which cost little: it does not count
towards a forced renewal, and is renewed after it, at a quiet moment. Ingest keeps accepting events
throughout; what it accepts is replayed with the rest."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition

from services.common.background import wait_set
from services.common.kafka import KeptConsumer
from services.common.settings import Settings
from services.common.topics import ACTIVITIES, DEALS, topic_name

log = logging.getLogger("salespulse.renewal")

Ends = Mapping[TopicPartition, int]

FORCED_AFTER = 2
"""A due renewal waits for a quiet look, up to this many times SALESPULSE_BROKER_RENEW_RECORDS of growth."""

BULK_RATE = 250
"""Records a second into one events partition, over a look, above which the look counts as a bulk load (an import,
the demo's history), not a floor: its growth is big batches, which cost little, and does not count towards a
forced renewal. 1,000 events a second over four partitions: beyond what the embedded broker carries as a steady
floor (docs/BENCHMARKS.md, "Nineteenth round"), well below an NDJSON import."""


@dataclass(frozen=True)
class RenewalPolicy:
    """When the broker's growth makes a renewal due. `records` 0: never."""

    records: int

    def reason(self, grown: int, events_arrived: bool, floor_grown: int | None = None) -> str | None:
        """Why to renew now, given the largest partition's growth since the last renewal, whether new events
        arrived since the last look, and how much of the growth came at a floor's pace (not in bulk; default: all
        of it); None: not now."""
        if self.records <= 0 or grown < self.records:
            return None
        if not events_arrived:
            return f"a partition grew by {grown:,} records (SALESPULSE_BROKER_RENEW_RECORDS={self.records:,}), and " \
                   "no event arrived since the last look"
        if (grown if floor_grown is None else floor_grown) >= FORCED_AFTER * self.records:
            return f"a partition grew by {grown:,} records, {FORCED_AFTER} times SALESPULSE_BROKER_RENEW_RECORDS " \
                   "with no quiet moment"
        return None  # due: wait for a look with no new event


def growth(baseline: Ends, ends: Ends) -> int | None:
    """Records the largest-growing partition gained since `baseline`; None when the broker is not the one the
    baseline was taken on (a partition went back: it restarted and lost its topics)."""
    grown = 0
    for tp, end in ends.items():
        before = baseline.get(tp, 0)
        if end < before:
            return None
        grown = max(grown, end - before)
    return grown


class BrokerWatch:
    """Reads the embedded broker's partition ends and asks `renew` for a renewal when the policy says so."""

    def __init__(
        self,
        settings: Settings,
        renew: Callable[[str], Awaitable[None]],
        ready: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._renew = renew
        self._ready = ready
        self.policy = RenewalPolicy(settings.broker_renew_records)
        self._events = {topic_name(settings, t) for t in (DEALS, ACTIVITIES)}
        self._consumer = KeptConsumer(settings)

    async def ends(self) -> dict[TopicPartition, int]:
        """The log end of every partition of every topic the broker holds (ListOffsets: cheap, no fetch)."""
        consumer = await self._consumer.get()
        cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001  (every topic, Faust's changelogs too)
        tps = [TopicPartition(topic, p)
               for topic in cluster.topics() for p in cluster.partitions_for_topic(topic) or ()]
        return dict(await consumer.end_offsets(tps)) if tps else {}

    async def run(self, stop: asyncio.Event) -> None:
        if self.policy.records <= 0:
            return
        interval = self._settings.broker_renew_check
        baseline: dict[TopicPartition, int] | None = None
        previous: dict[TopicPartition, int] = {}  # the last look's ends
        floor_grown = 0  # growth since the baseline in looks that were not a bulk load
        try:
            while not await wait_set(stop, interval):
                try:
                    ends = await self.ends()
                except Exception as exc:  # noqa: BLE001  (a broker being repaired: look again next time)
                    log.info("could not read the broker's partition ends (%s: %s); next look in %.0f s",
                             type(exc).__name__, exc, interval)
                    await self.close()
                    continue
                if baseline is None:  # the first look, or the first after a renewal
                    baseline, previous, floor_grown = ends, ends, 0
                    continue
                grown = growth(baseline, ends)
                step = growth(previous, ends)
                if grown is None or step is None:  # the broker was rebuilt under us (a crash's repair): wait for it
                    await self.close()
                    await self._ready()
                    baseline = None
                    continue
                arrived = [end - previous.get(tp, 0) for tp, end in ends.items() if tp.topic in self._events]
                if max(arrived, default=0) / interval <= BULK_RATE:  # not a bulk load
                    floor_grown += step
                reason = self.policy.reason(grown, any(arrived), floor_grown)
                previous = ends
                if reason is None:
                    continue
                started = time.monotonic()
                await self.close()
                await self._renew(reason)
                await self._ready()  # the replay and every rep's snapshot republished: not growth
                log.info("renewed and caught up in %.1f s", time.monotonic() - started)
                baseline = None
        finally:
            await self.close()

    async def close(self) -> None:
        await self._consumer.close()


__all__ = ["BULK_RATE", "FORCED_AFTER", "BrokerWatch", "RenewalPolicy", "growth"]
