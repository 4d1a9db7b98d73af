"""Ingest under faults, with real processes: nothing that got a 202 is ever lost or duplicated."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.kafka import read_topic
from tests.support.stack import Stack, free_port, start_broker_process, wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def activities(prefix: str, n: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"{prefix}-{i}",
            "type": "activity",
            "occurred_at": "2026-11-20T10:00:00Z",
            "rep_id": f"rep-{i % 7}",
            "kind": "call",
        }
        for i in range(n)
    ]


def published_ids(stack: Stack) -> Counter[str]:
    messages = read_topic(stack.bootstrap, f"{stack.topic_prefix}events.activities")
    return Counter(m["event"]["event_id"] for m in messages)


def ledger_ids(stack: Stack) -> Counter[str]:
    from sqlalchemy import select

    from services.common.models import LedgerEntry
    from tests.support.stack import run_db

    async def ids(session):  # type: ignore[no-untyped-def]
        return list((await session.execute(select(LedgerEntry.event_id))).scalars())

    return Counter(run_db(stack.database_url, ids))


def test_kill_9_while_a_client_streams_loses_nothing_it_acknowledged(stack_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(database_url)
    stack.prepare()
    stack.start_service("ingest")
    stack.wait_healthy("ingest", "/v1/health")
    acknowledged: list[str] = []
    stop = threading.Event()

    def client() -> None:
        batch_no = 0
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                batch = activities(f"k{batch_no}", 200)
                batch_no += 1
                try:
                    r = http.post(f"{stack.ingest}/v1/events", json=batch, headers=stack.headers)
                except httpx.HTTPError:
                    continue  # the service is down or restarting: the client retries with new batches
                if r.status_code == 202:
                    acknowledged.extend(str(e["event_id"]) for e in batch)

    thread = threading.Thread(target=client)
    thread.start()
    wait_until(lambda: len(acknowledged) >= 2000, timeout=30, what="2,000 events acknowledged")
    stack.kill("ingest")  # SIGKILL in the middle of the stream
    before_restart = len(acknowledged)
    stack.start_service("ingest")
    stack.wait_healthy("ingest", "/v1/health")
    wait_until(lambda: len(acknowledged) >= before_restart + 2000, timeout=30, what="more events after restart")
    stop.set()
    thread.join()

    in_ledger = ledger_ids(stack)
    assert all(in_ledger[event_id] == 1 for event_id in acknowledged)

    def all_published() -> bool:
        seen = published_ids(stack)
        return all(seen[event_id] >= 1 for event_id in acknowledged)

    wait_until(all_published, timeout=60, interval=0.5, what="every acknowledged event on Kafka")
    # Republishing after the crash may repeat events on a partition, but never puts an event before an
    # earlier one it had not yet published: any sequence number at or below the highest seen so far on
    # its partition is a repeat (what consumers' sequence marks rely on).
    messages = read_topic(stack.bootstrap, f"{stack.topic_prefix}events.activities")
    highest: dict[int, int] = {}
    seen: set[int] = set()
    for message in messages:
        seq, partition = message["seq"], message["_partition"]
        if seq <= highest.get(partition, 0):
            assert seq in seen, f"seq {seq} arrived on partition {partition} after a later one"
        highest[partition] = max(highest.get(partition, 0), seq)
        seen.add(seq)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_broker_outage_events_are_accepted_and_arrive_when_it_returns(stack_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    broker = start_broker_process(port)
    try:
        stack = stack_factory(database_url)
        stack.bootstrap = f"127.0.0.1:{port}"
        stack.prepare()
        stack.start_service("ingest")
        stack.wait_healthy("ingest", "/v1/health")
        os.kill(broker.pid, signal.SIGSTOP)  # the broker stops answering
        r = httpx.post(f"{stack.ingest}/v1/events", json=activities("o", 500), headers=stack.headers, timeout=10)
        assert r.status_code == 202 and r.json() == {"accepted": 500, "duplicates": 0}
        status = httpx.get(f"{stack.ingest}/v1/events/o-499", headers=stack.headers).json()
        assert status["status"] == "accepted" and status["published_at"] is None
        os.kill(broker.pid, signal.SIGCONT)

        def arrived() -> bool:
            seen = published_ids(stack)
            return all(seen[f"o-{i}"] >= 1 for i in range(500))

        wait_until(arrived, timeout=90, interval=0.5, what="all 500 events on Kafka after the outage")
        # The relay moves its cursor once the broker has acknowledged the batch, a moment after the events are
        # readable on the topic: the audit trail says "published" from then on.
        wait_until(lambda: httpx.get(f"{stack.ingest}/v1/events/o-499", headers=stack.headers).json()["status"]
                   == "published", timeout=30, what="the audit trail to say published")
        status = httpx.get(f"{stack.ingest}/v1/events/o-499", headers=stack.headers).json()
        assert status["status"] == "published"
    finally:
        os.kill(broker.pid, signal.SIGCONT)
        broker.terminate()
        broker.wait(timeout=10)


@contextmanager
def behind_a_proxy(stack_factory, database_url: str, service: str, health: str) -> Iterator[tuple[Stack, TcpProxy]]:  # type: ignore[no-untyped-def]
    """A stack whose database connections go through a TcpProxy the test can cut; `service` started."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        stack = stack_factory(url.set(port=proxy.port).render_as_string(hide_password=False))
        stack.prepare()
        stack.start_service(service)
        stack.wait_healthy(service, health, timeout=90)
        yield stack, proxy
    finally:
        proxy.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_database_outage_answers_503_with_retry_after_then_recovers(stack_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    with behind_a_proxy(stack_factory, database_url, "ingest", "/v1/health") as (stack, proxy):
        ok = httpx.post(f"{stack.ingest}/v1/events", json=activities("p", 10), headers=stack.headers, timeout=10)
        assert ok.status_code == 202
        proxy.down()
        r = httpx.post(f"{stack.ingest}/v1/events", json=activities("q", 10), headers=stack.headers, timeout=30)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "2"
        assert r.headers["content-type"].startswith("application/problem+json")
        proxy.up()

        def accepted_again() -> bool:
            again = httpx.post(f"{stack.ingest}/v1/events", json=activities("q", 10), headers=stack.headers, timeout=30)
            return again.status_code == 202 and again.json() == {"accepted": 10, "duplicates": 0}

        wait_until(accepted_again, timeout=30, interval=0.5, what="ingest accepting after the database returns")
        assert sum(ledger_ids(stack).values()) == 20


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_gateway_answers_503_with_retry_after_while_its_database_is_away(stack_factory, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """A request the gateway cannot answer without SQL (a key it has not seen: keys are looked up in the
    database) gets a retryable problem, not a dropped connection, while the database is unreachable; the
    same request gets its real answer once the database is back."""
    with behind_a_proxy(stack_factory, database_url, "api", "/v1/health") as (stack, proxy):
        reps = f"{stack.api}/v1/reps"

        def with_new_key() -> httpx.Response:  # a fresh key each time: no cached verdict to lean on
            return httpx.get(reps, headers={"Authorization": f"Bearer sp_{uuid.uuid4().hex}"}, timeout=60)

        assert with_new_key().status_code == 401
        proxy.down()
        r = with_new_key()
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "2"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "retry" in r.json()["detail"]
        assert httpx.get(f"{stack.api}/v1/health", timeout=10).status_code == 200
        proxy.up()
        wait_until(lambda: with_new_key().status_code == 401, timeout=60, interval=0.5, what="keys checked again")
