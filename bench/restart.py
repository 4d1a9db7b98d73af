"""Scoring restart to caught up with 100,000 reps of state (DESIGN: ≤ 10 s).

    .venv/bin/python -m bench.restart [--reps 100000]

One activity for each of N distinct reps is pre-loaded onto events.activities (the relay's envelope
format), a scoring worker folds them all (N rep states in its tables and their changelogs), and is stopped
(SIGTERM, as a rolling restart does). A new worker is launched and, at once, one activity of a new rep is
published. The figure is launch → that rep's snapshot on rep-snapshots: process start, joining the group,
restoring every table (from the SQL checkpoint, which the first worker took before it stopped, plus the
changelog after it), and folding the new event. A second figure is launch → every rep's snapshot republished,
which the worker does between its batches after a restore. The broker is the embedded one with
the test suite's session timeout (6 s): a member that left is only forgotten when its session expires.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from datetime import UTC, datetime

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import Figure, bench_stack, print_figures
from bench.scoring import end_offsets, watch_until_caught_up
from services.common.settings import Settings
from services.common.topics import ACTIVITIES, REP_SNAPSHOTS, partition_for, topic_name
from services.ingest.relay import envelope
from services.scoring.publisher import Publisher
from tests.support.stack import wait_until

TARGET_SECONDS = 10.0
PROBE = "probe-rep"


def activity(seq: int, rep: str) -> tuple[bytes, bytes]:
    body = orjson.dumps(
        {
            "event_id": f"restart-{seq}",
            "type": "activity",
            "occurred_at": "2026-11-20T10:00:00Z",
            "rep_id": rep,
            "kind": "call",
        }
    ).decode()
    return rep.encode(), envelope(seq, datetime.now(UTC), body)


async def publish(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    publisher = Publisher(settings)
    try:
        await publisher.publish(topic_name(settings, ACTIVITIES), records)
    finally:
        await publisher.stop()


async def wait_for_snapshot(settings: Settings, rep: str, start_offset: int, timeout: float = 300) -> float:
    """perf_counter time at which a snapshot of `rep` at or after `start_offset` was read."""
    topic = topic_name(settings, REP_SNAPSHOTS)
    tp = TopicPartition(topic, partition_for(rep, settings.partitions))
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start_offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for messages in (await consumer.getmany(tp, timeout_ms=100)).values():
                if any(message.key == rep.encode() for message in messages):
                    return time.perf_counter()
        raise SystemExit(f"no snapshot of {rep} within {timeout:.0f} s")
    finally:
        await consumer.stop()


def checkpointed(port: int) -> float:
    """Table values the worker on `port` has written to its checkpoint so far."""
    samples = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in samples.splitlines():
        if line.startswith("salespulse_scoring_checkpoint_values_total "):
            return float(line.split()[1])
    return 0.0


def run(reps: int = 100_000) -> list[Figure]:
    # SALESPULSE_LOG_LEVEL=INFO in the environment shows where the second worker's time went (printed below).
    with bench_stack("sqlite", SALESPULSE_LOG_LEVEL=os.environ.get("SALESPULSE_LOG_LEVEL", "WARNING")) as stack:
        settings = Settings(kafka_bootstrap=stack.bootstrap, topic_prefix=stack.topic_prefix, data_dir=stack.data_dir)
        asyncio.run(publish(settings, [activity(seq, f"rep{seq:06d}") for seq in range(1, reps + 1)]))
        launched = time.time()
        first = stack.start_service("scoring", instance="first")
        stack.wait_healthy("first", "/metrics")
        fold = watch_until_caught_up(first.proc, stack.ports["first"], settings, 0, reps, launched)
        print(f"{reps:,} reps folded by the first worker in {fold.launch_to_done:.1f} s", flush=True)
        # A rolling restart follows a checkpoint (every 10 s by default): wait for the one holding every rep.
        wait_until(lambda: checkpointed(stack.ports["first"]) >= reps, timeout=300, interval=0.5,
                   what=f"a checkpoint of all {reps:,} reps")
        os.killpg(first.proc.pid, signal.SIGTERM)
        first.proc.wait(timeout=60)
        stack.services.pop("first")
        snapshots = topic_name(settings, REP_SNAPSHOTS)
        offset = asyncio.run(end_offsets(settings, snapshots, [partition_for(PROBE, settings.partitions)]))
        before = asyncio.run(end_offsets(settings, snapshots))
        launched = time.perf_counter()
        stack.start_service("scoring", instance="second")
        asyncio.run(publish(settings, [activity(reps + 1, PROBE)]))
        seen = asyncio.run(wait_for_snapshot(settings, PROBE, offset))
        # The worker republishes every rep's snapshot between its batches after the restore (and reports itself
        # serving, for the gateway's readiness, only then): measured too.
        wait_until(lambda: asyncio.run(end_offsets(settings, snapshots)) >= before + reps + 1, timeout=300,
                   interval=0.1, what="every rep's snapshot republished")
        republished = time.perf_counter()
        marks = ("checkpointed values restored", "Joined group", "Worker ready", "republished", "read ahead")
        for line in (stack.data_dir / "second.log").read_text(errors="replace").splitlines():
            if any(mark in line for mark in marks):
                print("second worker:", line.strip(), flush=True)  # where the time went (SALESPULSE_LOG_LEVEL=INFO)
    return [
        Figure(
            "restart",
            f"scoring restart → caught up, {reps:,} reps of state",
            seen - launched,
            "s",
            target=TARGET_SECONDS,
            higher_is_better=False,
            note="launch → a new event's snapshot: joining the group on the embedded broker (6 s session), "
            "restoring the checkpoint, folding",
        ),
        Figure(
            "restart",
            f"scoring restart → every one of {reps:,} reps republished",
            republished - launched,
            "s",
            higher_is_better=False,
            note="what the gateway's readiness waits for; new events are folded meanwhile",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=100_000)
    args = parser.parse_args()
    print_figures(run(args.reps))


if __name__ == "__main__":
    main()
