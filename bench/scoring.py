"""Scoring throughput: events/s through a real scoring worker (deal-state agent → credits → rep agent →
rep-snapshots), next to a reference measured in the same run on the same broker: raw aiokafka consume →
fold per key (a dict of Decimal sums) → produce.

    .venv/bin/python -m bench.scoring [--events 200000] [--profile scoring.prof]

Ingest and its ledger are NOT included: the events are pre-loaded onto events.deals and events.activities
in the relay's envelope format (ledger sequence, acceptance time, canonical event JSON) with a raw aiokafka
producer, exactly as the relay would publish them. Then a scoring worker process is launched and timed until
its agents have folded every event and published the snapshots (read from its /metrics every 20 ms).
The feed is the demo's simulated sales floor (opens, 3–10 activities per deal, wins, losses, reversals;
~30 reps) on a simulated clock, so periods roll over and evictions reach SQL history as they do live.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import pstats
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.common import Figure, bench_stack, print_figures, sampled, summarize_py_spy
from schemas.events import EVENT_ADAPTER, canonical_json
from services.common.kafka import log_ends
from services.common.settings import Settings
from services.common.topics import ACTIVITIES, CREDITS, DEALS, topic_name
from services.demo.floor import live_events
from services.ingest.relay import envelope
from services.scoring.publisher import Publisher
from tests.support.stack import ROOT, Stack, free_port, stop_processes

REFERENCE_OUT = "bench.reference-out"
FIRST_BATCH_STARTED = "salespulse_scoring_first_batch_started_timestamp_seconds"
LAST_BATCH_FINISHED = "salespulse_scoring_last_batch_finished_timestamp_seconds"


@dataclass
class ScoringFeed:
    deals: list[tuple[bytes, bytes]]
    activities: list[tuple[bytes, bytes]]

    @property
    def size(self) -> int:
        return len(self.deals) + len(self.activities)


def floor_events(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` raw events of the simulated floor on a simulated clock (one second per event)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    ticks = iter(range(10**9))

    def clock() -> datetime:  # one simulated second per event: a day of floor every 86,400 events
        return start + timedelta(seconds=next(ticks))

    return list(itertools.islice(live_events(start, rng, clock=clock, source="bench"), count))


def make_feed(count: int, seed: int = 1) -> ScoringFeed:
    """`count` events of the simulated floor as relay envelopes, keyed as the relay keys them."""
    feed = ScoringFeed([], [])
    accepted = datetime.now(UTC)
    for seq, raw in enumerate(floor_events(count, seed), start=1):
        event = EVENT_ADAPTER.validate_python(raw)
        value = envelope(seq, accepted, canonical_json(event).decode())
        if raw["type"] == "deal":
            feed.deals.append((raw["deal_id"].encode(), value))
        else:
            feed.activities.append((raw["rep_id"].encode(), value))
    return feed


async def preload(settings: Settings, feed: ScoringFeed) -> None:
    publisher = Publisher(settings)
    try:
        await publisher.publish(topic_name(settings, DEALS), feed.deals)
        await publisher.publish(topic_name(settings, ACTIVITIES), feed.activities)
    finally:
        await publisher.stop()


# --- the reference: raw aiokafka consume → fold per key → produce ------------------------------------


async def reference(settings: Settings, total: int, batch: int) -> float:
    """Seconds for one raw aiokafka process to fold every event into per-rep Decimal sums and produce the
    touched sums after each batch (acknowledged), reading both event topics from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    publisher = Publisher(settings)
    await consumer.start()
    await publisher.start()
    try:
        topics = [topic_name(settings, DEALS), topic_name(settings, ACTIVITIES)]
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        sums: dict[str, list[Any]] = {}
        seen = 0
        started = time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=100, max_records=batch)
            touched: dict[str, list[Any]] = {}
            for messages in batches.values():
                for message in messages:
                    event = orjson.loads(message.value)["event"]
                    if event["type"] == "deal":
                        rep = event["owner_id"]
                        rep_sums = sums.get(rep) or sums.setdefault(rep, [Decimal(0), 0, 0, 0])
                        if event["stage"] == "won":
                            rep_sums[0] += Decimal(event["amount"])
                            rep_sums[1] += 1
                        elif event["stage"] == "lost":
                            rep_sums[2] += 1
                    else:
                        rep = event["rep_id"]
                        rep_sums = sums.get(rep) or sums.setdefault(rep, [Decimal(0), 0, 0, 0])
                        rep_sums[3] += 1
                    touched[rep] = rep_sums
                seen += len(messages)
            await publisher.publish(
                REFERENCE_OUT,
                [(rep.encode(), orjson.dumps([str(s[0]), s[1], s[2], s[3]])) for rep, s in touched.items()],
            )
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await publisher.stop()


# --- the scoring worker ------------------------------------------------------------------------------


def _samples(port: int) -> dict[tuple[str, str], float]:
    """(sample name, agent) → value for the worker's per-agent series."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "agent" in sample.labels and "le" not in sample.labels:
                found[(sample.name, sample.labels["agent"])] = sample.value
    return found


def wait_serving(proc: subprocess.Popen[bytes], port: int, timeout: float = 120.0) -> float:
    """Wait until the worker serves its assignment (`salespulse_scoring_serving` 1: partitions assigned, tables
    recovered); returns the seconds waited."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"scoring exited with {proc.returncode}; see its log")
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            text = ""
        for family in text_string_to_metric_families(text):
            if any(s.name == "salespulse_scoring_serving" and s.value == 1 for s in family.samples):
                return time.perf_counter() - started
        time.sleep(0.05)
    raise SystemExit(f"scoring did not serve its partitions within {timeout:.0f} s")


def _counters(port: int) -> dict[str, float]:
    return {agent: v for (name, agent), v in _samples(port).items() if name == "salespulse_scoring_events_total"}


async def end_offsets(settings: Settings, topic: str, partitions: list[int] | None = None) -> int:
    """The summed exact end offsets of `partitions` of `topic` (all of them by default): ListOffsets on the embedded
    broker falls short of a multi-record last batch, which scoring now writes (`log_ends`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (range(settings.partitions) if partitions is None else partitions)]
        return sum((await log_ends(consumer, tps)).values())
    finally:
        await consumer.stop()


@dataclass
class ScoringRun:
    agents: dict[tuple[str, str], float]
    launch_to_first_batch: float
    """Launch → the worker began its first batch (start-up, joining the group, table recovery)."""
    processing: float
    """The worker's first batch began → its last one completed (the worker's own clock: a batch blocks its
    event loop, so /metrics, polled, would see batch ends up to a batch late)."""
    processed: int
    launch_to_done: float
    """Launch → the worker's last batch completed."""
    seen_done: float
    """time.perf_counter() when the watcher saw everything folded."""


def watch_until_caught_up(
    proc: subprocess.Popen[bytes], port: int, settings: Settings, deals: int, activities: int, launched: float
) -> ScoringRun:
    """Poll the worker's /metrics every 20 ms until its agents have counted `deals` deal snapshots, then
    every activity and every credit those produced; `launched` is the launch's Unix time."""
    rep_target = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"scoring exited with {proc.returncode}; see its log")
        try:
            counts = _counters(port)
        except httpx.HTTPError:
            time.sleep(0.02)
            continue
        done_deals, reps = counts.get("deal-state", 0), counts.get("rep-kpis", 0)
        if rep_target is None and done_deals >= deals:
            credits = asyncio.run(end_offsets(settings, topic_name(settings, CREDITS)))
            rep_target = activities + credits
        if rep_target is not None and reps >= rep_target:
            agents = _samples(port)
            first = min(v for (name, _), v in agents.items() if name == FIRST_BATCH_STARTED)
            last = max(v for (name, _), v in agents.items() if name == LAST_BATCH_FINISHED)
            return ScoringRun(
                agents=agents,
                launch_to_first_batch=first - launched,
                processing=last - first,
                processed=deals + activities,  # the feed's events, each once (not the credits between the agents)
                launch_to_done=last - launched,
                seen_done=time.perf_counter(),
            )
        time.sleep(0.02)
    raise SystemExit("scoring did not catch up within 600 s")


def run_scoring(
    stack: Stack, settings: Settings, feed: ScoringFeed, profile: str | None, py_spy: str | None
) -> ScoringRun:
    port = free_port()
    command = [sys.executable, "-m", "services.cli.main", "scoring"]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "services.cli.main", "scoring"]
    log = open(stack.data_dir / "scoring.log", "ab")  # noqa: SIM115
    launched = time.time()  # the worker stamps its batches with Unix time
    proc = subprocess.Popen(
        command,
        env=stack.env(SALESPULSE_SCORING_WEB_PORT=str(port)),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with sampled(proc.pid, py_spy):
            try:
                return watch_until_caught_up(proc, port, settings, len(feed.deals), len(feed.activities), launched)
            finally:
                stop_processes([proc], grace=30)
    except SystemExit:
        log.flush()
        tail = (stack.data_dir / "scoring.log").read_text(errors="replace").splitlines()[-40:]
        print("\n".join(["scoring worker's log (last 40 lines):", *tail]), file=sys.stderr)
        raise
    finally:
        log.close()


def run(events: int = 200_000, profile: str | None = None, py_spy: str | None = None) -> list[Figure]:
    """Scoring throughput (ingest excluded) next to raw aiokafka consume → fold → produce, same broker."""
    print(f"generating {events:,} events of the simulated floor …", flush=True)
    feed = make_feed(events)
    print(f"  {len(feed.deals):,} deal snapshots, {len(feed.activities):,} activities")
    with bench_stack("sqlite") as stack:
        settings = Settings(kafka_bootstrap=stack.bootstrap, topic_prefix=stack.topic_prefix, data_dir=stack.data_dir)
        asyncio.run(preload(settings, feed))
        batch = settings.scoring_batch_size
        ref_rate = feed.size / asyncio.run(reference(settings, feed.size, batch))
        run = run_scoring(stack, settings, feed, profile, py_spy)
    rate = run.processed / run.processing
    print(
        f"scoring worker: launch → first batch began {run.launch_to_first_batch:.2f} s (start-up, rebalance, "
        f"table recovery); then {run.processed:,} events folded in {run.processing:.2f} s (first batch began → "
        f"last completed); launch → caught up {run.launch_to_done:.2f} s"
    )
    for agent in ("deal-state", "rep-kpis"):
        batches = run.agents[("salespulse_scoring_batch_size_count", agent)]
        count = run.agents[("salespulse_scoring_batch_size_sum", agent)]
        busy = run.agents[("salespulse_scoring_batch_processing_seconds_sum", agent)]
        print(
            f"  {agent}: {count:,.0f} messages in {batches:,.0f} batches (avg {count / max(batches, 1):,.0f}),"
            f" {busy:.2f} s in its batch code ({1e6 * busy / max(count, 1):.1f} µs/message)"
        )
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    if py_spy:
        summarize_py_spy(py_spy)
    reference_label = "raw aiokafka consume → fold → produce"
    return [
        Figure(
            "scoring",
            f"scoring worker alone (batch {batch}, within {settings.scoring_batch_within} s)",
            rate,
            "events/s",
            target=50_000,  # issue 22's; its other target, 0.25 of the reference, is the ratio column
            reference=ref_rate,
            reference_label=reference_label,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profile", help="write a cProfile of the scoring worker to this file and print its top")
    parser.add_argument("--py-spy", help="sample the scoring worker with py-spy into this file and summarise it")
    args = parser.parse_args()
    print_figures(run(args.events, args.profile, args.py_spy))


if __name__ == "__main__":
    main()
