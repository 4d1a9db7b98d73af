"""The monitoring configuration is consistent: the generated Grafana dashboards match deploy/dashboards.py,
promtool accepts the Prometheus config and rules and passes the alert unit tests, every alert has a summary, a
runbook in docs/operations.md and a unit test, and the provisioning points at what the dashboards use."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.monitoring import GRAFANA_DIR, PROMETHEUS_DIR, ROOT, alert_rules, load_dashboards

OPERATIONS = ROOT / "docs" / "operations.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run `python -m tests.setup_tools` (Debian package prometheus)")
    return subprocess.run([binary, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections(markdown: str) -> dict[str, str]:
    """Anchor → body of every heading's section (up to the next heading of the same or a higher level)."""
    lines = markdown.splitlines()
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"^(#+)\s+(.*)$", line)
        if not match:
            continue
        level = len(match.group(1))
        body: list[str] = []
        for following in lines[i + 1:]:
            other = re.match(r"^(#+)\s", following)
            if other and len(other.group(1)) <= level:
                break
            body.append(following)
        found[slug(match.group(2))] = "\n".join(body)
    return found


def test_generated_dashboards_are_up_to_date() -> None:
    dashboards = load_dashboards()
    for path, text in dashboards.rendered_files().items():
        assert path.exists(), f"{path} is missing: run python deploy/dashboards.py"
        assert path.read_text() == text, f"{path} is out of date: run python deploy/dashboards.py"
    assert sorted(p.name for p in (GRAFANA_DIR / "dashboards").glob("*.json")) == [
        "business-live.json",
        "pipeline-health.json",
    ]


def test_every_panel_has_queries_on_the_provisioned_data_source() -> None:
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for path in (GRAFANA_DIR / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert panels, path
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"]), f"duplicate panel ids in {path}"
        for panel in panels:
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid
                assert target["expr"].strip(), panel["title"]
            # Grafana's grid is 24 wide.
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_dashboard_provider_loads_the_generated_files() -> None:
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_queries_use_only_salespulse_metrics_and_up() -> None:
    dashboards = load_dashboards()
    for _, title, expr in dashboards.all_queries():
        names = set(re.findall(r"\b([a-z_][a-z0-9_]*)(?=\s*[{\[])", expr))
        assert all(n == "up" or n.startswith("salespulse_") for n in names), (title, names)


def test_prometheus_scrapes_every_service_by_its_compose_name() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    compose = yaml.safe_load((PROMETHEUS_DIR.parents[1] / "docker-compose.yml").read_text())["services"]
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in config["scrape_configs"]
    }
    assert targets == {
        "ingest": ["ingest:8001"],
        "relay": ["relay:8004"],
        "api": ["api-1:8000", "api-2:8000"],
        "scoring": ["scoring-1:6066", "scoring-2:6066"],
        "notifier": ["notifier:8002"],
    }
    assert {t.split(":")[0] for ts in targets.values() for t in ts} <= set(compose)
    assert config["rule_files"] == ["alerts.yml"]


def test_promtool_checks_the_config_and_the_rules() -> None:
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    fired = {
        case["alertname"]
        for group in tests["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alert_rules()} <= fired


def test_every_alert_has_a_summary_and_a_runbook_in_operations_md() -> None:
    found = sections(OPERATIONS.read_text())
    rules = alert_rules()
    assert rules
    for rule in rules:
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("page", "ticket"), rule["alert"]
        url = annotations.get("runbook_url", "")
        page, _, anchor = url.partition("#")
        assert page == "docs/operations.md" and anchor, f"{rule['alert']}: runbook_url {url!r}"
        assert anchor in found, f"{rule['alert']}: no section #{anchor} in docs/operations.md"
        body = found[anchor].lower()
        for part in ("what it means", "what to check", "what to do"):
            assert part in body, f"{rule['alert']}: the runbook lacks '{part}'"
