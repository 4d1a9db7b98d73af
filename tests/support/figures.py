"""Figures tests measure (timings are reported, never asserted), gathered from every process of the run and
printed in pytest's summary. With pytest-xdist the tests run in worker processes: each appends to its own file
in a directory the controlling process makes and names in the environment before the workers start."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path

import orjson

FIGURES_ENV = "SALESPULSE_TEST_FIGURES"


def prepare() -> None:
    """In the controlling process, before any worker starts: where this run's figures go."""
    os.environ.setdefault(FIGURES_ENV, tempfile.mkdtemp(prefix="salespulse-figures-"))


def record(section: str, line: str) -> None:
    """Note one figure under `section` (and print it, for a run with `-s`)."""
    print(f"{section}: {line}")
    where = os.environ.get(FIGURES_ENV)
    if where is None:
        return
    with (Path(where) / f"{os.getpid()}.jsonl").open("ab") as out:
        out.write(orjson.dumps([section, line]) + b"\n")


def gathered() -> dict[str, list[str]]:
    """Every figure of the run by section, in the order each process noted them."""
    sections: dict[str, list[str]] = defaultdict(list)
    where = os.environ.get(FIGURES_ENV)
    if where is None:
        return {}
    for path in sorted(Path(where).glob("*.jsonl")):
        for raw in path.read_bytes().splitlines():
            section, line = orjson.loads(raw)
            sections[section].append(line)
    return dict(sections)
