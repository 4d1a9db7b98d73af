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


async def test_a_renewal_runs_the_repair_between_two_looks_and_no_stopped_child_counts_as_a_crash() -> None:
    """The repair stops and starts children; asked for while the supervisor watches them, none of those exits
    may be taken for a crash (which would start a second copy after a back-off)."""
    forever = "import time; time.sleep(60)"
    broker_starts: list[int] = []
    worker_starts: list[int] = []
    broker = Supervised("broker", starter(forever, broker_starts), backoff=quick())
    worker = Supervised("worker", starter(forever, worker_starts), backoff=quick())
    lines: list[str] = []

    async def repair() -> None:
        await supervisor.stop_children(["worker", "broker"])
        await supervisor.start(broker)
        await supervisor.start(worker)

    supervisor = Supervisor([broker, worker], broker="broker", repair=repair, out=lines.append)
    await supervisor.start(broker)
    await supervisor.start(worker)
    first = (broker.proc, worker.proc)
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    await asyncio.wait_for(supervisor.renew("grew by 50,000 records"), timeout=30)
    assert (broker.proc, worker.proc) != first and all(p.returncode is not None for p in first if p)
    assert broker.proc is not None and broker.proc.returncode is None
    # A second renewal is served only after the loop took its next look at the children: an exit of the first
    # repair's taken for a crash would have been restarted by then.
    await asyncio.wait_for(supervisor.renew("again"), timeout=30)
    stop.set()
    await running
    await supervisor.stop_children(["worker", "broker"])
    assert (len(broker_starts), len(worker_starts)) == (3, 3)
    assert supervisor.registry.get_sample_value("salespulse_supervisor_broker_renewals_total") == 2
    assert supervisor.registry.get_sample_value("salespulse_supervisor_restarts_total", {"child": "worker"}) == 0
    assert lines[0].startswith("salespulse: renewing the embedded broker (grew by 50,000 records)")
    assert "renewed in" in lines[1] and len(lines) == 4


async def test_renewing_without_an_embedded_broker_is_refused() -> None:
    supervisor = Supervisor([], out=lambda line: None)
    with pytest.raises(RuntimeError, match="no embedded broker"):
        await supervisor.renew("asked")
