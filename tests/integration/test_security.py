"""Security on real processes: rate limits per key and per client address (429 with Retry-After, nothing
accepted is lost), keys kept out of the logs, security headers on the JSON API, WebSocket origins, revoked
keys on ingest, and the refusal of a guessable admin key in a production-shaped deployment.

Each test that meets a per-address limit connects from its own loopback address (127.0.0.N), so the tests do
not spend each other's budgets; each per-key test uses keys of its own."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select, update

from services.common import db
from services.common.auth import create_key
from services.common.models import ApiKey, LedgerEntry
from services.common.security_headers import JSON_POLICY
from tests.setup_tools import system_command
from tests.support.events import activity
from tests.support.stack import ROOT, Stack, free_port, run_db, sqlite_stack, stop_processes, wait_until

pytestmark = pytest.mark.integration

# Tight limits so a test meets them in a few requests; 0.2 per second refills one unit every 5 s.
LIMITS = {
    "SALESPULSE_RATE_INGEST_REQUESTS": "0.2",
    "SALESPULSE_RATE_INGEST_REQUESTS_BURST": "3",
    "SALESPULSE_RATE_INGEST_EVENTS": "0.5",
    "SALESPULSE_RATE_INGEST_EVENTS_BURST": "20",
    "SALESPULSE_RATE_API_REQUESTS": "0.2",
    "SALESPULSE_RATE_API_REQUESTS_BURST": "3",
    "SALESPULSE_RATE_AUTH_FAILURES": "0.2",
    "SALESPULSE_RATE_AUTH_FAILURES_BURST": "3",
    "SALESPULSE_RATE_WS_CONNECTS": "0.2",
    "SALESPULSE_RATE_WS_CONNECTS_BURST": "3",
    "SALESPULSE_WS_ALLOWED_ORIGINS": "https://tv.example.com",
    "SALESPULSE_LOG_LEVEL": "INFO",  # uvicorn's access log on: it must not show a key either
}
TRIES = 30  # requests a test makes at most to run a budget down
_addresses = itertools.count(10)
Keys = dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def secured(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with tight limits (scoring too: the gateway is ready, and opens live sockets, only once the
    pipeline has caught up with the ledger)."""
    stack = sqlite_stack(broker, tmp_path_factory, "sec", **LIMITS)
    stack.start()
    board = {"title": "Revenue this month", "metric": "revenue", "period": "month"}
    httpx.put(f"{stack.api}/v1/boards/floor", json=board, headers=stack.headers, timeout=10).raise_for_status()
    yield stack
    stack.stop()


# Keys by test, named by role: made in-process in one go (the `keys` CLI path is covered by test_gateway).
KEY_NAMES = (
    "ingest-budget", "ingest-other", "ingest-events", "ingest-log", "ingest-revoked",
    "viewer-budget", "viewer-other", "viewer-ws", "viewer-origin", "viewer-log", "viewer-headers",
    "viewer-guessed",
)


@pytest.fixture(scope="module")
def keys(secured: Stack) -> Keys:
    """name -> (key_id, key) for each of KEY_NAMES, with the role its name starts with."""

    async def create() -> Keys:
        engine = db.create_engine(secured.database_url)
        try:
            sessions = db.sessionmaker(engine)
            return {
                name: await create_key(sessions, role=name.split("-")[0], name=name)  # type: ignore[arg-type]
                for name in KEY_NAMES
            }
        finally:
            await engine.dispose()

    return asyncio.run(create())


def new_address() -> str:
    """A loopback address no other test has used: its own per-address budgets."""
    return f"127.0.0.{next(_addresses)}"


def client(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def until_refused(
    send: Callable[[int], httpx.Response], passing: tuple[int, ...] = (200, 202)
) -> tuple[list[int], httpx.Response]:
    """Call send(0), send(1), ... until one is refused with 429; the indexes that passed, and the refusal."""
    passed = []
    for n in range(TRIES):
        response = send(n)
        if response.status_code == 429:
            return passed, response
        assert response.status_code in passing, response.text
        passed.append(n)
    raise AssertionError(f"no 429 in {TRIES} requests")


def assert_rate_limited(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1
    detail = response.json()["detail"]
    assert setting in detail and f"Retry after {response.headers['retry-after']} s" in detail


def stored(stack: Stack, event_ids: list[str]) -> set[str]:
    async def query(session):  # type: ignore[no-untyped-def]
        rows = await session.execute(select(LedgerEntry.event_id).where(LedgerEntry.event_id.in_(event_ids)))
        return set(rows.scalars())

    return run_db(stack.database_url, query)  # type: ignore[no-any-return]


def post_events(http: httpx.Client, stack: Stack, body: object, key: str, query: str = "") -> httpx.Response:
    return http.post(f"{stack.ingest}/v1/events{query}", json=body, headers=bearer(key))


def metric(base: str, sample: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample + " "))


def refusals(base: str, limit: str) -> float:
    return metric(base, f'salespulse_rate_limited_total{{limit="{limit}"}}')


def test_ingest_refuses_a_key_over_its_request_budget_and_keeps_what_it_accepted(secured: Stack, keys: Keys) -> None:
    key, other = keys["ingest-budget"][1], keys["ingest-other"][1]
    with client(new_address()) as http:

        def send(n: int) -> httpx.Response:
            return post_events(http, secured, activity(f"rq-{n}"), key)

        passed, refused = until_refused(send)
        assert_rate_limited(refused, "SALESPULSE_RATE_INGEST_REQUESTS")
        assert "per API key" in refused.json()["detail"]
        late = f"rq-{len(passed)}"
        assert post_events(http, secured, activity("rq-other"), other).status_code == 202
        accepted = [f"rq-{n}" for n in passed]
        assert stored(secured, [*accepted, late, "rq-other"]) == {*accepted, "rq-other"}

        wait_until(lambda: send(len(passed)).status_code == 202, timeout=60, interval=0.5, what="the budget to refill")
    assert stored(secured, [*accepted, late]) == {*accepted, late}
    assert refusals(secured.ingest, "ingest_requests") >= 1


def test_ingest_refuses_a_batch_over_the_event_budget_and_accepts_none_of_it(secured: Stack, keys: Keys) -> None:
    key = keys["ingest-events"][1]
    first = [activity(f"ev-a{n}") for n in range(15)]
    second = [activity(f"ev-b{n}") for n in range(15)]
    with client(new_address()) as http:
        assert post_events(http, secured, first, key).status_code == 202
        refused = post_events(http, secured, second, key)
        assert_rate_limited(refused, "SALESPULSE_RATE_INGEST_EVENTS")
        too_big = post_events(http, secured, [*second, *first[:6]], key)
    assert too_big.status_code == 413 and "SALESPULSE_RATE_INGEST_EVENTS_BURST" in too_big.json()["detail"]
    ids = [e["event_id"] for e in first + second]
    assert stored(secured, ids) == {e["event_id"] for e in first}  # type: ignore[misc]


def test_the_gateway_limits_each_key_and_other_keys_go_on(secured: Stack, keys: Keys) -> None:
    key, other = keys["viewer-budget"][1], keys["viewer-other"][1]
    with client(new_address()) as http:
        _, refused = until_refused(lambda _: http.get(f"{secured.api}/v1/boards", headers=bearer(key)))
        assert_rate_limited(refused, "SALESPULSE_RATE_API_REQUESTS")
        assert http.get(f"{secured.api}/v1/boards", headers=bearer(other)).status_code == 200
        wait_until(
            lambda: http.get(f"{secured.api}/v1/boards", headers=bearer(key)).status_code == 200,
            timeout=60,
            interval=0.5,
            what="the key's budget to refill",
        )
    assert refusals(secured.api, "api_requests") >= 1


def test_an_address_that_keeps_sending_unknown_keys_is_refused_and_others_are_not(
    secured: Stack, keys: Keys
) -> None:
    with client(new_address()) as guessing:
        _, refused = until_refused(
            lambda n: guessing.get(f"{secured.api}/v1/boards", headers=bearer(f"sp_guess_{n}")), passing=(401,)
        )
        assert_rate_limited(refused, "SALESPULSE_RATE_AUTH_FAILURES")
        # Out of budget, the address is still served with a valid key (a TV behind the guesser's NAT), and
        # still refused with a made-up one.
        assert guessing.get(f"{secured.api}/v1/boards", headers=bearer(keys["viewer-guessed"][1])).status_code == 200
        assert_rate_limited(guessing.get(f"{secured.api}/v1/boards", headers=bearer("sp_guess_again")),
                            "SALESPULSE_RATE_AUTH_FAILURES")
    with client(new_address()) as elsewhere:
        assert elsewhere.get(f"{secured.api}/v1/boards", headers=bearer("sp_guess_x")).status_code == 401
    with client(new_address()) as ingest_guessing:
        _, refused = until_refused(
            lambda n: post_events(ingest_guessing, secured, activity("g"), f"g{n}"),
            passing=(401,),
        )
    assert_rate_limited(refused, "SALESPULSE_RATE_AUTH_FAILURES")
    assert refusals(secured.api, "auth_failures") >= 1 and refusals(secured.ingest, "auth_failures") >= 1


@pytest.fixture(scope="module")
def proxied(secured: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """deploy/nginx.conf run as a local process in front of a gateway: the proxy's URL and its access log.
    The gateway trusts X-Forwarded-For from anyone here (`*`), so the proxy alone must make the header honest
    (the compose file also narrows the trust to the proxy's address: tests/integration/test_compose_file.py)."""
    nginx = system_command("nginx")
    assert nginx, "nginx is installed by `make test` (tests/setup_tools.py)"
    secured.start_service("api", instance="api-proxied", SALESPULSE_FORWARDED_ALLOW_IPS="*")
    secured.wait_healthy("api-proxied", "/v1/ready")
    work = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = f"\n    server 127.0.0.1:{secured.ports['api-proxied']};"
    conf = re.sub(r"(\s*server api-\d+:8000;)+", upstream, conf, count=1)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("/var/log/nginx/", f"{work}/")
    (work / "default.conf").write_text(conf)
    temp = " ".join(f"{kind}_temp_path {work}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (work / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
        f"events {{}}\nhttp {{ {temp} include {work}/default.conf; }}\n"
    )
    proc = subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work)], stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None or port_open(port), what="nginx listening")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield f"http://127.0.0.1:{port}", work / "access.log"
    finally:
        stop_processes([proc], grace=10)
        secured.kill("api-proxied", signal.SIGTERM)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_forged_x_forwarded_for_through_the_proxy_does_not_change_which_address_is_limited(
    secured: Stack, proxied: tuple[str, Path]
) -> None:
    proxy, access_log = proxied
    with client(new_address()) as guessing:
        # Each request claims another client address; the limit still counts the real one.
        _, refused = until_refused(
            lambda n: guessing.get(f"{proxy}/v1/boards", headers={**bearer(f"sp_guess_{n}"),
                                                                   "X-Forwarded-For": f"203.0.113.{n}"}),
            passing=(401,),
        )
        assert_rate_limited(refused, "SALESPULSE_RATE_AUTH_FAILURES")
    with client(new_address()) as elsewhere:  # another real address through the same proxy: its own budget
        assert elsewhere.get(f"{proxy}/v1/boards", headers=bearer("sp_guess_x")).status_code == 401
        assert elsewhere.get(f"{proxy}/screens/board/floor?token=sp_secret_in_the_query").status_code == 200
    logged = wait_until(lambda: "/screens/board/floor" in (text := access_log.read_text()) and text,
                        what="the proxy's access log written")
    assert "sp_secret" not in logged and "token=" not in logged and "sp_guess" not in logged


async def open_board(stack: Stack, key: str, address: str, **options: object) -> dict[str, object]:
    """Open the board socket from `address` and return its first message."""
    url = f"{stack.ws}/v1/ws/boards/floor?token={key}"
    async with websockets.connect(url, local_addr=(address, 0), **options) as ws:  # type: ignore[arg-type]
        return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


def refused_handshake(stack: Stack, key: str, address: str, **options: object) -> websockets.InvalidStatus:
    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(open_board(stack, key, address, **options))
    return refused.value


def test_websocket_connection_attempts_are_limited_per_client_address(secured: Stack, keys: Keys) -> None:
    key = keys["viewer-ws"][1]
    address = new_address()
    refusal: websockets.InvalidStatus | None = None
    for _ in range(TRIES):
        try:
            assert asyncio.run(open_board(secured, key, address))["type"] == "standings"
        except websockets.InvalidStatus as exc:
            refusal = exc
            break
    assert refusal is not None, f"no refusal in {TRIES} connection attempts"
    response = refusal.response
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert "SALESPULSE_RATE_WS_CONNECTS" in json.loads(response.body)["detail"]
    assert asyncio.run(open_board(secured, key, new_address()))["type"] == "standings"  # another address
    wait_until(
        lambda: _opens(secured, key, address), timeout=60, interval=0.5, what="the address's budget to refill"
    )
    assert refusals(secured.api, "ws_connects") >= 1


def _opens(stack: Stack, key: str, address: str) -> bool:
    try:
        return asyncio.run(open_board(stack, key, address))["type"] == "standings"
    except websockets.InvalidStatus:
        return False


def test_websockets_open_from_allowed_origins_and_are_refused_from_others(secured: Stack, keys: Keys) -> None:
    key = keys["viewer-origin"][1]
    own = f"http://127.0.0.1:{secured.ports['api']}"
    for origin in ("https://tv.example.com", own):
        first = asyncio.run(open_board(secured, key, new_address(), origin=origin))
        assert first["type"] == "standings" and first["board_id"] == "floor"
    refused = refused_handshake(secured, key, new_address(), origin="https://evil.example")
    assert refused.response.status_code == 403
    assert refused.response.headers["Content-Type"].startswith("application/problem+json")
    detail = json.loads(refused.response.body)["detail"]
    assert "https://evil.example" in detail and "SALESPULSE_WS_ALLOWED_ORIGINS" in detail
    assert metric(secured.api, "salespulse_ws_origin_refused_total") >= 1


def test_keys_never_reach_the_logs(secured: Stack, keys: Keys) -> None:
    viewer, ingest = keys["viewer-log"][1], keys["ingest-log"][1]
    unknown = "sp_" + secrets.token_urlsafe(32)
    custom = "not-a-real-key-" + secrets.token_hex(8)  # a key in no known format: only its place gives it away
    with client(new_address()) as http:
        assert http.get(f"{secured.api}/screens/board/floor?token={viewer}").status_code == 200
        assert http.get(f"{secured.api}/v1/boards?token={viewer}", headers=bearer(viewer)).status_code == 200
        assert http.get(f"{secured.api}/v1/boards", headers=bearer(unknown)).status_code == 401
        assert post_events(http, secured, activity("log-1"), ingest, query=f"?token={custom}").status_code == 202
        assert post_events(http, secured, activity("log-2"), custom).status_code == 401
    assert asyncio.run(open_board(secured, viewer, new_address()))["type"] == "standings"

    async def refused_socket() -> int:
        url = f"{secured.ws}/v1/ws/reps/ada?token={custom}"
        async with websockets.connect(url, local_addr=(new_address(), 0)) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code if closed.value.rcvd else 0

    assert asyncio.run(refused_socket()) == 4401
    logs = {name: secured.data_dir / f"{name}.log" for name in ("api", "ingest")}

    def logged() -> dict[str, str] | None:
        text = {name: path.read_text(errors="replace") for name, path in logs.items()}
        seen = (
            "/screens/board/floor?token=***" in text["api"]
            and "/v1/ws/boards/floor?token=***" in text["api"]
            and "/v1/ws/reps/ada?token=***" in text["api"]
            and "/v1/events?token=***" in text["ingest"]
        )
        return text if seen else None

    text = wait_until(logged, timeout=30, what="the access log lines of those requests")
    for name, body in text.items():
        for secret in (viewer, ingest, unknown, custom, secured.admin_key):
            assert secret not in body, f"a key is in the {name} log"


def test_the_json_api_and_error_pages_carry_security_headers(secured: Stack, keys: Keys) -> None:
    viewer = keys["viewer-headers"][1]
    with client(new_address()) as http:
        answers = {
            "api health": http.get(f"{secured.api}/v1/health"),
            "api read": http.get(f"{secured.api}/v1/boards", headers=bearer(viewer)),
            "api 401": http.get(f"{secured.api}/v1/boards"),
            "screen asset 404": http.get(f"{secured.api}/screens/static/nope.js"),
            "ingest health": http.get(f"{secured.ingest}/v1/health"),
            "ingest 401": http.post(f"{secured.ingest}/v1/events", json=activity("hdr-1")),
        }
        page = http.get(f"{secured.api}/screens/board/floor")
    for what, response in answers.items():
        assert response.headers["x-content-type-options"] == "nosniff", what
        assert response.headers["referrer-policy"] == "no-referrer", what
        assert response.headers["x-frame-options"] == "DENY", what
        assert response.headers["content-security-policy"] == JSON_POLICY, what
    assert "script-src 'self'" in page.headers["content-security-policy"]  # the screens keep their own policy


def test_a_revoked_key_stops_posting_to_ingest(secured: Stack, keys: Keys) -> None:
    key_id, key = keys["ingest-revoked"]
    answers: dict[str, httpx.Response] = {}
    with client(new_address()) as http:

        def attempt() -> httpx.Response:
            event_id = f"rv-{len(answers)}"
            answers[event_id] = post_events(http, secured, activity(event_id), key)
            return answers[event_id]

        assert attempt().status_code == 202
        run_db(secured.database_url, lambda session: revoke(session, key_id))
        # The key store caches a lookup for 2 s: posts keep passing until then (or meet the key's rate limit),
        # and none of those accepted is lost.
        wait_until(lambda: attempt().status_code == 401, timeout=30, interval=0.5, what="the revoked key refused")
    *passed, refused = answers
    assert "revoked" in answers[refused].json()["detail"]
    assert {answers[event_id].status_code for event_id in passed} <= {202, 429}
    assert stored(secured, list(answers)) == {event_id for event_id in passed if answers[event_id].status_code == 202}


async def revoke(session: Any, key_id: str) -> None:
    """What `salespulse keys revoke` does."""
    await session.execute(update(ApiKey).where(ApiKey.key_id == key_id).values(revoked_at=datetime.now(UTC)))
    await session.commit()


@pytest.mark.parametrize("command", ["api", "up"])  # every service goes through api's check; up has its own
def test_a_production_deployment_refuses_a_guessable_admin_key(command: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SALESPULSE_DATA_DIR": str(tmp_path),
        "SALESPULSE_DATABASE_URL": "postgresql+asyncpg://salespulse@127.0.0.1:1/none",
        "SALESPULSE_ADMIN_KEY": "changeme",
    }
    run = subprocess.run(
        [sys.executable, "-m", "services.cli.main", command], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "SALESPULSE_ADMIN_KEY" in run.stderr and "at least 24" in run.stderr
    assert "changeme" not in run.stderr + run.stdout


def test_the_notifier_limits_unknown_keys_per_address_like_the_other_services(secured: Stack) -> None:
    secured.start_service("notifier")
    secured.wait_healthy("notifier", "/v1/health")
    notifier = f"http://127.0.0.1:{secured.ports['notifier']}"
    with client(new_address()) as guessing:
        _, refused = until_refused(
            lambda n: guessing.post(f"{notifier}/v1/digests/run", headers=bearer(f"sp_guess_{n}")), passing=(401,)
        )
    assert_rate_limited(refused, "SALESPULSE_RATE_AUTH_FAILURES")
    assert refusals(notifier, "auth_failures") >= 1


def test_connections_beyond_a_process_concurrency_limit_get_503_and_the_rest_are_served(secured: Stack) -> None:
    secured.start_service("ingest", instance="ingest-tight", SALESPULSE_HTTP_MAX_CONCURRENCY="3")
    secured.wait_healthy("ingest-tight", "/v1/health")
    port = secured.ports["ingest-tight"]
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        for sock in held:
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")  # headers not finished: each holds a slot

        def refused() -> httpx.Response | None:
            response = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
            return response if response.status_code == 503 else None

        assert "Service Unavailable" in wait_until(refused, timeout=20, what="a 503 beyond the limit").text
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).status_code == 200,
               what="served again once the held connections closed")
    secured.kill("ingest-tight", signal.SIGTERM)
