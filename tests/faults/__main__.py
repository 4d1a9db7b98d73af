"""`python -m tests.faults [--write docs/RELIABILITY.md]`: run the undisturbed run and every fault, print the
table, and (with --write) write the reliability document. Exits 1 when any run lost, doubled or differed."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.faults.harness import FAULTS, RunOptions, run_suite
from tests.faults.report import RunFacts, document, problems, table
from tests.support.scenario import build_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--write", type=Path, help="write the reliability document here (docs/RELIABILITY.md)")
    parser.add_argument("--size", type=int, default=6000, help="history events in the feed (plus today's live part)")
    parser.add_argument("--pause", type=float, default=0.25, help="seconds between two 100-event requests")
    parser.add_argument("--fault-at", type=float, default=0.25, help="share of the feed acknowledged at the fault")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 measures recovery times alone)")
    parser.add_argument("--full", action="store_true", help="compare every period the feed touches (slower)")
    parser.add_argument("--only", nargs="*", choices=[f.key for f in FAULTS], help="these faults (and the baseline)")
    args = parser.parse_args(argv)

    started = datetime.now(UTC).replace(microsecond=0)
    scenario = build_scenario(args.size)  # dated by the stacks' pinned clock, whatever the day of the run
    options = RunOptions(pause=args.pause, fault_at=args.fault_at, full=args.full)
    faults = [f for f in FAULTS if f.inject is None or not args.only or f.key in args.only]
    clock = time.monotonic()
    outcomes = run_suite(faults, scenario, options, jobs=args.jobs, log=lambda line: print(line, flush=True))
    print(table(outcomes))
    print(f"{len(outcomes)} runs, {args.jobs} at a time, in {time.monotonic() - clock:.0f} s")
    found = problems(outcomes)
    for line in found:
        print(line, file=sys.stderr)
    if args.write:
        facts = RunFacts(
            command="python -m tests.faults --write " + str(args.write),
            started=started.strftime("%Y-%m-%d %H:%M UTC"),
            feed_events=len(scenario.feed.events),
            feed_resent=scenario.feed.resent,
            reps=len(scenario.reps),
            rate=100 / args.pause,
            fault_at=args.fault_at,
            seconds=time.monotonic() - clock,
            jobs=args.jobs,
        )
        args.write.write_text(document(outcomes, facts))
        print(f"wrote {args.write}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
