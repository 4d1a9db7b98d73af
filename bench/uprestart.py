"""`salespulse up` restarted with N events in its ledger: launch → every KPI back (DESIGN: ≤ 30 s at
1,000,000 events, flat in history), at several ledger sizes, next to the same restart without a checkpoint.

    .venv/bin/python -m bench.uprestart [--sizes 100000,300000,1000000]

One data directory and SQLite ledger grow through the sizes. At each size:

1. `salespulse up` (no demo; the shipped defaults) runs, the ledger is filled up to the size with the simulated
   floor (NDJSON batches of 1,000 from a client process), and once scoring has folded everything and its
   checkpoint holds the whole ledger, every rep's fiscal-year KPIs are read; then `up` is stopped (SIGINT, as
   Ctrl-C). The embedded broker keeps nothing: the next `up` starts on an empty one.
2. **Measured:** `up` is launched again and timed until every rep's KPIs equal those read before the stop.
3. **Same-run reference:** the checkpoint is removed (the restart then replays the whole ledger, as every
   restart did before issue 22), `up` launched and timed the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from bench.common import Figure, print_figures
from bench.ingest import run_client
from bench.scoring import floor_events
from tests.support.stack import ROOT, up_port_env, up_ports, wait_until

TARGET_SECONDS = 30.0
YEAR_OF = "2026-01-10"  # the floor's simulated days start on 2026-01-05: one fiscal year holds them all


class Up:
    """`salespulse up` as a subprocess on its own ports, data directory and SQLite ledger."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.db = data / "salespulse.db"
        self.key = "sp_bench_" + os.urandom(8).hex()
        self.ports = up_ports("broker")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def ingest(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    def start(self) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env.update(up_port_env(self.ports))
        env.update({"SALESPULSE_DATA_DIR": str(self.data), "SALESPULSE_ADMIN_KEY": self.key,
                    "SALESPULSE_DATABASE_URL": f"sqlite+aiosqlite:///{self.db}", "SALESPULSE_LOG_LEVEL": "WARNING"})
        launched = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli.main", "up"], env=env, cwd=ROOT,
                                     stdout=open(self.data / "up.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                     start_new_session=True)
        return launched

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def sql(self, statement: str) -> Any:
        with sqlite3.connect(self.db, timeout=30) as connection:
            row = connection.execute(statement).fetchone()
            connection.commit()
        return row[0] if row else None

    def kpis(self, reps: list[str]) -> dict[str, Any]:
        """Every rep's fiscal-year KPIs as the gateway answers them now (None where it does not yet)."""
        async def one(client: httpx.AsyncClient, rep: str) -> tuple[str, Any]:
            try:
                answer = await client.get(f"/v1/reps/{rep}/kpis", params={"period": "year", "date": YEAR_OF})
            except httpx.HTTPError:
                return rep, None
            return rep, answer.json().get("kpis") if answer.status_code == 200 else None

        async def everyone() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=self.api, timeout=10,
                                         headers={"Authorization": f"Bearer {self.key}"}) as client:
                return dict(await asyncio.gather(*(one(client, rep) for rep in reps)))

        return asyncio.run(everyone())


def fill(up: Up, events: list[dict[str, Any]]) -> None:
    bodies = ["\n".join(json.dumps(e) for e in events[i : i + 1000]).encode() for i in range(0, len(events), 1000)]
    headers = {"Authorization": f"Bearer {up.key}", "Content-Type": "application/x-ndjson"}
    _, failures = run_client(f"{up.ingest}/v1/events", bodies, headers, 4)
    if failures:
        raise SystemExit(f"{failures} batches refused; see {up.data / 'up.log'}")


def time_restart(up: Up, reps: list[str], before: dict[str, Any]) -> float:
    launched = up.start()
    wait_until(lambda: up.kpis(reps) == before, timeout=1800, interval=0.2, what="every rep's KPIs back")
    seconds = time.perf_counter() - launched
    up.stop()
    return seconds


def run(sizes: tuple[int, ...] = (100_000, 300_000, 1_000_000)) -> list[Figure]:
    raw = floor_events(max(sizes), seed=3)
    reps = sorted({event.get("rep_id") or event["owner_id"] for event in raw})
    figures: list[Figure] = []
    with TemporaryDirectory(prefix="sp-bench-up-") as tmp:
        up = Up(Path(tmp))
        filled = 0
        for size in sorted(sizes):
            up.start()
            wait_until(lambda: httpx.get(f"{up.api}/v1/ready", timeout=5).status_code == 200, timeout=1800,
                       interval=0.5, what="up ready")
            started = time.perf_counter()
            fill(up, raw[filled:size])
            wait_until(lambda size=size: (up.sql("SELECT seq FROM scoring_checkpoint_mark") or 0) >= size,
                       timeout=3600, interval=0.2, what=f"a checkpoint holding all {size:,} events")
            rate = (size - filled) / (time.perf_counter() - started)
            figures.append(Figure(
                "up-fill", f"posted → folded and checkpointed, ledger {filled:,} → {size:,} events", rate,
                "events/s", x=size, series="events/s (includes up to one 10 s checkpoint interval)",
                x_label="events in the ledger",
            ))
            filled = size
            before = up.kpis(reps)
            assert all(value is not None for value in before.values()), before
            up.stop()
            with_checkpoint = time_restart(up, reps, before)
            print(f"{size:,} events: restart with the checkpoint {with_checkpoint:.1f} s", flush=True)
            up.sql("DELETE FROM scoring_checkpoint_mark")
            up.sql("DELETE FROM scoring_checkpoint")
            whole = time_restart(up, reps, before)
            print(f"{size:,} events: restart replaying the whole ledger {whole:.1f} s", flush=True)
            figures.append(Figure(
                "up-restart", f"`up` restart → every KPI back, {size:,} events in the ledger", with_checkpoint, "s",
                target=TARGET_SECONDS, higher_is_better=False, reference=whole,
                reference_label="the same restart replaying the whole ledger (no checkpoint)", x=size,
                series="restart from the checkpoint", x_label="events in the ledger",
            ))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    args = parser.parse_args()
    print_figures(run(tuple(int(size) for size in args.sizes.split(","))))


if __name__ == "__main__":
    main()
