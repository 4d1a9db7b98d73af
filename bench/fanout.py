"""Fan-out: event-to-screen latency with N connected screens at R events/s, and memory per idle screen.

    .venv/bin/python -m bench.fanout [--screens 1000] [--rate 1000] [--seconds 30] [--idle 10000]

Latency is measured from the client side: the generator posts activities (10 ms batches) and records
when ingest answered 202; each rep screen records when its pushed `progress` first shows the new count.
The figure is therefore 202-to-screen (the contract's freshness promise), through ledger, relay, Kafka,
scoring, the read model and the hub, all on this machine, with the client in its own process.
Memory: the gateway's RSS before and after N idle board screens connect, divided by N."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import orjson
import uvloop
import websockets

from bench.common import Figure, bench_stack, print_figures, sampled, summarize_py_spy
from services.common.broker import wait_for_port
from tests.support.stack import ROOT, free_port

REPS = 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def seed(stack: object) -> None:
    api, headers = stack.api, stack.headers  # type: ignore[attr-defined]
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        client.put("/v1/teams/floor", json={"name": "Floor"}).raise_for_status()
        for i in range(REPS):
            client.put(f"/v1/reps/r{i}", json={"name": f"Rep {i}", "team_id": "floor"}).raise_for_status()
        for b in range(5):
            board = {"title": f"Board {b}", "metric": "activities", "period": "day", "size": 10}
            client.put(f"/v1/boards/b{b}", json=board).raise_for_status()


async def _latency_run(ws_base: str, ingest: str, key: str, screens: int, rate: int, seconds: float) -> dict:  # type: ignore[type-arg]
    """Runs in the client process: connects screens, drives events, returns latencies (s)."""
    rep_screens = screens * 4 // 5
    watched = min(REPS, rep_screens)  # events go to reps that have a screen
    posted: dict[tuple[str, int], float] = {}  # (rep, count) -> time ingest acknowledged it
    seen: dict[tuple[str, int], float] = {}
    counts: dict[str, int] = {}
    sockets = []

    async def rep_screen(rep: str) -> None:
        async with websockets.connect(f"{ws_base}/v1/ws/reps/{rep}?token={key}", max_size=None) as ws:
            sockets.append(ws)
            async for raw in ws:
                now = time.monotonic()
                message = orjson.loads(raw)  # the generator's CPU is the stack's loss on two cores: parse fast
                if message.get("type") != "progress":
                    continue
                count = message["kpis"]["year"]["kpis"]["activities"]
                seen.setdefault((rep, count), now)

    async def board_screen(board: str) -> None:
        async with websockets.connect(f"{ws_base}/v1/ws/boards/{board}?token={key}", max_size=None) as ws:
            sockets.append(ws)
            async for _ in ws:
                pass

    tasks = [asyncio.create_task(rep_screen(f"r{i % watched}")) for i in range(rep_screens)]
    tasks += [asyncio.create_task(board_screen(f"b{i % 5}")) for i in range(screens - rep_screens)]
    deadline = time.monotonic() + 120
    while len(sockets) < screens:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(sockets)} of {screens} screens connected")
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)
    run = uuid.uuid4().hex[:6]
    rng = random.Random(7)
    per_tick = max(1, rate // 100)
    n = 0
    # aiohttp, as bench.ingest drives ingest: httpx spent ~70 % of this process's CPU in its connection pool's
    # bookkeeping, CPU the two cores took from the stack under test.
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as client:
        start = time.monotonic()
        tick = start
        late = 0.0
        inflight: set[asyncio.Task[None]] = set()

        async def send(batch: list[dict], reps: list[str]) -> None:  # type: ignore[type-arg]
            async with client.post(f"{ingest}/v1/events", data=orjson.dumps(batch)) as r:
                acked = time.monotonic()
                assert r.status == 202, await r.text()
            for rep in reps:
                counts[rep] = counts.get(rep, 0) + 1
                posted[(rep, counts[rep])] = acked

        for _ in range(round(seconds * 100)):  # one batch of rate/100 events per 10 ms tick
            reps = [f"r{rng.randrange(watched)}" for _ in range(per_tick)]
            now_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            batch = [
                {
                    "event_id": f"{run}-{n + i}",
                    "type": "activity",
                    "occurred_at": now_iso,
                    "rep_id": rep,
                    "kind": "call",
                }
                for i, rep in enumerate(reps)
            ]
            n += per_tick
            task = asyncio.create_task(send(batch, reps))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            late = time.monotonic() - tick  # how far behind its schedule this batch went out
            tick += 0.01
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        # Driving took `seconds` when the last batch went out on its tick (within one tick: the timer's own jitter),
        # and as much longer as it was late when the sends fell behind.
        driving = seconds + (late if late > 0.01 else 0.0)
        await asyncio.gather(*inflight)
    await asyncio.sleep(5)  # let the last pushes arrive
    for task in tasks:
        task.cancel()
    # The count a screen shows can jump past a value (coalescing): an event is on screen at the first
    # message showing a count >= its own.
    latencies = []
    missing = 0
    by_rep: dict[str, list[tuple[int, float]]] = {}
    for (rep, count), t in seen.items():
        by_rep.setdefault(rep, []).append((count, t))
    for rep in by_rep:
        by_rep[rep].sort()
    for (rep, count), acked in posted.items():
        shown = next((t for c, t in by_rep.get(rep, []) if c >= count), None)
        if shown is None:
            missing += 1
        else:
            latencies.append(max(0.0, shown - acked))
    # Events driven per second of driving: every tick's batch was sent, on schedule or late (then the driving took
    # longer than `seconds`); the wait for the last answers is not driving (it made 1,000/s read 999.6).
    return {"events": n, "seconds": driving, "latencies": latencies, "missing": missing}


def _client(args: tuple) -> dict:  # type: ignore[type-arg]
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    # uvloop, as the services run (uvicorn's): the generator's event loop is CPU the stack under test loses.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_latency_run(*args))


async def _idle(ws_base: str, key: str, n: int, hold: float, ready: object) -> int:
    sockets = []
    for i in range(n):
        sockets.append(await websockets.connect(f"{ws_base}/v1/ws/boards/b{i % 5}?token={key}", max_size=None))
        await sockets[-1].recv()
    ready.set()  # type: ignore[attr-defined]
    await asyncio.sleep(hold)
    for ws in sockets:
        await ws.close()
    return len(sockets)


def _idle_client(args: tuple) -> int:  # type: ignore[type-arg]
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    return asyncio.run(_idle(*args))


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


REFERENCE_SERVER = """
import asyncio, sys
import websockets

async def screen(ws):
    await ws.send('{"type": "standings", "entries": []}')
    await ws.wait_closed()

async def main():
    async with websockets.serve(screen, "127.0.0.1", int(sys.argv[1]), compression=None, max_size=None):
        await asyncio.Future()

asyncio.run(main())
"""


def idle_memory(ws_base: str, key: str, pid: int, n: int) -> float:
    """KiB of RSS per idle screen that `pid` gains while `n` screens hold a connection to `ws_base`."""
    ctx = multiprocessing.get_context("spawn")
    before = rss_kib(pid)
    ready = ctx.Manager().Event()
    proc = ctx.Process(target=_idle_client, args=((ws_base, key, n, 20.0, ready),))
    proc.start()
    if not ready.wait(timeout=600):
        raise RuntimeError("idle screens did not connect")
    time.sleep(3)  # let the server settle its buffers; this is a measurement, not a synchronisation
    after = rss_kib(pid)
    proc.join()
    return (after - before) / n


def reference_memory(n: int) -> float:
    """The same measurement against a bare `websockets` server that sends one message per connection."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", REFERENCE_SERVER, str(port)], cwd=ROOT)
    try:
        wait_for_port(port)
        return idle_memory(f"ws://127.0.0.1:{port}", "none", proc.pid, n)
    finally:
        proc.terminate()
        proc.wait()


def run(
    screens: int = 1000, rate: int = 1000, seconds: float = 30, idle: int = 10_000, py_spy: str | None = None
) -> list[Figure]:
    """Latency at `screens` screens and `rate` events/s, and memory per idle screen (with its reference)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    ctx = multiprocessing.get_context("spawn")
    figures = []
    with bench_stack("sqlite", SALESPULSE_WS_MAX_CONNECTIONS="20000", SALESPULSE_WS_MAX_PER_KEY="20000") as stack:
        stack.start()
        seed(stack)
        time.sleep(2)  # let the seeded roster reach the read model before the clock starts
        with ctx.Pool(1) as pool, sampled(stack.services["api"].proc.pid, py_spy):
            result = pool.apply(_client, ((stack.ws, stack.ingest, stack.admin_key, screens, rate, seconds),))
        achieved = result["events"] / result["seconds"]
        where = f"{screens:,} screens, {achieved:,.0f} events/s achieved"
        figures.append(Figure("fanout", f"events/s driven at {screens:,} screens", achieved, "events/s", target=rate))
        figures.append(
            Figure(
                "fanout",
                "events never shown on a screen",
                result["missing"],
                "events",
                target=0,
                higher_is_better=False,
            )
        )
        lat = sorted(result["latencies"])
        market = {"reference": 60_000.0, "reference_label": "market leaderboards refresh every minute"}
        for q, target in ((0.5, 50.0), (0.95, None), (0.99, 250.0)):
            value = quantile(lat, q) * 1000 if lat else float("nan")
            figures.append(
                Figure(
                    "fanout",
                    f"202-to-screen p{int(q * 100)}, {where}",
                    value,
                    "ms",
                    target=target,
                    higher_is_better=False,
                    x=screens,
                    series=f"202-to-screen p{int(q * 100)}",
                    x_label="screens connected",
                    **market,
                )  # type: ignore[arg-type]
            )
        if idle:
            per = idle_memory(stack.ws, stack.admin_key, stack.services["api"].proc.pid, idle)
    if idle:
        figures.append(
            Figure(
                "fanout",
                f"memory per idle screen, {idle:,} on one gateway",
                per,
                "KiB",
                target=30,
                higher_is_better=False,
                reference=reference_memory(idle),
                reference_label="bare websockets server, same clients",
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screens", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--py-spy", help="sample the gateway with py-spy during the latency run into this file")
    args = parser.parse_args()
    print_figures(run(args.screens, args.rate, args.seconds, args.idle, args.py_spy))
    if args.py_spy:
        summarize_py_spy(args.py_spy)


if __name__ == "__main__":
    main()
