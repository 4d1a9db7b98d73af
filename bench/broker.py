"""The embedded broker's fetch against what it holds: why `salespulse up` renews it (services/cli/renewal.py).

    .venv/bin/python -m bench.broker [--sizes 1000,5000,20000,50000] [--fetches 200]
    .venv/bin/python -m bench.broker --steady

A fresh embedded broker, one topic of one partition, filled with one-record batches (what a quiet stack
writes: one event, one snapshot at a time). At each size the same fetch — the partition's last record, 200
times — is timed from the client and in the broker's own CPU time (/proc). The reference is that fetch on a
partition of 100 batches, measured in the same run: what a renewed broker starts from. The curve is the cost
a stack that never renews its broker would pay on every fetch that returns data.

`--steady` (its own `make bench` stage, "broker-load") measures what that means for a floor that never pauses:
the broker's CPU while three consumers follow four partitions (a 20 ms fetch wait, as the services' prompt
feeds) and ten one-record batches a second arrive, against the batches each partition holds."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import Figure, print_figures
from services.common.broker import start_broker
from services.common.settings import Settings
from tests.support.stack import free_port

TOPIC = "bench.batches"
REFERENCE_SIZE = 100


def _cpu(pid: int) -> float:
    """Seconds of CPU (user + system) process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _fill(producer: AIOKafkaProducer, count: int) -> None:
    """Append `count` batches of one record each."""
    pending = []
    for _ in range(count):
        batch = producer.create_batch()
        batch.append(key=b"k", value=b"x" * 200, timestamp=None)
        pending.append(await producer.send_batch(batch, TOPIC, partition=0))
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def _fetch_cost(consumer: AIOKafkaConsumer, broker: int, fetches: int) -> tuple[float, float]:
    """(ms of broker CPU, ms of round trip) per fetch of the partition's last record."""
    tp = TopicPartition(TOPIC, 0)
    end = (await consumer.end_offsets([tp]))[tp]
    cpu, started = _cpu(broker), time.perf_counter()
    for _ in range(fetches):
        consumer.seek(tp, end - 1)
        if not await consumer.getmany(tp, timeout_ms=5000, max_records=1):
            raise RuntimeError("a fetch of the last record returned nothing")
    took = time.perf_counter() - started
    return (_cpu(broker) - cpu) * 1000 / fetches, took * 1000 / fetches


async def _run(sizes: list[int], fetches: int) -> list[Figure]:
    port = free_port()
    proc = start_broker(port)
    bootstrap = f"127.0.0.1:{port}"
    broker = proc.pid
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    figures: list[Figure] = []
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
        await admin.close()
        await producer.start()
        await consumer.start()
        consumer.assign([TopicPartition(TOPIC, 0)])
        held = 0
        reference: tuple[float, float] | None = None
        for size in [REFERENCE_SIZE, *sizes]:
            await _fill(producer, size - held)
            held = size
            cost = await _fetch_cost(consumer, broker, fetches)
            if reference is None:
                reference = cost
                continue
            label = f"a partition of {REFERENCE_SIZE} batches, as a renewed broker starts"
            for what, value, ref in (("broker CPU", cost[0], reference[0]), ("round trip", cost[1], reference[1])):
                figures.append(Figure("broker", f"{what} per fetch, {size:,} batches held", value, "ms",
                                      higher_is_better=False, reference=ref, reference_label=label,
                                      x=size, series=f"{what} per fetch", x_label="record batches in the partition"))
    finally:
        await consumer.stop()
        await producer.stop()
        proc.terminate()
        proc.wait()
    renew = Settings().broker_renew_records
    print(f"`salespulse up` renews the embedded broker once a partition grew by {renew:,} records "
          "(SALESPULSE_BROKER_RENEW_RECORDS): the cost above at that size is the most its fetches reach.")
    return figures


def run(sizes: tuple[int, ...] = (1_000, 5_000, 20_000, 50_000), fetches: int = 200) -> list[Figure]:
    return asyncio.run(_run(list(sizes), fetches))


STEADY_TOPIC = "bench.steady"
STEADY_PARTITIONS = 4
STEADY_CONSUMERS = 3
"""Like a stack's hot feeds: scoring's intake, the gateway's snapshots, the notifier, each with its own fetches."""
STEADY_RATE = 10.0
"""One-record batches a second, spread over the partitions: a quiet floor's events, one request each."""


async def _fill_partitions(producer: AIOKafkaProducer, count: int) -> None:
    """Append `count` one-record batches to each partition of the steady topic."""
    pending = []
    for partition in range(STEADY_PARTITIONS):
        for _ in range(count):
            batch = producer.create_batch()
            batch.append(key=b"k", value=b"x" * 200, timestamp=None)
            pending.append(await producer.send_batch(batch, STEADY_TOPIC, partition=partition))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
    await asyncio.gather(*pending)


async def _steady_cost(bootstrap: str, producer: AIOKafkaProducer, broker: int, seconds: float) -> float:
    """% of a core the broker uses while STEADY_CONSUMERS consumers (20 ms fetch wait, as the services' prompt
    feeds) follow every partition and the producer appends STEADY_RATE one-record batches a second."""
    tps = [TopicPartition(STEADY_TOPIC, p) for p in range(STEADY_PARTITIONS)]
    consumers = [AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
                 for _ in range(STEADY_CONSUMERS)]
    stop = asyncio.Event()

    async def follow(consumer: AIOKafkaConsumer) -> None:
        while not stop.is_set():
            await consumer.getmany(timeout_ms=200)

    for consumer in consumers:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
    followers = [asyncio.create_task(follow(consumer)) for consumer in consumers]
    try:
        await asyncio.sleep(1)  # every consumer at the end, fetching
        cpu, started, sent = _cpu(broker), time.monotonic(), 0
        while (elapsed := time.monotonic() - started) < seconds:
            batch = producer.create_batch()
            batch.append(key=b"k", value=b"x" * 200, timestamp=None)
            await (await producer.send_batch(batch, STEADY_TOPIC, partition=sent % STEADY_PARTITIONS))
            sent += 1
            await asyncio.sleep(max(0.0, sent / STEADY_RATE - (time.monotonic() - started)))
        return 100 * (_cpu(broker) - cpu) / elapsed
    finally:
        stop.set()
        await asyncio.gather(*followers)
        for consumer in consumers:
            await consumer.stop()


async def _run_steady(sizes: list[int], seconds: float) -> list[Figure]:
    port = free_port()
    proc = start_broker(port)
    bootstrap = f"127.0.0.1:{port}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    figures: list[Figure] = []
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(STEADY_TOPIC, STEADY_PARTITIONS, 1)])
        await admin.close()
        await producer.start()
        held = 0
        reference: float | None = None
        for size in [REFERENCE_SIZE, *sizes]:
            await _fill_partitions(producer, max(0, size - held))
            cost = await _steady_cost(bootstrap, producer, proc.pid, seconds)
            held = size + int(seconds * STEADY_RATE / STEADY_PARTITIONS)  # what the steady load appended
            if reference is None:
                reference = cost
                continue
            figures.append(Figure(
                "broker-load", f"broker CPU at {STEADY_RATE:g} batches/s, {STEADY_CONSUMERS} consumers, "
                f"{size:,} batches a partition", cost, "% of a core", higher_is_better=False, reference=reference,
                reference_label=f"the same load on partitions of {REFERENCE_SIZE} batches",
                x=size, series="broker CPU", x_label="record batches in each partition",
            ))
    finally:
        await producer.stop()
        proc.terminate()
        proc.wait()
    return figures


def run_steady(sizes: tuple[int, ...] = (2_000, 5_000, 10_000), seconds: float = 10) -> list[Figure]:
    """The broker's CPU under a light steady load, against the batches its partitions hold: what a floor that
    never pauses pays between two renewals."""
    return asyncio.run(_run_steady(list(sizes), seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000,50000")
    parser.add_argument("--fetches", type=int, default=200)
    parser.add_argument("--steady", action="store_true", help="the broker's CPU under a light steady load instead")
    args = parser.parse_args()
    if args.steady:
        print_figures(run_steady())
        return
    print_figures(run(tuple(int(s) for s in args.sizes.split(",")), args.fetches))


if __name__ == "__main__":
    main()
