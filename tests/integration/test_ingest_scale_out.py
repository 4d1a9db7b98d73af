"""Several ingest processes on one PostgreSQL ledger (docs/deploy.md): every event that got a 202 reaches the
events topics exactly once and, per partition, in ledger sequence order — also when the process running the
relay is killed mid-stream and another takes the relay over."""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.topics import ACTIVITIES, DEALS
from tests.conftest import POSTGRES_ADMIN_URL
from tests.support import stack as support
from tests.support.clock import now_stamp
from tests.support.kafka import read_topic
from tests.support.metrics import metric, relay_leader, scrape
from tests.support.stack import Stack, create_postgres_database, drop_postgres_database, wait_until


@pytest.fixture
def postgres_url() -> Iterator[str]:
    url = create_postgres_database(POSTGRES_ADMIN_URL, "sp_ingest_scale")
    yield url
    drop_postgres_database(POSTGRES_ADMIN_URL, url)


def events(tag: str, n: int) -> list[dict[str, Any]]:
    now = now_stamp()
    out: list[dict[str, Any]] = []
    for i in range(n):
        event_id = f"{tag}-{i}"
        rep = f"rep{i % 7}"
        if i % 3:
            out.append({"event_id": event_id, "type": "activity", "occurred_at": now, "rep_id": rep, "kind": "call"})
        else:
            out.append({"event_id": event_id, "type": "deal", "occurred_at": now, "deal_id": f"d-{event_id}",
                        "owner_id": rep, "stage": "won", "amount": "10.00", "closed_at": now})
    return out


class Clients:
    """One client thread per ingest process, posting batches until stopped; keeps the ids that got a 202."""

    def __init__(self, stack: Stack, labels: list[str], batch: int = 25) -> None:
        self.stack, self.labels, self.batch = stack, labels, batch
        self.acknowledged: set[str] = set()
        self.batches: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(label,), daemon=True) for label in labels]

    def start(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _post(self, label: str) -> None:
        url = f"http://127.0.0.1:{self.stack.ports[label]}/v1/events"
        with httpx.Client(timeout=30, headers=self.stack.headers) as client:
            while not self._stop.is_set():
                body = events(f"{label}-{uuid.uuid4().hex[:8]}", self.batch)
                try:
                    answer = client.post(url, json=body)
                except httpx.HTTPError:
                    continue  # this process was killed: its unanswered batch was never acknowledged
                if answer.status_code == 202:
                    with self._lock:
                        self.acknowledged.update(e["event_id"] for e in body)
                        self.batches[label] += 1


def on_topics(stack: Stack) -> list[dict[str, Any]]:
    return [r for topic in (DEALS, ACTIVITIES) for r in read_topic(stack.bootstrap, f"{stack.topic_prefix}{topic}")]


def check_topics(stack: Stack, acknowledged: set[str]) -> None:
    def arrived() -> list[dict[str, Any]] | None:
        records = on_topics(stack)
        have = {r["event"]["event_id"] for r in records}
        return records if acknowledged <= have else None

    records = wait_until(arrived, timeout=120, interval=0.5, what=f"all {len(acknowledged):,} acknowledged events")
    counts = Counter(r["event"]["event_id"] for r in records)
    twice = sorted(event_id for event_id, n in counts.items() if n > 1)
    assert not twice, f"{len(twice)} events on the topics more than once: {twice[:5]}"
    by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
    for topic in (DEALS, ACTIVITIES):
        for r in read_topic(stack.bootstrap, f"{stack.topic_prefix}{topic}"):
            by_partition[(topic, r["_partition"])].append(r["seq"])
    for where, seqs in by_partition.items():
        assert seqs == sorted(seqs), f"{where}: out of sequence order"


@pytest.mark.parametrize("processes", [2, 3])
def test_every_acknowledged_event_reaches_the_topics_once_in_order_and_through_a_leader_kill(
    broker: str, tmp_path: Path, postgres_url: str, processes: int
) -> None:
    stack = Stack(bootstrap=broker, database_url=postgres_url, data_dir=tmp_path / "data",
                  topic_prefix=f"is{uuid.uuid4().hex[:6]}.", admin_key=support.random_admin_key())
    stack.prepare()
    labels = ["ingest", *(f"ingest{i}" for i in range(2, processes + 1))]
    try:
        for label in labels:
            stack.start_service("ingest", instance=label)
        for label in labels:
            stack.wait_healthy(label, "/v1/health")

        # All processes take writes at once: their sequence numbers interleave in the ledger.
        clients = Clients(stack, labels).start()
        wait_until(lambda: all(clients.batches[label] >= 40 for label in labels), timeout=180,
                   what="40 acknowledged batches through every process")
        clients.stop()
        check_topics(stack, set(clients.acknowledged))

        # The relay's process dies mid-stream; another takes the relay over.
        leader = relay_leader(stack, labels)
        clients = Clients(stack, labels).start()
        wait_until(lambda: all(clients.batches[label] >= 10 for label in labels), timeout=120,
                   what="the stream flowing")
        stack.kill(leader)
        survivors = [label for label in labels if label != leader]
        counted = {label: clients.batches[label] for label in survivors}
        wait_until(lambda: all(clients.batches[label] >= counted[label] + 20 for label in survivors), timeout=180,
                   what="20 more batches through every survivor")
        clients.stop()
        assert relay_leader(stack, survivors) in survivors
        check_topics(stack, set(clients.acknowledged))
    finally:
        stack.stop()


def test_the_relay_in_its_own_process_is_woken_by_commits_and_loses_nothing_to_a_kill(
    broker: str, tmp_path: Path, postgres_url: str
) -> None:
    """SALESPULSE_RELAY=external (as `salespulse up` and docker-compose run it): two ingest processes only write
    the ledger and wake `salespulse relay`, which publishes; a kill -9 of the relay mid-stream loses and
    duplicates nothing once it is back."""
    stack = Stack(bootstrap=broker, database_url=postgres_url, data_dir=tmp_path / "data",
                  topic_prefix=f"ir{uuid.uuid4().hex[:6]}.", admin_key=support.random_admin_key(),
                  # An idle relay looks at the ledger only every 20 s by itself: what arrives sooner was woken.
                  extra_env={"SALESPULSE_RELAY": "external", "SALESPULSE_RELAY_IDLE_SECONDS": "4"})
    stack.prepare()
    labels = ["ingest", "ingest2"]
    try:
        for label in labels:
            stack.start_service("ingest", instance=label)
        stack.start_service("relay")
        for label in labels:
            stack.wait_healthy(label, "/v1/health")
        stack.wait_healthy("relay", "/v1/health")
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{stack.ports['relay']}/v1/health").json()["leader"],
                   timeout=30, what="the relay process holding the relay's lock")
        assert "salespulse_ingest_relay_leader" not in scrape(stack, "ingest")  # ingest no longer publishes
        assert metric(scrape(stack, "relay"), "salespulse_ingest_relay_leader") == 1

        # A lone event after a quiet spell: published on the commit's wake-up, not the relay's own polling.
        lone = events(f"lone-{uuid.uuid4().hex[:6]}", 1)
        httpx.post(f"{stack.ingest}/v1/events", json=lone, headers=stack.headers, timeout=10).raise_for_status()
        wait_until(lambda: lone[0]["event_id"] in {r["event"]["event_id"] for r in on_topics(stack)}, timeout=10,
                   interval=0.2, what="the lone event on its topic before the relay's 20 s idle wait ran out")

        clients = Clients(stack, labels).start()
        wait_until(lambda: all(clients.batches[label] >= 10 for label in labels), timeout=120,
                   what="the stream flowing")
        stack.kill("relay")
        counted = {label: clients.batches[label] for label in labels}
        wait_until(lambda: all(clients.batches[label] >= counted[label] + 10 for label in labels), timeout=120,
                   what="ingest accepting with the relay down")
        stack.start_service("relay")
        wait_until(lambda: all(clients.batches[label] >= counted[label] + 30 for label in labels), timeout=180,
                   what="30 more batches through every process")
        clients.stop()
        check_topics(stack, set(clients.acknowledged) | {lone[0]["event_id"]})
        published = metric(scrape(stack, "relay"), "salespulse_ingest_relay_published_total")
        assert published > 0
    finally:
        stack.stop()
