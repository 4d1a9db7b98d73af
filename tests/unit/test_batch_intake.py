"""The scoring agents' batch intake: a backlog goes in larger batches, a lone event waits at most `within`."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust

from services.scoring.intake import BatchIntake


def _intake() -> BatchIntake:
    app = faust.App("test-intake", broker="kafka://127.0.0.1:1", store="memory://")
    app.flow_control.resume()  # as a running worker's is
    return BatchIntake(app, app.topic("events", key_type=bytes, value_type=bytes), high_water=100_000)


def _put(intake: BatchIntake, offsets: range) -> None:
    for offset in offsets:
        intake.put_nowait_enhanced(SimpleNamespace(tp=("events", 0), offset=offset),
                                   on_pressure_high=lambda: None, on_pressure_drop=lambda: None)


def test_a_backlog_is_taken_up_to_the_backlog_size_in_order() -> None:
    async def run() -> list[list[int]]:
        intake = _intake()
        _put(intake, range(25))
        return [[m.offset for m in await intake.take(10, 5.0, 20)], [m.offset for m in await intake.take(10, 0.01)]]

    first, rest = asyncio.run(run())
    assert first == list(range(20))  # more than the 10 that start a batch: what was buffered, up to 20
    assert rest == list(range(20, 25))


def test_a_lone_event_is_taken_without_waiting_for_a_full_batch() -> None:
    async def run() -> int:
        intake = _intake()
        _put(intake, range(1))
        # `within` passes long before the deadline; without it the take would wait for 2,000 events forever.
        return len(await asyncio.wait_for(intake.take(2000, 0.05, 10_000), timeout=30))

    assert asyncio.run(run()) == 1
