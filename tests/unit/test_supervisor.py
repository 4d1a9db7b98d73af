"""The supervisor of `salespulse up` (services/cli/supervisor.py) with real child processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.cli.supervisor import GIVE_UP_AFTER, GaveUp, Process, Supervised, Supervisor
from services.common.backoff import Backoff


def starter(code: str, starts: list[int], third: asyncio.Event | None = None) -> Callable[[], Awaitable[Process]]:
    async def start() -> Process:
        starts.append(1)
        if third is not None and len(starts) == 3:
            third.set()
        return await asyncio.create_subprocess_exec(sys.executable, "-c", code)

    return start


def quick() -> Backoff:
    return Backoff(first=0.01, most=0.02)


async def test_a_child_that_exits_is_started_again_and_counted(tmp_path: Path) -> None:
    starts: list[int] = []
    # Exits at once the first two times, then runs until stopped.
    marker = str(tmp_path / "runs")
    code = (f"import os, sys, time\np = {marker!r}\nn = int(open(p).read()) if os.path.exists(p) else 0\n"
            "open(p, 'w').write(str(n + 1))\nif n < 2: sys.exit(5)\ntime.sleep(60)")
    third = asyncio.Event()
    child = Supervised("worker", starter(code, starts, third), backoff=quick())
    lines: list[str] = []
    supervisor = Supervisor([child], out=lines.append)
    await supervisor.start(child)
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    await asyncio.wait_for(third.wait(), timeout=30)
    stop.set()
    await running
    await supervisor.stop_children(["worker"])
    assert len(starts) == 3
    assert supervisor.registry.get_sample_value("salespulse_supervisor_restarts_total", {"child": "worker"}) == 2
    assert all("worker exited (code 5)" in line for line in lines) and len(lines) == 2


async def test_a_child_that_keeps_failing_at_start_stops_the_stack_with_a_message_naming_it() -> None:
    starts: list[int] = []
    code = "import sys; print('cannot open the database', flush=True); sys.exit(3)"
    child = Supervised("scoring", starter(code, starts), backoff=quick())
    supervisor = Supervisor([child], out=lambda line: None)
    await supervisor.start(child)
    with pytest.raises(GaveUp) as failed:
        await asyncio.wait_for(supervisor.run(asyncio.Event()), timeout=30)
    assert len(starts) == GIVE_UP_AFTER
    message = str(failed.value)
    assert message.startswith("scoring keeps failing at start (exit code 3, 5 times in a row")
