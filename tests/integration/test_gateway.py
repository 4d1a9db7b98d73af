"""The gateway on a real stack: live WebSockets, slow screens, revoked keys, roles on every route, replicas."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from services.common.kafka import make_producer
from services.common.settings import Settings
from services.common.topics import CONFIG, DEAD_LETTER, NOTIFICATIONS, REP_SNAPSHOTS, partition_for, topic_name
from tests.support.events import activity, post, recv_json, won
from tests.support.kafka import read_topic_raw
from tests.support.metrics import connected_screens, scrape
from tests.support.stack import ROOT, Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Stack:  # type: ignore[misc]
    stack = sqlite_stack(
        broker,
        tmp_path_factory,
        "gw",
        SALESPULSE_WS_SEND_TIMEOUT="2",
        SALESPULSE_WS_PING_INTERVAL="1",
        SALESPULSE_WS_PING_TIMEOUT="2",
    ).start()
    headers = stack.headers
    httpx.put(f"{stack.api}/v1/teams/east", json={"name": "East"}, headers=headers).raise_for_status()
    for rep, name in (("ada", "Ada"), ("bob", "Bob"), ("cy", "Cy")):
        httpx.put(
            f"{stack.api}/v1/reps/{rep}", json={"name": name, "team_id": "east"}, headers=headers
        ).raise_for_status()
    board = {"title": "Revenue this month", "metric": "revenue", "period": "month", "size": 10}
    httpx.put(f"{stack.api}/v1/boards/floor", json=board, headers=headers).raise_for_status()
    yield stack
    stack.stop()


def test_board_socket_sends_standings_on_connect_and_after_an_event(stack: Stack) -> None:
    async def scenario() -> None:
        url = f"{stack.ws}/v1/ws/boards/floor?token={stack.admin_key}"
        async with websockets.connect(url) as ws:
            first = await recv_json(ws)
            assert first["type"] == "standings" and first["board_id"] == "floor"
            assert {e["rep_id"] for e in first["entries"]} >= {"ada", "bob", "cy"}
            post(stack, [won("bs1", "bob", "500.00")])
            while True:
                message = await recv_json(ws, 10)
                if message["type"] == "standings" and message["entries"][0]["rep_id"] == "bob":
                    break
            assert message["entries"][0]["value"] >= 500.0 and message["entries"][0]["rank"] == 1
            assert message["entries"][0]["name"] == "Bob"

    asyncio.run(scenario())


def test_unknown_board_and_bad_keys_close_with_a_reason(stack: Stack) -> None:
    async def scenario() -> None:
        for url, code in (
            (f"{stack.ws}/v1/ws/boards/nope?token={stack.admin_key}", 4404),
            (f"{stack.ws}/v1/ws/boards/floor?token=wrong", 4401),
            (f"{stack.ws}/v1/ws/reps/ada", 4401),
        ):
            async with websockets.connect(url) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code
                assert closed.value.rcvd.reason

    asyncio.run(scenario())


def test_a_screen_that_never_reads_does_not_delay_others_and_is_dropped(stack: Stack) -> None:
    rounds = 20

    async def scenario() -> list[float]:
        url = f"{stack.ws}/v1/ws/reps/cy?token={stack.admin_key}"
        # The stuck screen: a tiny TCP window and a client that never reads (so it never answers a ping either).
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        raw.connect(("127.0.0.1", stack.ports["api"]))
        stuck = await websockets.connect(url, sock=raw, max_queue=1, ping_interval=None)
        stuck.transport.pause_reading()
        delays: list[float] = []
        async with websockets.connect(url) as healthy:
            await recv_json(healthy)
            for round_no in range(rounds):
                sent = time.monotonic()
                await asyncio.to_thread(post, stack, [activity(f"slow-{round_no}-{i}", "cy") for i in range(20)])
                while True:
                    message = await recv_json(healthy, 10)
                    if message["kpis"]["year"]["kpis"]["activities"] >= 20 * (round_no + 1):
                        break
                delays.append(time.monotonic() - sent)
            # The stuck screen is dropped (keepalive), the healthy one stays.
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(connected_screens, stack, "rep") != 1:
                assert time.monotonic() < deadline, "the stuck screen was not dropped"
                await asyncio.sleep(0.2)
            assert healthy.state is websockets.State.OPEN
        stuck.transport.close()
        return delays

    delays = asyncio.run(scenario())
    assert len(delays) == rounds  # the healthy screen saw the effect of every round while the other was stuck


def test_revoked_key_closes_its_open_socket(stack: Stack) -> None:
    key_id, key = stack.create_key("viewer")

    async def scenario() -> int:
        async with websockets.connect(f"{stack.ws}/v1/ws/boards/floor?token={key}") as ws:
            await recv_json(ws)
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "services.cli.main", "keys", "revoke", key_id],
                env=stack.env(),
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    assert asyncio.run(scenario()) == 4401
    r = httpx.get(f"{stack.api}/v1/boards", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401


ROUTES: list[tuple[str, str, object, str]] = [
    # method, path, body, the least role that may call it
    ("GET", "/v1/reps", None, "viewer"),
    ("GET", "/v1/reps/ada", None, "viewer"),
    ("PUT", "/v1/reps/zed", {"name": "Zed"}, "admin"),
    ("DELETE", "/v1/reps/zed", None, "admin"),
    ("GET", "/v1/teams", None, "viewer"),
    ("GET", "/v1/teams/east", None, "viewer"),
    ("PUT", "/v1/teams/west", {"name": "West"}, "admin"),
    ("DELETE", "/v1/teams/west", None, "admin"),
    ("GET", "/v1/plans", None, "viewer"),
    (
        "PUT",
        "/v1/plans/p1",
        {
            "name": "P",
            "metric": "revenue",
            "period": "month",
            "effective_from": "2026-01-01",
            "quota": 1000,
            "tiers": [{"tier_id": "t", "name": "T", "threshold": 1.0, "rate": 0.1}],
        },
        "admin",
    ),
    ("GET", "/v1/plans/p1", None, "viewer"),
    ("DELETE", "/v1/plans/p1", None, "admin"),
    ("GET", "/v1/boards", None, "viewer"),
    ("GET", "/v1/boards/floor", None, "viewer"),
    ("PUT", "/v1/boards/b2", {"title": "B", "metric": "revenue", "period": "week"}, "admin"),
    ("DELETE", "/v1/boards/b2", None, "admin"),
    ("GET", "/v1/reps/ada/kpis", None, "viewer"),
    ("GET", "/v1/teams/east/kpis", None, "viewer"),
    ("GET", "/v1/reps/ada/progress", None, "viewer"),
    ("GET", "/v1/boards/floor/standings", None, "viewer"),
    ("GET", "/v1/achievements", None, "viewer"),
    ("PUT", "/v1/achievements/a1", {"name": "A", "rule": {"kind": "deal", "at_least": 10}}, "admin"),
    ("GET", "/v1/achievements/a1", None, "viewer"),
    ("DELETE", "/v1/achievements/a1", None, "admin"),
    ("GET", "/v1/reps/ada/achievements", None, "viewer"),
    ("GET", "/v1/streaks", None, "viewer"),
    ("PUT", "/v1/streaks/s1", {"name": "S", "rule": {"metric": "activities.call", "at_least": 5}}, "admin"),
    ("GET", "/v1/streaks/s1", None, "viewer"),
    ("GET", "/v1/streaks/s1/standings", None, "viewer"),
    ("GET", "/v1/reps/ada/streaks", None, "viewer"),
    ("DELETE", "/v1/streaks/s1", None, "admin"),
]


def test_authorization_matrix(stack: Stack) -> None:
    keys = {"viewer": stack.create_key("viewer")[1], "ingest": stack.create_key("ingest")[1], "admin": stack.admin_key}
    allowed = {"viewer": {"viewer", "admin"}, "admin": {"admin"}}
    failures = []
    with httpx.Client(base_url=stack.api, timeout=10) as client:
        for method, path, body, least in ROUTES:
            for who in ("none", "bad", "ingest", "viewer", "admin"):
                headers = {} if who == "none" else {"Authorization": f"Bearer {keys.get(who, 'sp_bad')}"}
                r = client.request(method, path, json=body, headers=headers)
                if who in ("none", "bad"):
                    expected = {401}
                elif who in allowed[least]:
                    expected = {200, 204}
                else:
                    expected = {403}
                if r.status_code not in expected:
                    failures.append(f"{method} {path} as {who}: {r.status_code} (expected {sorted(expected)})")
                if r.status_code >= 400:
                    assert r.headers["content-type"].startswith("application/problem+json")
        health = client.get("/v1/health")
        assert health.status_code == 200  # health needs no key
    assert not failures, "\n".join(failures)


def test_two_gateway_replicas_answer_identically(stack: Stack) -> None:
    post(stack, [won("rep2-1", "ada", "700.00"), activity("rep2-2", "bob")])
    stack.start_service("api", instance="api2")
    stack.wait_healthy("api2", "/v1/ready")
    second = f"http://127.0.0.1:{stack.ports['api2']}"
    paths = [
        "/v1/reps/ada/kpis?period=month",
        "/v1/teams/east/kpis?period=year",
        "/v1/reps/bob/progress",
        "/v1/reps",
        "/v1/boards",
        "/v1/boards/floor/standings",
    ]

    def same() -> bool:
        for path in paths:
            a = httpx.get(stack.api + path, headers=stack.headers).json()
            b = httpx.get(second + path, headers=stack.headers).json()
            if isinstance(a, dict):
                a.pop("updated_at", None)
                b.pop("updated_at", None)
            if a != b:
                return False
        return True

    wait_until(same, timeout=20, what="both replicas giving the same answers")
    ada = httpx.get(second + "/v1/reps/ada/kpis?period=year", headers=stack.headers).json()
    assert ada["kpis"]["revenue"] >= 700.0


def test_unreadable_records_go_to_the_dead_letter_topic_and_the_gateway_goes_on(stack: Stack) -> None:
    settings = Settings(kafka_bootstrap=stack.bootstrap, topic_prefix=stack.topic_prefix)
    garbage = {
        REP_SNAPSHOTS: (b"cy", b'{"rep_id": "cy", "version": "newest"}'),
        CONFIG: (b"plan:broken", b'{"kind": "plan", "id": "broken", "body": {"name": "no tiers"}, "updated_ms": 1}'),
        NOTIFICATIONS: (b"cy", b"\x00not json at all"),
    }

    async def produce() -> None:
        producer = make_producer(settings)
        await producer.start()
        try:
            for topic, (key, value) in garbage.items():
                await producer.send_and_wait(topic_name(settings, topic), value, key=key,
                                             partition=partition_for(key.decode(), settings.partitions))
        finally:
            await producer.stop()

    asyncio.run(produce())

    def counted() -> dict[str, float] | None:
        samples = scrape(stack, "api").get("salespulse_dead_letters_total", [])
        found = {labels["reader"]: value for labels, value in samples}
        return found if len(found) == 3 else None

    assert wait_until(counted, timeout=20, what="three dead letters counted") == {
        "read model": 1.0, "config feed": 1.0, "notification feed": 1.0}
    dead = read_topic_raw(stack.bootstrap, topic_name(settings, DEAD_LETTER))
    from_gateway = {headers["salespulse-reader"]: value for value, headers in dead
                    if headers["salespulse-reader"] in (b"read model", b"notification feed")}
    assert from_gateway == {b"read model": garbage[REP_SNAPSHOTS][1], b"notification feed": garbage[NOTIFICATIONS][1]}
    assert garbage[CONFIG][1] in [value for value, _ in dead]
    # The readers went on: a new event still reaches the read model, and the broken plan was never applied.
    post(stack, [won("dl1", "cy", "70.00")])
    wait_until(lambda: httpx.get(f"{stack.api}/v1/reps/cy/kpis", params={"period": "month"}, headers=stack.headers,
                                 timeout=5).json()["kpis"]["revenue"] >= 70.0, timeout=20, what="cy's new deal")
    assert httpx.get(f"{stack.api}/v1/plans/broken", headers=stack.headers, timeout=5).status_code == 404
