"""End to end: events/s from the first NDJSON post to the last snapshot — ingest (durable in the ledger),
relay to Kafka, the scoring worker's two agents — next to the same-run reference: one raw aiokafka process
consuming the same events from the same broker, folding them per rep and producing the sums.

    .venv/bin/python -m bench.endtoend [--events 100000] [--database sqlite]

The feed is the demo's simulated floor (deal snapshots with wins, losses and reversals, and activities),
posted as NDJSON batches of 1,000 by 4 concurrent clients in their own process, to a running stack: the clock
starts at the first post, once the scoring worker serves its partitions (its start-up — joining its group,
recovering its tables — is a restart's cost, measured by bench.restart, not throughput), and stops when the
worker's /metrics show every deal snapshot, every activity and every credit those produced counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

from bench.common import Figure, bench_stack, print_figures, start_ingest
from bench.ingest import run_client_timed
from bench.scoring import floor_events, reference, wait_serving, watch_until_caught_up
from services.common.settings import Settings

TARGET = 20_000


def run(events: int = 100_000, database: str = "sqlite") -> list[Figure]:
    raw = floor_events(events, seed=2)
    deals = sum(1 for event in raw if event["type"] == "deal")
    bodies = ["\n".join(json.dumps(event) for event in raw[i : i + 1000]).encode() for i in range(0, len(raw), 1000)]
    with bench_stack(database) as stack:
        settings = Settings(kafka_bootstrap=stack.bootstrap, topic_prefix=stack.topic_prefix, data_dir=stack.data_dir)
        stack.start_service("scoring")
        start_ingest(stack)
        stack.wait_healthy("scoring", "/metrics")
        wait_serving(stack.services["scoring"].proc, stack.ports["scoring"])
        headers = {"Authorization": f"Bearer {stack.admin_key}", "Content-Type": "application/x-ndjson"}
        posted: list[tuple[float, float, int]] = []
        poster = threading.Thread(
            target=lambda: posted.append(run_client_timed(f"{stack.ingest}/v1/events", bodies, headers, 4)),
            daemon=True,
        )
        launched = time.time()
        poster.start()
        scoring = stack.services["scoring"].proc
        run = watch_until_caught_up(scoring, stack.ports["scoring"], settings, deals, len(raw) - deals, launched)
        poster.join()
        # The clock starts at the first post (in the client's process: its start-up is not the pipeline's time;
        # time.perf_counter is the system's monotonic clock, the same in every process).
        first_post, ingest_seconds, failures = posted[0]
        seconds = run.seen_done - first_post
        if failures:
            raise SystemExit(f"{failures} batches were refused; see {stack.data_dir}")
        ref_rate = len(raw) / asyncio.run(reference(settings, len(raw), settings.scoring_batch_size))
    label = "raw aiokafka consume → fold → produce, same events and broker"
    return [
        Figure(
            "e2e",
            f"ingest → ledger → Kafka → scoring → snapshots ({database})",
            len(raw) / seconds,
            "events/s",
            target=TARGET,
            reference=ref_rate,
            reference_label=label,
        ),
        Figure("e2e", f"of which ingest alone accepted ({database})", len(raw) / ingest_seconds, "events/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    print_figures(run(args.events, args.database))


if __name__ == "__main__":
    main()
