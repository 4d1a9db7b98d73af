"""docker-compose.yml and deploy/Dockerfile, proven on a machine without a Docker engine.

1. The file is valid against the official Compose Specification schema (tests/data/compose-spec.json, see the
   README beside it), and that check does reject a misspelt key.
2. The image is rebuilt the way the Dockerfile says (its build stage's COPY and `pip install --prefix`, with
   container paths under a directory), and every application service of the compose file — those built from
   deploy/Dockerfile — runs from that install as a local process with the image's ENTRYPOINT plus the service's
   `command` and exactly the environment the image and the file give it, in `depends_on` order with its
   conditions (a one-shot must exit 0; `service_healthy` runs the service's own health check). Mapped, as a
   container would have it differently: `kafka:9092` → the session's real broker, the database host → a fresh
   PostgreSQL database on 127.0.0.1 (the file's driver kept), container paths → a directory per service, and
   each listening service's port → a free port through its documented port variable (health checks are
   rewritten for that mapping only). Test-only additions: a topic prefix per run and short broker session
   timeouts (SALESPULSE_TOPIC_PREFIX, SALESPULSE_BROKER_SESSION_TIMEOUT, SALESPULSE_BROKER_HEARTBEAT_INTERVAL).
   A sales scenario then runs through ingest and both gateways, and the notifier's in-app channel.
3. Drift between the compose file and its neighbours: Prometheus targets, nginx upstreams, the settings the code
   reads, the Dockerfile's user, base, entrypoint and the commands it can run.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jsonschema
import pytest
import websockets
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from services.cli.main import build_parser
from services.common.settings import Settings
from tests.conftest import POSTGRES_ADMIN_URL
from tests.support.clock import clock_env
from tests.support.compose import (
    COMPOSE_FILE,
    DOCKERFILE,
    PORT_VARIABLES,
    SERVICE_HOSTS,
    ComposeError,
    ComposeFile,
    ComposeStack,
    Dockerfile,
    Image,
    container_port,
    interpolate_text,
)
from tests.support.crm_feed import (
    FISCAL_YEAR_START_MONTH,
    TIMEZONE,
    Event,
    Expected,
    expected_kpis,
    period_keys,
    post_feed,
    wait_for_kpis,
)
from tests.support.stack import (
    ROOT,
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
    wait_until,
)

pytestmark = pytest.mark.integration

SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
PROMETHEUS_CONF = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# What an operator puts in .env: a secret for every variable the file requires (`${NAME:?why}`), and a business
# calendar other than the defaults so interpolated values are seen to reach the services (the KPI helpers reuse
# this zone and fiscal year).
REQUIRED = sorted(set(re.findall(r"\$\{([_a-zA-Z][_a-zA-Z0-9]*):?\?", COMPOSE_FILE.read_text())))
VARIABLES = {name: "sp" + secrets.token_hex(12) for name in REQUIRED} | {
    "SALESPULSE_TIMEZONE": TIMEZONE,
    "SALESPULSE_FISCAL_YEAR_START_MONTH": str(FISCAL_YEAR_START_MONTH),
}
# Every salespulse service has a place.
COMMANDS = {"migrate", "topics", "ingest", "relay", "scoring", "notifier", "api"}


def compose(**variables: str) -> ComposeFile:
    return ComposeFile.load({**VARIABLES, **variables})


def schema_errors(document: dict[str, Any]) -> list[jsonschema.ValidationError]:
    schema = json.loads(SCHEMA.read_text())
    return list(jsonschema.Draft7Validator(schema).iter_errors(document))


# --- 1. the Compose Specification -----------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA.read_text()))
    assert schema_errors(compose().document) == []


@pytest.mark.parametrize(
    ("service", "break_it", "complaint"),
    [
        ("ingest", lambda spec: spec.__setitem__("healtcheck", spec.pop("healthcheck")), "healtcheck"),
        ("api-1", lambda spec: spec["depends_on"]["migrate"].__setitem__("condition", "service_finished"),
         "service_finished"),
        ("scoring-1", lambda spec: spec.__setitem__("command", {"run": "scoring"}), "command"),
    ],
    ids=["misspelt-key", "unknown-condition", "command-of-the-wrong-type"],
)
def test_the_schema_check_rejects_a_broken_copy(service: str, break_it: Any, complaint: str) -> None:
    document = copy.deepcopy(compose().document)
    break_it(document["services"][service])
    errors = schema_errors(document)
    assert errors, f"a compose file with a broken {complaint} passed the schema"
    assert any(service in error.absolute_path or complaint in error.message for error in errors), errors


def test_interpolation_follows_compose() -> None:
    variables = {"SET": "x", "EMPTY": ""}
    assert interpolate_text("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET:-${SET}}", variables) == "x d  d x"
    assert interpolate_text("${SET:+y} ${EMPTY:+y} ${EMPTY+y} $SET $$SET", variables) == "y  y x $SET"
    with pytest.raises(ComposeError, match="required variable EMPTY is missing a value: say why"):
        interpolate_text("${EMPTY:?say why}", variables)
    assert interpolate_text("${EMPTY?say why}", variables) == ""
    with pytest.raises(ComposeError, match="write \\$\\$ for a literal"):
        interpolate_text("costs $5", variables)
    # The file itself: the admin key is required with a message that says what to do; defaults fill the rest.
    assert "SALESPULSE_ADMIN_KEY" in REQUIRED  # no default admin key, ever
    for name in REQUIRED:
        with pytest.raises(ComposeError, match=f"required variable {name} is missing a value: set {name} "):
            ComposeFile.load({key: value for key, value in VARIABLES.items() if key != name})
    defaults = ComposeFile.load({name: VARIABLES[name] for name in REQUIRED}).services["api-1"].environment
    assert defaults["SALESPULSE_TIMEZONE"] == Settings.model_fields["timezone"].default
    assert compose().services["scoring-2"].environment["SALESPULSE_TIMEZONE"] == TIMEZONE  # through `<<` and *alias


# --- 3. drift between the compose file and its neighbours (static) --------------------------------------------


def test_the_dockerfile_runs_salespulse_as_a_non_root_user_on_a_slim_base() -> None:
    dockerfile = Dockerfile.parse(DOCKERFILE)
    for stage in dockerfile.stages:
        image, _, tag = stage.base.partition(":")
        assert image == "python" and "slim" in tag.split("-"), f"{stage.base} is not a slim Python base"
        assert tag.startswith("3.11"), f"{stage.base}: the project is tested on Python 3.11"
    final = dockerfile.final
    assert final.user not in (None, "root", "0", "0:0"), f"the image runs as {final.user or 'root'}"
    assert final.exec_form("ENTRYPOINT") == ["salespulse"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^salespulse = "services\.cli\.main:main"$', pyproject, re.M), "no `salespulse` script"
    parser = build_parser()
    commands: dict[str, list[str]] = {"CMD": final.exec_form("CMD") or []}
    commands.update({name: service.command for name, service in compose().services.items() if service.dockerfile})
    for name, argv in commands.items():
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{name}: `salespulse {' '.join(argv)}` is not a salespulse command")
    app = compose().built_from("deploy/Dockerfile")
    assert {compose().services[name].command[0] for name in app} == COMMANDS
    for stage in dockerfile.stages:  # everything the build copies from the context exists
        for text in stage.args("COPY"):
            if not text.startswith("--"):
                assert all((ROOT / source).exists() for source in text.split()[:-1]), text


def test_every_setting_the_compose_file_gives_is_one_the_code_reads() -> None:
    """Settings ignores unknown SALESPULSE_* variables, so a misspelt one in the file would pass silently."""
    known = {f"SALESPULSE_{name.upper()}" for name in Settings.model_fields}
    known |= {m for path in (ROOT / "services").rglob("*.py") for m in re.findall(r'"(SALESPULSE_[A-Z_]+)"',
                                                                                   path.read_text())}
    given = dict(Dockerfile.parse(DOCKERFILE).final.env)
    for name in compose().built_from("deploy/Dockerfile"):
        given.update(compose().services[name].environment)
    unknown = sorted(key for key in given if key.startswith("SALESPULSE_") and key not in known)
    assert not unknown, f"settings no code reads: {unknown}"
    for name in compose().built_from("deploy/Dockerfile"):  # and the values are ones the code accepts
        env = {**Dockerfile.parse(DOCKERFILE).final.env, **compose().services[name].environment}
        fields = {key.removeprefix("SALESPULSE_").lower(): value for key, value in env.items()}
        Settings.model_validate({key: value for key, value in fields.items() if key in Settings.model_fields})


def test_the_services_name_the_compose_kafka_and_postgres_as_they_are_configured() -> None:
    services = compose().services
    kafka = services["kafka"].environment
    advertised = {listener.split("://", 1)[1] for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    postgres = services["postgres"].environment
    for name in compose().built_from("deploy/Dockerfile"):
        env = services[name].environment
        assert set(env["SALESPULSE_KAFKA_BOOTSTRAP"].split(",")) <= advertised, name
        url = make_url(env["SALESPULSE_DATABASE_URL"])
        assert (url.host, url.port) == ("postgres", 5432), name
        assert (url.username, url.password, url.database) == (
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]), name
        assert url.drivername == "postgresql+asyncpg", f"{name}: the services use SQLAlchemy's asyncio engine"


def test_every_healthcheck_probes_the_port_its_service_listens_on() -> None:
    image_env = Dockerfile.parse(DOCKERFILE).final.env
    for name in compose().built_from("deploy/Dockerfile"):
        service = compose().services[name]
        port = container_port(service, image_env)
        if port is None:
            assert service.healthcheck is None, f"{name} listens on nothing but has a healthcheck"
            continue
        assert service.healthcheck, f"{name} listens on {port} and has no healthcheck"
        probed = {int(p) for p in re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", " ".join(service.healthcheck))}
        assert probed == {port}, f"{name} listens on {port} but its healthcheck probes {probed}"


def test_the_mounted_files_exist_and_nginx_proxies_both_gateways_with_websocket_upgrades() -> None:
    services = compose().services
    for service in services.values():
        for volume in service.spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{service.name} mounts {source}, which is not in the repository"
    proxy = services["proxy"]
    assert any(v.startswith("./deploy/nginx.conf:") for v in proxy.spec["volumes"])
    text = NGINX_CONF.read_text()
    listen = re.findall(r"^\s*listen\s+(\d+)\s*;", text, re.M)
    published = [str(port).rsplit(":", 1)[-1] for port in proxy.spec["ports"]]
    assert listen and set(published) <= set(listen), f"the proxy publishes {published}, nginx listens on {listen}"
    image_env = Dockerfile.parse(DOCKERFILE).final.env
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", text))
    assert upstreams, "nginx.conf has no upstream"
    for name, body in upstreams.items():
        servers = re.findall(r"server\s+([\w.-]+):(\d+)", body)
        for host, port in servers:
            assert host in services, f"upstream {name} names {host}, which is not a compose service"
            assert int(port) == container_port(services[host], image_env), f"{host} does not listen on {port}"
        api = {n for n in compose().built_from("deploy/Dockerfile") if services[n].command == ["api"]}
        assert {host for host, _ in servers} == api, f"upstream {name} should list every gateway: {api}"
        assert re.search(rf"proxy_pass\s+http://{name}\s*;", text), f"nothing proxies to {name}"
    # WebSockets: HTTP/1.1 to the upstream, Upgrade passed on, Connection "upgrade" exactly when asked.
    assert re.search(r"proxy_http_version\s+1\.1\s*;", text)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;", text)
    variable = re.search(r"proxy_set_header\s+Connection\s+(\$\w+|\"?upgrade\"?)\s*;", text)
    assert variable, "the Connection header is not set for upgrades"
    if variable.group(1).startswith("$"):
        mapping = re.search(rf"map\s+\$http_upgrade\s+\{variable.group(1)}\s*\{{([^}}]*)\}}", text)
        assert mapping, f"{variable.group(1)} is not mapped from $http_upgrade"
        assert re.search(r"default\s+upgrade\s*;", mapping.group(1))
        assert re.search(r"''\s+close\s*;", mapping.group(1))
    assert re.search(r"proxy_buffering\s+off\s*;", text), "pushes would be buffered"
    # The client address: set to the peer's (never appended to), trusted by the gateways from the proxy only.
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr\s*;", text), "a client could forge it"
    assert not re.search(r"log_format[^;]*\$(request|request_uri|args|query_string)\b", text), "keys in the log"
    proxy_address = proxy.spec["networks"]["default"]["ipv4_address"]
    for name in api:
        assert services[name].environment["SALESPULSE_FORWARDED_ALLOW_IPS"] == proxy_address, name


# --- 2. the image and the stack -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return Image.build(tmp_path_factory.mktemp("image"))


def test_the_image_installs_every_file_the_services_need(image: Image) -> None:
    """The build stage's `pip install .` is what ships: a screen asset or migration left out of the package
    data is missing from the image even though every test on the source tree passes."""
    installed = {p.relative_to(image.site_packages).as_posix() for p in image.site_packages.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    shipped = {p.relative_to(ROOT).as_posix() for top in ("services", "schemas") for p in (ROOT / top).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert not shipped - installed, f"in the repository but not in the image: {sorted(shipped - installed)}"
    assert (image.bin / "salespulse").is_file()


@pytest.fixture(scope="module")
def stack(broker: str, image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    if not postgres_available(POSTGRES_ADMIN_URL):
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; start it (see README, Testing)")
    database = create_postgres_database(POSTGRES_ADMIN_URL, "sp_compose")
    file = compose()
    advertised = file.services["kafka"].environment["KAFKA_ADVERTISED_LISTENERS"].split("://", 1)[1]
    stack = ComposeStack(
        bootstrap=broker,
        database_url=database,
        data_dir=tmp_path_factory.mktemp("compose"),
        topic_prefix=f"cf{uuid.uuid4().hex[:6]}.",
        admin_key=file.services["api-1"].environment["SALESPULSE_ADMIN_KEY"],
        compose=file,
        image=image,
        addresses={advertised: broker},
        databases={"postgres": database},
        provided={"kafka", "postgres"},
    )
    stack.test_env = {
        "SALESPULSE_TOPIC_PREFIX": stack.topic_prefix,
        "SALESPULSE_BROKER_SESSION_TIMEOUT": "6",
        "SALESPULSE_BROKER_HEARTBEAT_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1",
        **clock_env(stack.clock),
    }
    try:
        yield stack.up()
    finally:
        stack.stop()
        drop_postgres_database(POSTGRES_ADMIN_URL, database)


def url(stack: ComposeStack, name: str, path: str = "") -> str:
    return f"http://127.0.0.1:{stack.ports[name]}{path}"


def test_every_application_service_runs_from_the_image_as_the_file_says(stack: ComposeStack, image: Image) -> None:
    assert set(stack.completed) | set(stack.services) == set(stack.app_services)
    assert stack.completed == {"migrate": 0, "topics": 0}  # the one-shots the others wait for
    for name in stack.services:
        env = stack.process_env(name)
        assert stack.argv(name)[0] == "salespulse"
        # The code that runs is the image's install, not the source tree.
        where = subprocess.run(
            ["python", "-c", "import services; print(services.__file__)"], env=env, capture_output=True, text=True,
            cwd=stack.filesystem(name), check=True).stdout
        assert Path(where.strip()).is_relative_to(image.site_packages), where
        # Exactly the file's environment, but for the mapped values and the test's additions.
        given = {**image.dockerfile.final.env, **stack.compose.services[name].environment}
        for key, value in given.items():
            if key in stack.test_env or (name in stack.ports and key == PORT_VARIABLES[stack.argv(name)[1]]):
                continue
            if key in SERVICE_HOSTS and value in stack.services:  # another service, here on its mapped port
                assert (env[key], env[SERVICE_HOSTS[key]]) == ("127.0.0.1", str(stack.ports[value])), key
                continue
            assert env[key] == stack.map_value(name, value), key
        assert make_url(env["SALESPULSE_DATABASE_URL"]).drivername == make_url(
            given["SALESPULSE_DATABASE_URL"]).drivername


def sales_feed(now: datetime, quota: int) -> list[Event]:
    """Deals (opened, then won or lost) and activities over four months for three rostered reps and one the
    roster does not know, plus a deal each east rep closes now; ada's alone is above the plan's quota."""
    rng = random.Random(10)
    events: list[Event] = []

    def deal(n: int, rep: str, amount: int, opened: datetime, closed: datetime, stage: str) -> None:
        base = {"type": "deal", "deal_id": f"cd-{n}", "owner_id": rep, "amount": amount, "source": "compose"}
        events.append({**base, "event_id": f"c-{n}-1", "version": 1, "stage": "open", "occurred_at": iso(opened)})
        events.append({**base, "event_id": f"c-{n}-2", "version": 2, "stage": stage, "occurred_at": iso(closed),
                       "closed_at": iso(closed)})

    for n in range(40):
        closed = now - timedelta(days=rng.uniform(0.1, 120))
        deal(n, rng.choice(["ada", "bob", "cy", "dee"]), rng.randrange(50, 300), closed - timedelta(days=3),
             closed, rng.choice(["won", "won", "lost"]))
    for n, (rep, amount) in enumerate([("ada", quota * 13 // 10), ("bob", quota // 3), ("cy", quota // 4)], 100):
        deal(n, rep, amount, now - timedelta(hours=1), now, "won")
    for n in range(30):
        events.append({"event_id": f"ca-{n}", "type": "activity", "rep_id": rng.choice(["ada", "bob", "cy", "dee"]),
                       "kind": rng.choice(["call", "email", "meeting"]),
                       "occurred_at": iso(now - timedelta(days=rng.uniform(0, 100)))})
    return events


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


PLAN_TIERS = [
    {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05, "reward": None},
    {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.08, "reward": "Shout-out"},
    {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25, "rate": 0.12, "reward": "PTO day"},
]


def month_revenue(expected: Expected, rep: str, month: str) -> Decimal:
    return Decimal(expected.get(rep, "month", month).revenue)


def tiers_reached(value: Decimal, quota: int) -> list[dict[str, Any]]:
    return [t for t in PLAN_TIERS if float(value) >= t["threshold"] * quota]


def ranked(values: dict[str, Decimal]) -> list[tuple[int, str, float]]:
    """Value descending, ties share a rank (1, 2, 2, 4) and are ordered by rep_id (CONTRACT §5)."""
    order = sorted(values, key=lambda rep: (-values[rep], rep))
    ranks: list[tuple[int, str, float]] = []
    for position, rep in enumerate(order, 1):
        rank = ranks[-1][0] if ranks and values[rep] == values[order[position - 2]] else position
        ranks.append((rank, rep, float(round(values[rep], 2))))
    return ranks


def test_a_sales_day_through_ingest_both_gateways_and_the_notifier(stack: ComposeStack) -> None:
    api1, api2 = url(stack, "api-1"), url(stack, "api-2")
    quota = 1000
    with httpx.Client(base_url=api1, headers=stack.headers, timeout=10) as admin:  # the admin key from the env
        admin.put("/v1/teams/east", json={"name": "East"}).raise_for_status()
        for rep in ("ada", "bob", "cy"):
            admin.put(f"/v1/reps/{rep}", json={"name": rep.title(), "team_id": "east"}).raise_for_status()
        admin.put("/v1/plans/ae", json={
            "name": "AE revenue", "metric": "revenue", "period": "month", "effective_from": "2020-01-01",
            "participants": {"teams": ["east"], "reps": []}, "quota": quota, "tiers": PLAN_TIERS,
        }).raise_for_status()
        admin.put("/v1/boards/floor", json={"title": "East this month", "metric": "revenue", "period": "month",
                                            "scope": {"teams": ["east"]}, "size": 10, "plan_id": "ae"}
                  ).raise_for_status()

    now = stack.clock.now().replace(microsecond=0)
    events = sales_feed(now, quota)
    resent = events[:10]
    assert post_feed(stack, [events, resent]) == (len(events), len(resent))
    expected = expected_kpis(events)
    zone = ZoneInfo(TIMEZONE)
    month = period_keys(now, zone, FISCAL_YEAR_START_MONTH)["month"]
    today = now.astimezone(zone).date().isoformat()
    east = {rep: month_revenue(expected, rep, month) for rep in ("ada", "bob", "cy")}
    assert tiers_reached(east["ada"], quota)[-1]["threshold"] >= 1.0  # the scenario has a crossing to see

    for api in (api1, api2):
        wait_for_kpis(stack, expected, api=api)
        with httpx.Client(base_url=api, headers=stack.headers, timeout=10) as client:
            for rep, value in east.items():
                def progress(rep: str = rep, value: Decimal = value) -> dict[str, Any] | None:
                    plans = client.get(f"/v1/reps/{rep}/progress", params={"date": today}).json()["plans"]
                    return plans[0] if plans and plans[0]["value"] == float(round(value, 2)) else None

                got = wait_until(progress, timeout=30, what=f"{rep}'s progress on {api}")
                reached = tiers_reached(value, quota)
                assert got["period_key"] == month and got["quota"] == quota
                assert got["attainment"] == pytest.approx(float(value) / quota, abs=1e-6)
                assert (got["tier"] or {}).get("tier_id") == (reached[-1]["tier_id"] if reached else None)
                assert got["rewards"] == [t["reward"] for t in reached if t["reward"]]

            def standings() -> dict[str, Any] | None:
                body = client.get("/v1/boards/floor/standings", params={"date": today}).json()
                entries = [(e["rank"], e["rep_id"], e["value"]) for e in body["entries"]]
                return body if entries == ranked(east) else None

            board = wait_until(standings, timeout=30, what=f"the floor board on {api}")
            assert board["period_key"] == month
            for entry in board["entries"]:
                reached = tiers_reached(east[entry["rep_id"]], quota)
                assert entry["tier"]["tier_id"] == reached[-1]["tier_id"]

            def notified() -> dict[str, list[dict[str, Any]]] | None:
                logs = {rep: client.get("/v1/notifications", params={"rep_id": rep}).json() for rep in east}
                want = {rep: {t["tier_id"] for t in tiers_reached(v, quota) if t["threshold"] > 0}
                        for rep, v in east.items()}
                got = {rep: {n["tier"]["tier_id"] for n in log} for rep, log in logs.items()}
                in_app = all(any(d["channel"] == "in_app" and d["status"] == "sent" for d in n["deliveries"])
                             for log in logs.values() for n in log)
                return logs if got == want and in_app else None

            logs = wait_until(notified, timeout=60, interval=0.5, what=f"the tier crossings on {api}")
            assert all(n["plan_id"] == "ae" and n["period_key"] == month for n in logs["ada"])

    # A screen on the second gateway gets the same standings first thing over its WebSocket.
    screen = api2.replace("http://", "ws://") + f"/v1/ws/boards/floor?token={stack.admin_key}"
    first = asyncio.run(first_message(screen))
    rest = httpx.get(f"{api2}/v1/boards/floor/standings", params={"date": today}, headers=stack.headers).json()
    assert first["type"] == "standings" and first["entries"] == rest["entries"]
    # The screens' assets come from the image's package data.
    for asset in sorted((ROOT / "services" / "api" / "static").iterdir()):
        if asset.suffix != ".html":
            response = httpx.get(f"{api1}/screens/static/{asset.name}", timeout=10)
            assert response.status_code == 200 and response.content == asset.read_bytes(), asset.name


async def first_message(ws_url: str) -> dict[str, Any]:
    async with websockets.connect(ws_url) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


def test_prometheus_scrapes_every_service_where_it_serves_metrics(stack: ComposeStack) -> None:
    config = yaml.safe_load(PROMETHEUS_CONF.read_text())
    scraped: set[str] = set()
    for job in config["scrape_configs"]:
        for target in (t for group in job["static_configs"] for t in group["targets"]):
            host, port = target.rsplit(":", 1)
            assert host in stack.compose.services, f"job {job['job_name']}: {host} is not a compose service"
            assert stack.container_ports.get(host) == int(port), f"{host} serves /metrics on " \
                f"{stack.container_ports.get(host)}, not {port}"
            response = httpx.get(url(stack, host, job.get("metrics_path", "/metrics")), timeout=10)
            assert response.status_code == 200, f"{target}: {response.status_code}"
            families = {family.name for family in text_string_to_metric_families(response.text)}
            assert any(name.startswith("salespulse_") for name in families), f"{target} serves no salespulse_ metric"
            scraped.add(host)
    assert scraped == set(stack.container_ports), "a long-running service that Prometheus does not scrape"
    # The two scoring workers share the file's partition count between them.
    partitions = int(stack.compose.services["scoring-1"].environment["SALESPULSE_PARTITIONS"])
    workers = [name for name in stack.services if stack.compose.services[name].command == ["scoring"]]
    topic = f"{stack.topic_prefix}events.deals"

    def shared() -> list[float] | None:
        owned = [_gauge(url(stack, worker, "/metrics"), "salespulse_scoring_assigned_partitions", topic)
                 for worker in workers]
        return owned if sum(owned) == partitions and all(owned) else None

    assert len(wait_until(shared, timeout=60, interval=0.5, what=f"{workers} sharing {partitions} partitions")) == 2


def _gauge(address: str, name: str, topic: str) -> float:
    for family in text_string_to_metric_families(httpx.get(address, timeout=10).text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("topic") == topic:
                return sample.value
    return 0.0

