"""Batch intake: the scoring agents' source topics delivered straight into a batch buffer.

A Faust agent receives each message through a stream: a queue, a per-event iterator that waits on several
futures, processors, and a task per wait — measured here at ~80 µs of the worker's single core per message,
most of the worker's time. Here the consumer hands each partition's fetched records to a plain list in one
call (`put_records`, from `LeanConsumer` in services/scoring/faust_internals.py, which `attach_queue` hooks
this buffer into), and the agent loop takes whole batches from it. The items are aiokafka's records as
fetched (`topic`, `partition`, `offset`, `timestamp` in ms, raw `key` and `value` bytes): no Faust message or
Event is built per record. Everything else stays Faust's: group membership and assignment, table recovery,
offset commits (`ack` marks records done, as a stream would after processing them), the web server.

Back-pressure: at `high_water` buffered events the partition that reached it stops fetching, and resumes when
the agent has taken the buffer below `low_water`. Faust's queue resumes at half the high water; here the low
water is at least a whole batch (the caller sets it so), so the buffer still holds one while fetching resumes:
resumed only when taken empty, the agent waited out a fetch round trip between every two batches of a backlog
(`bench.scoring` with the default batches: 31–39k events/s before, 40–45k after).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust

from services.common.background import wait_set
from services.scoring.faust_internals import acknowledge, attach_queue

__all__ = ["BatchIntake"]


class BatchIntake:
    """The queue of a Faust topic, collecting its messages for one agent loop."""

    def __init__(self, app: faust.App, topic: faust.TopicT, *, high_water: int, low_water: int | None = None) -> None:
        self.app = app
        self.topic = topic
        self.high_water = high_water
        self.low_water = high_water // 2 if low_water is None else low_water
        self._events: list[Any] = []
        self._arrived = asyncio.Event()
        self._pressure_drops: dict[Any, Callable[[], None]] = {}
        self._newest: dict[Any, int] = {}  # the highest offset buffered per partition since the last take
        attach_queue(app, topic, self)

    # -- what the consumer delivers to -------------------------------------------------------------------

    def put_records(
        self,
        tp: Any,
        records: Sequence[Any],
        *,
        on_pressure_high: Callable[[], None],
        on_pressure_drop: Callable[[], None],
    ) -> None:
        """Buffer one partition's fetched records (in offset order)."""
        if not records:
            return
        newest = self._newest.get(tp)
        first = records[0].offset
        if newest is not None and first <= newest:
            # Fetched again from an earlier offset (a seek after a rebalance): drop the buffered copies from
            # there on, so each partition stays in offset order — the agents' sequence marks rely on it.
            topic, partition = tp
            self._events = [
                m for m in self._events if m.offset < first or m.partition != partition or m.topic != topic
            ]
        self._newest[tp] = records[-1].offset
        self._events.extend(records)
        self._arrived.set()
        if len(self._events) >= self.high_water and tp not in self._pressure_drops:
            self._pressure_drops[tp] = on_pressure_drop
            on_pressure_high()

    # -- the conductor's queue interface: subscribed through it, delivered to by nothing but the consumer -----

    def put_nowait_enhanced(self, value: Any, **_: Any) -> None:
        raise RuntimeError(
            f"the conductor delivered {value!r} to a batch topic: its records are handed over by LeanConsumer "
            "(services/scoring/faust_internals.py), which this worker is not running"
        )

    def full(self) -> bool:
        return False

    def empty(self) -> bool:
        return not self._events

    def qsize(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        self._events.clear()

    # -- the agent side ----------------------------------------------------------------------------------

    async def take(self, max_events: int, within: float, backlog: int | None = None) -> list[Any]:
        """A batch as soon as `max_events` are buffered, or `within` seconds after the first one arrived,
        whichever comes first; never while Faust's flow control is off (a rebalance). It holds what is buffered
        then, up to `backlog` events (default `max_events`): a backlog that built up while the last batch was
        folded goes in fewer, larger batches (each touched key written once per batch), while a lone event
        still waits at most `within`."""
        flow = self.app.flow_control
        deadline: float | None = None
        while True:
            await flow.acquire()
            if self._events:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + within
                if len(self._events) >= max_events or now >= deadline:
                    if flow.is_active():
                        break
                    continue
            self._arrived.clear()
            await wait_set(self._arrived, None if deadline is None else max(0.0, deadline - time.monotonic()))
        size = max(max_events, backlog or 0)
        batch = self._events[:size]
        del self._events[:size]
        if not self._events:
            self._newest.clear()
        if self._pressure_drops and len(self._events) < self.low_water:
            drops, self._pressure_drops = self._pressure_drops, {}
            for resume in drops.values():
                resume()
        return batch

    def discard(self, partitions: Iterable[Any]) -> int:
        """Drop buffered events of partitions this worker no longer owns; returns how many."""
        gone = {(tp[0], tp[1]) for tp in partitions}
        kept = [record for record in self._events if (record.topic, record.partition) not in gone]
        dropped = len(self._events) - len(kept)
        self._events = kept
        for tp in list(self._pressure_drops):
            if (tp[0], tp[1]) in gone:
                del self._pressure_drops[tp]
        for tp in list(self._newest):
            if (tp[0], tp[1]) in gone:
                del self._newest[tp]
        return dropped

    def ack(self, records: Iterable[Any]) -> dict[tuple[str, int], int]:
        """Mark records processed (Faust commits offsets up to acknowledged records only); returns the highest
        offset acknowledged per (topic, partition)."""
        return acknowledge(self.app.consumer, records)
