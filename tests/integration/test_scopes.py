"""Roles and scopes on every route and socket (CONTRACT.md §6, docs/security.md "Scopes"): admin, ingest,
viewer, a screen key for one board, a rep key, a manager key and an expired key, each against data inside
and outside its scope; what non-admins see of personal data; and the `keys` command that makes scoped keys.

The roster: team west (reps w1, w2) and team east (rep e1). Boards: `west` (team west only), `east` (team east
only) and `floor` (everyone). The screen key shows board `west`; the rep key is w1's; the manager key is west's.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets

from services.api.statements import statement_id
from services.common import db
from services.common.auth import Scope, create_key
from tests.support.events import AE_PLAN, deal, post
from tests.support.stack import ROOT, Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

PER_KEY = 2  # the module's SALESPULSE_WS_MAX_PER_KEY
WHO = ("admin", "ingest", "viewer", "screen", "rep", "manager", "expired")
READ_ALL = {"admin": 200, "ingest": 403, "viewer": 200, "screen": 200, "rep": 200, "manager": 200, "expired": 401}
ADMIN_ONLY = {who: 403 for who in WHO} | {"admin": 200, "expired": 401}


def only(*readers: str, ok: int = 200) -> dict[str, int]:
    """Admin and the listed readers get `ok`, every other valid key 403, the expired key 401."""
    return {who: 403 for who in WHO} | {who: ok for who in ("admin", *readers)} | {"expired": 401}


# (method, service, path, body, expected status by key)
ROUTES: list[tuple[str, str, str, Any, dict[str, int]]] = [
    ("GET", "api", "/v1/reps", None, READ_ALL),
    ("GET", "api", "/v1/reps/w1", None, READ_ALL),
    ("GET", "api", "/v1/reps/e1", None, only("viewer")),
    ("PUT", "api", "/v1/reps/w9", {"name": "New", "team_id": "west"}, ADMIN_ONLY),
    ("DELETE", "api", "/v1/reps/w9", None, only(ok=204)),
    ("GET", "api", "/v1/teams", None, READ_ALL),
    ("GET", "api", "/v1/teams/west", None, READ_ALL),
    ("GET", "api", "/v1/teams/east", None, only("viewer")),
    ("PUT", "api", "/v1/teams/north", {"name": "North"}, ADMIN_ONLY),
    ("GET", "api", "/v1/plans", None, READ_ALL),
    ("GET", "api", "/v1/plans/ae-revenue", None, READ_ALL),
    ("GET", "api", "/v1/boards", None, READ_ALL),
    ("GET", "api", "/v1/boards/west", None, only("viewer", "screen", "manager")),
    ("GET", "api", "/v1/boards/east", None, only("viewer")),
    ("GET", "api", "/v1/boards/floor", None, only("viewer")),
    ("GET", "api", "/v1/reps/w1/kpis", None, only("viewer", "rep", "manager")),
    ("GET", "api", "/v1/reps/w2/kpis", None, only("viewer", "manager")),
    ("GET", "api", "/v1/reps/e1/kpis", None, only("viewer")),
    ("GET", "api", "/v1/teams/west/kpis", None, only("viewer", "screen", "manager")),
    ("GET", "api", "/v1/teams/east/kpis", None, only("viewer")),
    ("GET", "api", "/v1/reps/w1/progress", None, only("viewer", "rep", "manager")),
    ("GET", "api", "/v1/reps/e1/progress", None, only("viewer")),
    ("GET", "api", "/v1/boards/west/standings", None, only("viewer", "screen", "manager")),
    ("GET", "api", "/v1/boards/floor/standings", None, only("viewer")),
    ("GET", "api", "/v1/notifications", None, only("viewer", "rep", "manager")),
    ("GET", "api", "/v1/notifications?rep_id=w1", None, only("viewer", "rep", "manager")),
    ("GET", "api", "/v1/notifications?rep_id=e1", None, only("viewer")),
    ("GET", "api", "/v1/reps/w1/preferences", None, only("viewer", "rep", "manager")),
    ("GET", "api", "/v1/reps/e1/preferences", None, only("viewer")),
    ("PUT", "api", "/v1/reps/w1/preferences", {"channels": ["in_app"]}, ADMIN_ONLY),
    ("GET", "api", "/v1/whoami", None, {who: 200 for who in WHO} | {"expired": 401}),
    ("POST", "api", "/v1/plans/what-if", {"plan": AE_PLAN, "period_key": "2026-11"}, ADMIN_ONLY),
    ("GET", "api", "/v1/reps/w1/projection", None, only("viewer", "rep", "manager")),
    ("GET", "api", "/v1/reps/e1/projection", None, only("viewer")),
    ("GET", "api", "/v1/reps/w1/statements", None, only("viewer", "rep", "manager")),
    ("GET", "api", "/v1/reps/e1/statements", None, only("viewer")),
    ("GET", "api", f"/v1/statements/{statement_id('ae-revenue', '2026-11', 'w1')}", None,
     only("viewer", "rep", "manager")),
    ("GET", "api", f"/v1/statements/{statement_id('ae-revenue', '2026-11', 'e1')}", None, only("viewer")),
    ("POST", "api", "/v1/plans/ae-revenue/periods/2026-10/close", None, ADMIN_ONLY),
    ("GET", "ingest", "/v1/events/scope-seed", None, only("ingest", "viewer")),
    ("GET", "ingest", "/v1/connectors", None, ADMIN_ONLY),
    ("POST", "ingest", "/v1/connectors/hubspot/requeue", None, ADMIN_ONLY),
    ("POST", "notifier", "/v1/digests/run", None, ADMIN_ONLY),
]
# (path, keys that may open it); every other valid key is closed with 4403, the expired one with 4401.
SOCKETS = [
    ("/v1/ws/boards/west", {"admin", "viewer", "screen", "manager"}),
    ("/v1/ws/boards/east", {"admin", "viewer"}),
    ("/v1/ws/boards/floor", {"admin", "viewer"}),
    ("/v1/ws/reps/w1", {"admin", "viewer", "rep", "manager"}),
    ("/v1/ws/reps/w2", {"admin", "viewer", "manager"}),
    ("/v1/ws/reps/e1", {"admin", "viewer"}),
]


@pytest.fixture(scope="module")
def scoped(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "scopes", SALESPULSE_WS_MAX_PER_KEY=str(PER_KEY)).start()
    stack.start_service("notifier")
    stack.wait_healthy("notifier", "/v1/health")
    with httpx.Client(base_url=stack.api, headers=stack.headers, timeout=10) as http:
        for team in ("west", "east"):
            http.put(f"/v1/teams/{team}", json={"name": team.title()}).raise_for_status()
        for rep, team in (("w1", "west"), ("w2", "west"), ("e1", "east")):
            body = {"name": rep.upper(), "team_id": team, "email": f"{rep}@example.com"}
            http.put(f"/v1/reps/{rep}", json=body).raise_for_status()
        plan = {**AE_PLAN, "participants": {"teams": ["west", "east"]}}
        http.put("/v1/plans/ae-revenue", json=plan).raise_for_status()
        for board, teams in (("west", ["west"]), ("east", ["east"]), ("floor", [])):
            body = {"title": board, "metric": "revenue", "period": "month", "scope": {"teams": teams}}
            http.put(f"/v1/boards/{board}", json=body).raise_for_status()
    post(stack, deal("scope-seed", owner_id="w1"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def keys(scoped: Stack) -> dict[str, str]:
    """One key per entry of WHO (the admin's is the stack's own)."""
    made: dict[str, tuple[str, Scope, datetime | None]] = {
        "ingest": ("ingest", Scope(), None),
        "viewer": ("viewer", Scope(), None),
        "screen": ("screen", Scope(boards=frozenset({"west"})), None),
        "rep": ("rep", Scope(rep_id="w1"), None),
        "manager": ("manager", Scope(team_id="west"), None),
        "expired": ("viewer", Scope(), datetime.now(UTC) - timedelta(minutes=1)),
    }

    async def create() -> dict[str, str]:
        engine = db.create_engine(scoped.database_url)
        try:
            sessions = db.sessionmaker(engine)
            return {
                who: (await create_key(sessions, role=role, name=f"scope-{who}", scope=scope,  # type: ignore[arg-type]
                                       expires_at=expires))[1]
                for who, (role, scope, expires) in made.items()
            }
        finally:
            await engine.dispose()

    return {"admin": scoped.admin_key, **asyncio.run(create())}


def base(stack: Stack, service: str) -> str:
    return f"http://127.0.0.1:{stack.ports[service]}"


def test_every_route_answers_each_role_and_scope_as_the_matrix_says(scoped: Stack, keys: dict[str, str]) -> None:
    failures = []
    with httpx.Client(timeout=10) as http:
        for method, service, path, body, expected in ROUTES:
            for who in WHO:
                r = http.request(method, base(scoped, service) + path, json=body,
                                 headers={"Authorization": f"Bearer {keys[who]}"})
                if r.status_code != expected[who]:
                    failures.append(f"{method} {path} as {who}: {r.status_code}, wanted {expected[who]}: {r.text:.200}")
                elif r.status_code in (401, 403):
                    assert r.headers["content-type"].startswith("application/problem+json")
        posted = {who: http.post(f"{scoped.ingest}/v1/events", json=deal(f"scope-post-{who}"),
                                 headers={"Authorization": f"Bearer {keys[who]}"}).status_code for who in WHO}
    assert not failures, "\n".join(failures)
    assert posted == {who: 403 for who in WHO} | {"admin": 202, "ingest": 202, "expired": 401}


def test_an_out_of_scope_refusal_says_what_the_key_may_read(scoped: Stack, keys: dict[str, str]) -> None:
    r = httpx.get(f"{scoped.api}/v1/reps/e1/kpis", headers={"Authorization": f"Bearer {keys['rep']}"}, timeout=10)
    assert r.status_code == 403 and "reads only rep w1" in r.json()["detail"] and "'e1'" in r.json()["detail"]
    r = httpx.get(f"{scoped.api}/v1/boards", headers={"Authorization": f"Bearer {keys['expired']}"}, timeout=10)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_lists_hold_only_what_the_scope_may_see_and_no_personal_data(scoped: Stack, keys: dict[str, str]) -> None:
    def ids(who: str, path: str, field: str) -> set[str]:
        r = httpx.get(f"{scoped.api}{path}", headers={"Authorization": f"Bearer {keys[who]}"}, timeout=10)
        r.raise_for_status()
        return {entry[field] for entry in r.json()}

    assert ids("rep", "/v1/reps", "rep_id") == {"w1"}
    assert ids("manager", "/v1/reps", "rep_id") == {"w1", "w2"}
    assert ids("screen", "/v1/reps", "rep_id") == {"w1", "w2"}  # the names the board shows
    assert ids("viewer", "/v1/reps", "rep_id") >= {"w1", "w2", "e1"}
    assert ids("rep", "/v1/teams", "team_id") == {"west"}
    assert ids("screen", "/v1/boards", "board_id") == {"west"}
    assert ids("manager", "/v1/boards", "board_id") == {"west"}
    assert ids("rep", "/v1/boards", "board_id") == set()

    def emails(who: str) -> set[str | None]:
        r = httpx.get(f"{scoped.api}/v1/reps", headers={"Authorization": f"Bearer {keys[who]}"}, timeout=10)
        return {entry["email"] for entry in r.json()}

    assert "w1@example.com" in emails("admin")
    for who in ("viewer", "screen", "rep", "manager"):
        assert emails(who) == {None}, who
    one = httpx.get(f"{scoped.api}/v1/reps/w1", headers={"Authorization": f"Bearer {keys['rep']}"}, timeout=10)
    assert one.json()["email"] is None

    def event_body(who: str) -> Any:
        r = httpx.get(f"{scoped.ingest}/v1/events/scope-seed", headers={"Authorization": f"Bearer {keys[who]}"},
                      timeout=10)
        r.raise_for_status()
        return r.json()

    assert event_body("admin")["event"]["owner_id"] == "w1"
    for who in ("ingest", "viewer"):
        seen = event_body(who)
        assert seen["event"] is None and seen["status"] in ("accepted", "published"), who


async def _close_code(url: str) -> int | str:
    """'open' when the socket sends its first message, else the code it was closed with."""
    async with websockets.connect(url, open_timeout=10) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 10)
            return "open"
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code


def test_every_socket_admits_each_role_and_scope_as_the_matrix_says(scoped: Stack, keys: dict[str, str]) -> None:
    async def all_codes() -> list[str]:
        failures = []
        for path, may_open in SOCKETS:
            for who in WHO:
                code = await _close_code(f"{scoped.ws}{path}?token={keys[who]}")
                expected = "open" if who in may_open else 4401 if who == "expired" else 4403
                if code != expected:
                    failures.append(f"{path} as {who}: {code}, expected {expected}")
        return failures

    failures = asyncio.run(all_codes())
    assert not failures, "\n".join(failures)


def test_one_key_holds_at_most_its_share_of_screens_and_other_keys_still_open(
    scoped: Stack, keys: dict[str, str]
) -> None:
    async def scenario() -> tuple[int | str, str, int | str]:
        url = f"{scoped.ws}/v1/ws/boards/west?token={keys['screen']}"
        held = [await websockets.connect(url, open_timeout=10) for _ in range(PER_KEY)]
        try:
            for ws in held:
                await asyncio.wait_for(ws.recv(), 10)
            async with websockets.connect(url, open_timeout=10) as extra:
                try:
                    await asyncio.wait_for(extra.recv(), 10)
                    code, reason = "open", ""
                except websockets.ConnectionClosed as closed:
                    assert closed.rcvd is not None
                    code, reason = closed.rcvd.code, closed.rcvd.reason
            other = await _close_code(f"{scoped.ws}/v1/ws/boards/west?token={keys['viewer']}")
            return code, reason, other
        finally:
            for ws in held:
                await ws.close()

    code, reason, other = asyncio.run(scenario())
    assert code == 1013 and f"this key already holds {PER_KEY} screens" in reason
    assert other == "open"


def keys_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli.main", "keys", *args], env=stack.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_keys_command_makes_scoped_expiring_keys_and_lists_their_last_use(scoped: Stack) -> None:
    made = keys_cli(scoped, "create", "--role", "screen", "--boards", "west,floor", "--name", "lobby tv",
                    "--expires", "30d")
    assert made.returncode == 0, made.stderr
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in made.stdout.splitlines() if ":" in line)}
    assert fields["scope"] == "boards floor, west"
    expires = datetime.strptime(fields["expires"], "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    r = httpx.get(f"{scoped.api}/v1/boards/floor/standings", headers={"Authorization": f"Bearer {fields['key']}"},
                  timeout=10)
    assert r.status_code == 200

    row = re.compile(rf"^{fields['key_id']}\s+screen\s+boards floor, west\s+active\s+"
                     r"(?P<expires>\d{4}-\d\d-\d\d \d\d:\d\d)\s+(?P<used>\d{4}-\d\d-\d\d \d\d:\d\d|-)\s+lobby tv$")

    def last_use() -> str | None:
        found = [m for line in keys_cli(scoped, "list").stdout.splitlines() if (m := row.match(line))]
        assert len(found) == 1, "the key is listed with its role, scope, state and expiry"
        return found[0]["used"] if found[0]["used"] != "-" else None

    used = datetime.strptime(wait_until(last_use, timeout=20, what="the key's last use listed"), "%Y-%m-%d %H:%M")
    assert abs(used.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)

    for args, complaint in (
        (("--role", "screen"), "needs --boards"),
        (("--role", "rep"), "needs --rep-id"),
        (("--role", "manager", "--team-id", "west", "--rep-id", "w1"), "takes no --rep-id"),
        (("--role", "viewer", "--boards", "west"), "takes no --boards"),
        (("--role", "viewer", "--expires", "soon"), "90m, 12h, 30d or 2w"),
    ):
        refused = keys_cli(scoped, "create", "--name", "x", *args)
        assert refused.returncode == 2 and complaint in refused.stderr, (args, refused.stderr)
