"""The agent loop acknowledges a batch only when no rebalance began while it was folded (`agents.run_agent`).

Faust forgets the acknowledgements of the partitions it revokes when a rebalance begins; a batch that ends after
that and acknowledged its events would leave their offsets in Faust's books, where they could later move a
partition's commit back and hold it there. Unacknowledged, the events are fetched again and recognised."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from services.scoring.agents import run_agent


class Intake:
    """Hands out the given batches, then (the loop done with the last one) says so and waits for ever; records
    what is acknowledged."""

    def __init__(self, *batches: list[Any]) -> None:
        self.batches = list(batches)
        self.acked: list[list[Any]] = []
        self.drained = asyncio.Event()

    async def take(self, max_events: int, within: float, backlog: int | None = None) -> list[Any]:
        if not self.batches:
            self.drained.set()
            await asyncio.Event().wait()
        return self.batches.pop(0)

    def ack(self, records: list[Any]) -> dict[tuple[str, int], int]:
        self.acked.append(list(records))
        return {(r.topic, r.partition): r.offset for r in records}


def record(offset: int) -> Any:
    return SimpleNamespace(topic="t.credits", partition=0, offset=offset)


@pytest.mark.parametrize("rebalance_during", [None, 0, 1])
def test_a_batch_folded_across_a_rebalance_is_not_acknowledged(rebalance_during: int | None) -> None:
    batches = [[record(0), record(1)], [record(2)]]
    rebalances = [0]
    folded: list[int] = []

    async def fold(ctx: Any, events: list[Any]) -> None:
        if len(folded) == rebalance_during:
            rebalances[0] += 1  # a rebalance begins while this batch is folded
        folded.append(len(events))
        await asyncio.sleep(0)

    ctx = SimpleNamespace(
        settings=SimpleNamespace(scoring_batch_size=10, scoring_batch_within=0.0, scoring_batch_max=10),
        in_flight={}, processed={}, rebalances=lambda: rebalances[0],
    )

    async def scenario() -> Intake:
        intake = Intake(*batches)
        loop = asyncio.create_task(run_agent(ctx, "rep-kpis", intake, fold))  # type: ignore[arg-type]
        await asyncio.wait_for(intake.drained.wait(), timeout=10)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
        return intake

    intake = asyncio.run(scenario())
    assert folded == [2, 1]
    kept = [batch for n, batch in enumerate(batches) if n != rebalance_during]
    assert intake.acked == kept
    assert ctx.processed == ({("t.credits", 0): max(r.offset for b in kept for r in b) + 1} if kept else {})
