"""`/v1/ready` tells the truth (CONTRACT.md, API gateway): it answers 200 only once scoring serves every
partition and the pipeline has caught up with the ledger as it was at start; until then 503 with progress.

Both tests start the services together, as `salespulse up` does, and watch readiness from the first instant."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from services.common.settings import Settings
from services.common.topics import ACTIVITIES, CREDITS, DEALS
from services.ingest.relay import reset_relay_cursor
from tests.support.clock import now_stamp
from tests.support.metrics import metric, scrape
from tests.support.stack import Stack, sqlite_stack, wait_until

PARTITIONS = 4  # tests/support/stack.py: the services' default
REPS = [f"rep{i:02d}" for i in range(12)]


def won(event_id: str, rep: str, amount: str) -> dict[str, Any]:
    now = now_stamp()
    return {"event_id": event_id, "type": "deal", "occurred_at": now, "deal_id": f"d-{event_id}", "owner_id": rep,
            "stage": "won", "amount": amount, "closed_at": now}


def call(event_id: str, rep: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "activity", "occurred_at": now_stamp(), "rep_id": rep, "kind": "call"}


def post(stack: Stack, events: list[dict[str, Any]]) -> None:
    r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=60)
    assert r.status_code == 202, r.text


def month_kpis(stack: Stack, rep: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.api}/v1/reps/{rep}/kpis?period=month", headers=stack.headers, timeout=10)
    return r.json()["kpis"] if r.status_code == 200 else {}


def start_together(stack: Stack, **scoring_env: str) -> None:
    """Every service at once, nothing waited for: readiness must be the only thing that says when to go."""
    for name in ("ingest", "scoring", "api"):
        stack.start_service(name, **(scoring_env if name == "scoring" else {}))


def watch_ready(stack: Stack, timeout: float = 180.0) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """Poll /v1/ready as fast as it answers; returns the first 200 and the 503 bodies seen before it."""
    not_ready: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            for label, service in stack.services.items():
                assert service.proc.poll() is None, f"{label} exited:\n{stack.tail(label)}"
            try:
                answer = client.get(f"{stack.api}/v1/ready")
            except httpx.HTTPError:
                continue  # the gateway is not listening yet
            if answer.status_code == 200:
                return answer, not_ready
            assert answer.status_code == 503, answer.text
            not_ready.append(answer.json())
    raise AssertionError(f"not ready within {timeout:.0f} s; last: {not_ready[-1:]}")


@pytest.fixture
def fresh(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    stack = sqlite_stack(broker, tmp_path_factory, "ready")
    stack.prepare()
    yield stack
    stack.stop()


def test_the_first_event_posted_when_ready_first_answers_200_is_seen_at_once(fresh: Stack) -> None:
    stack = fresh
    start_together(stack)
    ready, before = watch_ready(stack)
    posted = time.monotonic()
    stack.wait_healthy("ingest", "/v1/health")
    post(stack, [won(f"first-{uuid.uuid4().hex[:6]}", "ada", "250.00")])
    wait_until(lambda: month_kpis(stack, "ada").get("revenue") == 250.0, timeout=30, interval=0.01,
               what="the first event in ada's KPIs")
    seen = time.monotonic() - posted
    print(f"first event after ready: visible {seen * 1000:.0f} ms after posting")

    # Ready means scoring serves every source partition: its own metrics say so, independently of the gateway.
    body = ready.json()
    assert body["scoring"] is True and body["caught_up"] is True and body["progress"]["stage"] == "live"
    served = scrape(stack, "scoring")
    for kind in (DEALS, CREDITS, ACTIVITIES):
        topic = f"{stack.topic_prefix}{kind}"
        assigned = metric(served, "salespulse_scoring_assigned_partitions", topic=topic)
        assert assigned == PARTITIONS, (topic, assigned)
    assert metric(served, "salespulse_scoring_serving") == 1
    # Until then it said what it waited for, in the documented shape.
    for answer in before:
        assert answer["ready"] is False
        assert {"caught_up", "stage", "behind", "eta_seconds"} <= set(answer["progress"])
        assert not (answer["scoring"] and answer["caught_up"] and answer["database"] and answer["read_model"]
                    and answer["config"] and answer["notifications"])


def test_after_a_restart_onto_an_empty_broker_ready_waits_for_every_kpi(fresh: Stack) -> None:
    stack = fresh.start()
    stack.wait_healthy("ingest", "/v1/health")
    # A ledger big enough that catching up takes a while: 12 reps, 1,000 events each.
    expected: dict[str, tuple[float, int, int]] = {}
    batch: list[dict[str, Any]] = []
    for rep_no, rep in enumerate(REPS):
        deals = 300 + 20 * rep_no
        for i in range(deals):
            batch.append(won(f"{rep}-w{i}", rep, "10.00"))
        for i in range(1000 - deals):
            batch.append(call(f"{rep}-c{i}", rep))
        expected[rep] = (10.0 * deals, deals, 1000 - deals)
    for start in range(0, len(batch), 2000):
        post(stack, batch[start : start + 2000])
    wait_until(lambda: all(_matches(month_kpis(stack, rep), want) for rep, want in expected.items()),
               timeout=240, interval=0.5, what="every rep's KPIs before the restart")

    # The embedded broker keeps nothing: a restart is fresh topics and the ledger replayed into them, as
    # `salespulse up` does (reset the relay cursor, start everything).
    stack.stop()
    stack.topic_prefix = f"ready{uuid.uuid4().hex[:6]}."
    stack.prepare()
    settings = Settings(database_url=stack.database_url, kafka_bootstrap=stack.bootstrap,
                        topic_prefix=stack.topic_prefix, data_dir=stack.data_dir)
    asyncio.run(reset_relay_cursor(settings, 0))
    # Folded in batches of 20, catching up spans several of scoring's once-a-second reports of how far it has
    # folded, so the backlog can be seen going down: at full speed the whole ledger fits between two reports.
    start_together(stack, SALESPULSE_SCORING_BATCH_SIZE="20", SALESPULSE_SCORING_BATCH_MAX="20")
    refused = screen_while_catching_up(stack)
    ready, before = watch_ready(stack)

    # A screen that connected while catching up was told so, with progress, and asked to come back.
    assert refused["message"]["type"] == "catching_up" and refused["message"]["behind"] > 0, refused
    assert refused["code"] == 1013 and refused["reason"].startswith("catching up:"), refused
    # The moment it says ready, every KPI is complete: nothing partial was ever called ready.
    got = {rep: month_kpis(stack, rep) for rep in REPS}
    wrong = {rep: (got[rep], want) for rep, want in expected.items() if not _matches(got[rep], want)}
    assert not wrong, f"ready with partial KPIs: {wrong}"
    assert ready.json()["progress"] == {"caught_up": True, "stage": "live", "behind": 0, "eta_seconds": 0.0}
    # And while catching up, it said how far behind it was, going down, with an estimate once it had a rate.
    behind = [answer["progress"]["behind"] for answer in before if answer["progress"]["behind"] > 0]
    assert behind, f"never reported a backlog: {before[-3:]}"
    assert max(behind) >= 1000, max(behind)
    assert behind[-1] < max(behind), behind
    assert any(answer["progress"]["eta_seconds"] for answer in before), "no estimate while catching up"
    stages = [answer["progress"]["stage"] for answer in before]
    assert set(stages) <= {"ledger", "scoring", "credits", "read model", "live"}, set(stages)
    # "live" while not ready: caught up, and waiting on something else (a worker's presence, a feed's position).
    for answer in before:
        if answer["progress"]["stage"] == "live":
            assert answer["progress"]["caught_up"] and not (
                answer["scoring"] and answer["database"] and answer["read_model"] and answer["config"]
                and answer["notifications"]), answer


def screen_while_catching_up(stack: Stack) -> dict[str, Any]:
    """Open a rep's live socket as soon as the gateway says it is catching up; what the screen was told."""
    wait_until(lambda: _catching_up(stack), timeout=120, interval=0.05, what="the gateway catching up")
    with connect(f"{stack.ws}/v1/ws/reps/rep00?token={stack.admin_key}", open_timeout=10) as ws:
        message = json.loads(ws.recv(timeout=10))
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return {"message": message, "code": closed.rcvd.code, "reason": closed.rcvd.reason}
    raise AssertionError(f"the socket stayed open while catching up; first message: {message}")


def _catching_up(stack: Stack) -> bool:
    try:
        answer = httpx.get(f"{stack.api}/v1/ready", timeout=5)
    except httpx.HTTPError:
        return False
    return answer.status_code == 503 and answer.json()["progress"]["behind"] > 1000


def _matches(kpis: dict[str, Any], want: tuple[float, int, int]) -> bool:
    revenue, deals, calls = want
    return (kpis.get("revenue"), kpis.get("deals_won"), kpis.get("activities")) == (revenue, deals, calls)
