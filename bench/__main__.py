"""`make bench`: run every benchmark, print each figure, and write docs/BENCHMARKS.md's generated section
(each figure next to its target and its same-run reference) and docs/benchmarks.png.

    .venv/bin/python -m bench [--quick] [--only ingest,e2e,...] [--no-write] [--busy]

`--quick` runs every benchmark at a small size (a smoke run; its figures are not written unless asked). It refuses
to run when the load average is above 1.5 (`--busy` runs anyway, marks the figures and writes nothing)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import broker, connectors, endtoend, fanout, ingest, restart, scoring, uprestart, whatif
from bench.common import Figure, print_figures
from bench.report import chart, section, write_markdown

ROOT = Path(__file__).resolve().parents[1]
QUIET_LOAD = 1.5
"""Benchmarks run only below this load average (1 minute): a figure taken while suites run is not a figure."""
FULL: dict[str, Callable[[], list[Figure]]] = {
    "ingest": lambda: ingest.run(20_000, 100),
    "e2e": lambda: endtoend.run(100_000),
    "scoring": lambda: scoring.run(200_000),
    "restart": lambda: restart.run(100_000),
    "up-restart": lambda: uprestart.run((100_000, 300_000, 1_000_000)),
    # One stage per screen count: each starts on a quiet machine, not in the wake of the one before (the
    # 1,000-screen run right after the 300-screen one found its load generator short of CPU).
    "fanout-100": lambda: fanout.run(100, 1000, 20, 0),
    "fanout-300": lambda: fanout.run(300, 1000, 20, 0),
    "fanout": lambda: fanout.run(1000, 1000, 30, 10_000),
    "connectors": lambda: connectors.run(200),
    "whatif": lambda: whatif.run(5),
    "broker": lambda: broker.run((1_000, 5_000, 20_000, 50_000, 100_000)),
    "broker-load": lambda: broker.run_steady((2_000, 5_000, 10_000)),
}
QUICK: dict[str, Callable[[], list[Figure]]] = {
    "ingest": lambda: ingest.run(2_000, 10),
    "e2e": lambda: endtoend.run(10_000),
    "scoring": lambda: scoring.run(20_000),
    "restart": lambda: restart.run(5_000),
    "up-restart": lambda: uprestart.run((5_000, 10_000)),
    "fanout": lambda: fanout.run(100, 100, 5, 500),
    "connectors": lambda: connectors.run(20),
    "whatif": lambda: whatif.run(1),
    "broker": lambda: broker.run((1_000, 5_000)),
    "broker-load": lambda: broker.run_steady((1_000,), 3),
}


SETTLE_FOR = 300.0


def settle() -> float:
    """Wait until the 1-minute load average is at most QUIET_LOAD (at most SETTLE_FOR seconds); the load then."""
    deadline = time.monotonic() + SETTLE_FOR
    waited = time.monotonic()
    while (load := os.getloadavg()[0]) > QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(2)
    print(f"(waited {time.monotonic() - waited:.0f} s for a load average of {load:.2f})", flush=True)
    return load


def context() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit `{commit.stdout.strip() or '?'}` on "
        f"{os.cpu_count()} CPUs ({platform.machine()}, Python {platform.python_version()}); load average "
        f"before the run: {load}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(FULL))
    parser.add_argument("--write", action="store_true", help="write the report even after --quick")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--busy", action="store_true",
                        help=f"run although the load average is above {QUIET_LOAD} (figures marked, nothing written)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    names = args.only.split(",") if args.only else list(plan)
    unknown = set(names) - set(plan)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(plan)}")
    load = os.getloadavg()[0]
    if load > QUIET_LOAD and not args.busy:
        parser.exit(2, f"the load average is {load:.2f} (above {QUIET_LOAD}): something else is running, and figures "
                       "taken now would not be figures. Wait for a quiet machine, or pass --busy to run anyway "
                       "(every figure is then marked as taken on a busy machine and nothing is written).\n")
    about = context()
    started = time.monotonic()
    figures: list[Figure] = []
    stage_loads = []
    for n, name in enumerate(names):
        # A benchmark starts on a quiet machine too, not in the wake of the one before (a big stack's teardown).
        stage_loads.append(f"{name} {os.getloadavg()[0] if n == 0 or args.busy else settle():.1f}")
        print(f"== {name}", flush=True)
        got = plan[name]()
        print_figures(got)
        figures += got
    print(f"== all benchmarks took {time.monotonic() - started:,.0f} s")
    about += (f" Load average (1 minute) as each benchmark started, after waiting up to {SETTLE_FOR:.0f} s for "
              f"it to fall to {QUIET_LOAD}: {', '.join(stage_loads)}.")
    if args.busy and load > QUIET_LOAD:
        print(f"every figure above was taken on a busy machine (load average {load:.2f} before the run): "
              "not written", flush=True)
        return
    if args.no_write or (args.quick and not args.write):
        return
    command = "make bench" if not (args.quick or args.only) else " ".join(["python -m bench", *sys.argv[1:]])
    chart(figures, ROOT / "docs" / "benchmarks.png")
    write_markdown(ROOT / "docs" / "BENCHMARKS.md", section(figures, command, about, "benchmarks.png"))
    print("wrote docs/BENCHMARKS.md and docs/benchmarks.png")


if __name__ == "__main__":
    main()
