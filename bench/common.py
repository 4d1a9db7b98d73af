"""Shared bench plumbing: a broker, a database and services as real processes, like the test suite."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from services.common.clock import Clock
from tests.support.stack import (
    Stack,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    start_broker_process,
)

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def bench_stack(database: str, **env: str) -> Iterator[Stack]:
    """A Stack on a fresh broker and a fresh `sqlite` or `postgresql` database (services not started)."""
    port = free_port()
    broker = start_broker_process(port)
    url = create_postgres_database(POSTGRES, "sp_bench") if database == "postgresql" else None
    with TemporaryDirectory(prefix="sp-bench-") as tmp:
        stack = Stack(
            bootstrap=f"127.0.0.1:{port}",
            database_url=url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
            data_dir=Path(tmp),
            topic_prefix="bench.",
            admin_key="sp_bench_" + uuid.uuid4().hex,
            # The product's pool sizes, not the suite's smaller ones (tests/support/stack.py); the relay in its
            # own process, as `salespulse up` and docker-compose run it.
            extra_env={"SALESPULSE_DB_POOL_SIZE": "10", "SALESPULSE_DB_MAX_OVERFLOW": "10",
                       "SALESPULSE_RELAY": "external", **env},
            clock=Clock(),  # the system clock, as in production: the figures depend on no period
        )
        try:
            stack.prepare()
            yield stack
        finally:
            stack.stop()
            broker.terminate()
            broker.wait(timeout=10)
            if url:
                drop_postgres_database(POSTGRES, url)


@contextmanager
def sampled(pid: int, output: str | None) -> Iterator[None]:
    """Sample process `pid` with py-spy (raw collapsed stacks, 250 Hz) into `output` while the block runs;
    nothing when `output` is None. `summarize_py_spy(output)` reads it. With BENCH_PY_SPY_GIL set, only the thread
    holding the GIL is sampled (what the worker's Python does, without threads waiting in C)."""
    if output is None:
        yield
        return
    beside = Path(sys.executable).parent / "py-spy"  # installed into the project's environment, or on PATH
    sampler = subprocess.Popen(
        [str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy",
         "record", "--pid", str(pid), "--format", "raw", "--output", output, "--rate", "250",
         *(["--gil"] if os.environ.get("BENCH_PY_SPY_GIL") else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        if sampler.poll() is None:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its samples when interrupted or when `pid` exits
        sampler.wait(timeout=60)


def summarize_py_spy(path: str, top: int = 30) -> None:
    """Self and inclusive shares of the sampled frames in py-spy's raw (collapsed stack) output."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    with open(path) as samples:
        for line in samples:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = [frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].rstrip(")") for frame in stack.split(";")]
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + n
    print(f"py-spy: {total} samples")
    for title, table in (("self", own), ("inclusive", inclusive)):
        print(f"  top {top} by {title} time:")
        for frame, n in sorted(table.items(), key=lambda item: -item[1])[:top]:
            print(f"    {100 * n / total:5.1f} %  {frame}")


def start_ingest(stack: Stack) -> None:
    """Start ingest (with its relay, when that runs in its own process) and wait until they answer."""
    stack.start_service("ingest")
    if stack.external_relay:
        stack.start_service("relay")
        stack.wait_healthy("relay", "/v1/health")
    stack.wait_healthy("ingest", "/v1/health")


@dataclass
class Figure:
    """One measured figure, next to its target and the reference measured in the same run."""

    bench: str
    name: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    reference: float | None = None
    reference_label: str = ""
    note: str = ""
    x: float | None = None
    """Where the figure sits on a growth curve (e.g. the ledger size), for the chart's curve panels."""
    series: str = ""
    x_label: str = ""
    """The line of its curve panel (one panel per bench), e.g. "p99"."""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "—"
        return f"{'≥' if self.higher_is_better else '≤'} {number(self.target)} {self.unit}"

    @property
    def ratio(self) -> float | None:
        return self.value / self.reference if self.reference else None

    @property
    def ratio_text(self) -> str:
        """The ratio to the reference, with three decimals below 1 (0.247 must not read as a 0.25 target met)."""
        ratio = self.ratio
        if ratio is None:
            return "—"
        return f"{ratio:.3f}" if ratio < 1 else f"{ratio:.2f}"

    def line(self) -> str:
        text = f"{self.bench:<8} {self.name:<52} {number(self.value):>10} {self.unit:<9}"
        if self.target is not None:
            text += f"  target {self.target_text} ({'met' if self.met else 'NOT met'})"
        if self.reference is not None:
            reference = f"{number(self.reference)} {self.unit} ({self.reference_label}; ratio {self.ratio_text})"
            text += f"  reference {reference}"
        return text


def number(value: float) -> str:
    """Figures as people read them: thousands separated, one decimal below 100."""
    return f"{value:,.1f}" if abs(value) < 100 and value != int(value) else f"{value:,.0f}"


def print_figures(figures: list[Figure]) -> None:
    for figure in figures:
        print(figure.line(), flush=True)
