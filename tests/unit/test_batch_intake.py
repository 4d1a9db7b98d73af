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


def _records(offsets: range, partition: int = 0) -> list[SimpleNamespace]:
    return [SimpleNamespace(topic="events", partition=partition, offset=offset) for offset in offsets]


def _put(intake: BatchIntake, offsets: range, partition: int = 0) -> None:
    intake.put_records(("events", partition), _records(offsets, partition),
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


def test_records_fetched_again_after_a_seek_replace_the_buffered_copies_so_each_partition_stays_in_order() -> None:
    async def run() -> list[tuple[int, int]]:
        intake = _intake()
        _put(intake, range(10), partition=0)
        _put(intake, range(5), partition=1)
        _put(intake, range(6, 12), partition=0)  # a seek back to 6 (a rebalance): 6..9 again, then 10, 11
        return [(r.partition, r.offset) for r in await intake.take(100, 0.0)]

    taken = asyncio.run(run())
    assert [o for p, o in taken if p == 0] == list(range(12))
    assert [o for p, o in taken if p == 1] == list(range(5))


def test_a_full_buffer_pauses_the_partition_once_and_resumes_it_below_the_low_water_with_a_batch_left() -> None:
    async def run() -> list[str]:
        calls: list[str] = []
        app = faust.App("test-intake-pressure", broker="kafka://127.0.0.1:1", store="memory://")
        app.flow_control.resume()
        # Batches of 10: pause at 30 buffered, resume below 20, so a batch is left while fetching resumes.
        intake = BatchIntake(app, app.topic("events", key_type=bytes, value_type=bytes), high_water=30, low_water=20)
        for start in range(0, 40, 8):
            intake.put_records(("events", 0), _records(range(start, start + 8)),
                               on_pressure_high=lambda: calls.append("pause"),
                               on_pressure_drop=lambda: calls.append("resume"))
        for _ in range(3):
            calls.append(f"buffered {intake.qsize()}")
            await intake.take(10, 0.0)
        calls.append(f"buffered {intake.qsize()}")
        return calls

    assert asyncio.run(run()) == ["pause", "buffered 40", "buffered 30", "buffered 20", "resume", "buffered 10"]


def test_the_conductor_delivering_to_a_batch_topic_is_an_error_not_a_silent_queue() -> None:
    intake = _intake()
    try:
        intake.put_nowait_enhanced(object(), on_pressure_high=lambda: None, on_pressure_drop=lambda: None)
    except RuntimeError as exc:
        assert "LeanConsumer" in str(exc)
    else:
        raise AssertionError("delivered through the conductor without an error")
