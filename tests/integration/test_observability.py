"""Observability on a real stack: a real Prometheus (the Debian binary) scrapes ingest, scoring, the gateway and
the notifier, loads deploy/prometheus/alerts.yml, and every dashboard panel's query and every alert expression
is evaluated through its HTTP API. Panels must return data; alert expressions and rules must be valid; every
metric a query names must be one the services expose."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml

from tests.support.clock import now_stamp
from tests.support.monitoring import PROMETHEUS_DIR, alert_rules, load_dashboards
from tests.support.stack import Stack, free_port, wait_until

pytestmark = pytest.mark.integration

JOBS = ("ingest", "relay", "api", "scoring", "notifier")  # job names in deploy/prometheus/prometheus.yml = stack labels
# Metrics the services declare but never observe yet. salespulse_event_to_screen_seconds: the gateway's
# LivePusher (services/api/routes/live.py) calls hub.publish_state without the snapshot's accepted_ms, so the
# histogram has no series. Its queries must still be valid; once they return data this test fails so the gap is
# removed from here.
KNOWN_GAPS: tuple[str, ...] = ()
METRIC = re.compile(r"\b(salespulse_[a-z0-9_]+|up)\b")


def scrape_config(ports: dict[str, int]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the test stack's ports and a 1 s scrape and evaluation interval."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(JOBS), "prometheus.yml must scrape every service"
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[name]}"]}]
    return config


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr!r} is invalid: {body}"
        return body["data"]

    def get(self, path: str) -> Any:
        body = httpx.get(f"{self.url}{path}", timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: run `python -m tests.setup_tools` (Debian package prometheus)")
    return binary


def start_prometheus(binary: str, config: dict[str, Any], workdir: Path) -> tuple[subprocess.Popen[bytes], Prometheus]:
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited ({proc.returncode}): {(workdir / 'prometheus.log').read_text()}")
        return httpx.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200

    wait_until(ready, timeout=30, what="prometheus ready")
    return proc, prometheus


def won(event_id: str, rep: str, amount: str) -> dict[str, object]:
    now = now_stamp()
    return {"event_id": event_id, "type": "deal", "occurred_at": now, "deal_id": f"d-{event_id}", "owner_id": rep,
            "stage": "won", "amount": amount, "closed_at": now}


def activity(event_id: str, rep: str) -> dict[str, object]:
    now = now_stamp()
    return {"event_id": event_id, "type": "activity", "occurred_at": now, "rep_id": rep, "kind": "call"}


def finite(data: dict[str, Any]) -> bool:
    """A query result with at least one sample that is a number (not NaN: a quantile over no increase)."""
    if data["resultType"] == "scalar":
        return not math.isnan(float(data["result"][1]))
    return any(not math.isnan(float(sample["value"][1])) for sample in data["result"])


def configure_board(stack: Stack) -> None:
    headers = stack.headers
    httpx.put(f"{stack.api}/v1/teams/east", json={"name": "East"}, headers=headers).raise_for_status()
    for rep, name in (("ada", "Ada"), ("bob", "Bob")):
        httpx.put(f"{stack.api}/v1/reps/{rep}", json={"name": name, "team_id": "east"},
                  headers=headers).raise_for_status()
    board = {"title": "Revenue this month", "metric": "revenue", "period": "month", "size": 10}
    httpx.put(f"{stack.api}/v1/boards/floor", json=board, headers=headers).raise_for_status()


async def drive_traffic(stack: Stack, stop: threading.Event) -> int:
    """Keep a board screen open and, until `stop`, post won deals, activities, a duplicate and a rejected event,
    each round paced by the screen showing the deal (so event-to-screen latency is observed every round)."""
    rounds = 0
    total = 0.0
    url = f"{stack.ws}/v1/ws/boards/floor?token={stack.admin_key}"
    async with websockets.connect(url) as ws, httpx.AsyncClient(headers=stack.headers, timeout=30) as client:
        first = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert first["type"] == "standings", first
        while not stop.is_set():
            rounds += 1
            total += 100.0
            deal = won(f"obs-deal-{rounds}", "ada", "100.00")
            response = await client.post(f"{stack.ingest}/v1/events", json=[deal, activity(f"obs-act-{rounds}", "bob")])
            assert response.status_code == 202, response.text
            again = await client.post(f"{stack.ingest}/v1/events", json=deal)
            assert again.status_code == 202 and again.json()["duplicates"] == 1, again.text
            bad = await client.post(f"{stack.ingest}/v1/events", json={"event_id": f"bad-{rounds}", "type": "deal"})
            assert bad.status_code == 422, bad.text
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message.get("type") != "standings":
                    continue
                values = {e["rep_id"]: e["value"] for e in message["entries"]}
                if values.get("ada", 0) >= total - 0.001:
                    break
    return rounds


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_panel_and_alert_evaluates_against_a_real_prometheus(  # type: ignore[no-untyped-def]
    stack_factory, database_url: str, tmp_path: Path, prometheus_binary: str
) -> None:
    stack: Stack = stack_factory(database_url)
    stack.extra_env["SALESPULSE_RELAY"] = "external"  # as deployed: the relay in its own process
    stack.start()
    stack.start_service("notifier")
    stack.wait_healthy("notifier", "/v1/ready")
    configure_board(stack)

    proc, prometheus = start_prometheus(prometheus_binary, scrape_config(stack.ports), tmp_path / "prometheus")
    try:
        def all_up() -> bool:
            targets = prometheus.get("/api/v1/targets")["activeTargets"]
            return len(targets) == len(JOBS) and all(t["health"] == "up" for t in targets)

        wait_until(all_up, timeout=60, what="prometheus scraping every service")
        _evaluate_while_driving_traffic(stack, prometheus)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _evaluate_while_driving_traffic(stack: Stack, prometheus: Prometheus) -> None:
    dashboards = load_dashboards()
    every_query = dashboards.all_queries()
    assert every_query
    gaps = [q for q in every_query if any(gap in q[2] for gap in KNOWN_GAPS)]
    queries = [q for q in every_query if q not in gaps]
    rules = alert_rules()
    stop = threading.Event()

    def panels_with_data() -> dict[str, list[str]]:
        missing = [f"{name} / {title}: {expr}" for name, title, expr in queries if not finite(prometheus.query(expr))]
        return {"missing": missing}

    def check() -> None:
        # Every alert expression is valid now (no data needed: a quiet system fires nothing).
        for rule in rules:
            prometheus.query(rule["expr"])
        # Every panel returns data once traffic has flowed through the stack and been scraped.
        last: dict[str, list[str]] = {}

        def all_panels() -> bool:
            if stop.is_set():
                raise AssertionError("the traffic stopped before every panel had data")
            last.update(panels_with_data())
            return not last["missing"]

        try:
            wait_until(all_panels, timeout=90, interval=0.5, what="every dashboard panel to return data")
        except AssertionError as exc:
            raise AssertionError("panels without data:\n" + "\n".join(last.get("missing", []))) from exc

    async def scenario() -> int:
        traffic = asyncio.create_task(drive_traffic(stack, stop))
        checking = asyncio.create_task(asyncio.to_thread(check))
        try:
            await asyncio.wait({traffic, checking}, return_when=asyncio.FIRST_COMPLETED)
            if traffic.done():
                traffic.result()  # the traffic failed: raise its error rather than wait for the panels' deadline
            await checking
        finally:
            stop.set()
            if not checking.done():
                await asyncio.wait({checking})
        return await traffic

    rounds = asyncio.run(scenario())
    assert rounds >= 1
    for name, title, expr in gaps:
        assert not finite(prometheus.query(expr)), f"{name} / {title} returns data now: remove it from KNOWN_GAPS"

    # Prometheus loaded every alerting rule and evaluates them without error.
    def rules_evaluated() -> list[dict[str, Any]] | None:
        loaded = [r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
        return loaded if loaded and all(r["health"] == "ok" for r in loaded) else None

    loaded = wait_until(rules_evaluated, timeout=30, what="every alerting rule evaluated with health ok")
    assert {r["name"] for r in loaded} == {r["alert"] for r in rules}

    # Every metric a panel or an alert names is one a service exposes (HELP/TYPE seen on a scrape, even a
    # labelled family that has no series yet), so a renamed metric fails here rather than on a screen.
    exposed = set(prometheus.get("/api/v1/metadata"))
    suffixes = ("_bucket", "_count", "_sum")
    named = {m for _, _, expr in every_query for m in METRIC.findall(expr)} | {
        m for rule in rules for m in METRIC.findall(rule["expr"])
    }
    unknown = sorted(
        m for m in named
        if m != "up" and m not in exposed and not any(m.endswith(s) and m[: -len(s)] in exposed for s in suffixes)
    )
    assert not unknown, f"queries name metrics no service exposes: {unknown}"
