"""Generates the Grafana dashboards in deploy/grafana/dashboards/ from lists of panels with PromQL queries.

The JSON files are committed; `tests/unit/test_dashboards.py` checks they match this generator, and
`tests/integration/test_observability.py` runs every query against a real Prometheus scraping a real stack,
so a renamed metric breaks a test rather than a screen.

    python deploy/dashboards.py          # rewrite the JSON files
    python deploy/dashboards.py --check  # exit 1 when a committed file is out of date
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "salespulse-prometheus"}  # provisioned with this uid


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("salespulse",))
    refresh: str = "10s"

    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def p99(metric: str, by: str = "", quantile: float = 0.99) -> str:
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({quantile}, sum by ({group}) (rate({metric}_bucket[5m])))"


HTTP = "salespulse_http_request_duration_seconds"

PIPELINE_HEALTH = Dashboard(
    uid="salespulse-pipeline-health",
    title="salespulse / Pipeline health",
    description="Throughput, lag, latency and errors of ingest, scoring, the gateway and the notifier.",
    rows=(
        Row(
            "Services",
            (
                Panel(
                    "Targets up",
                    (q('up{job=~"ingest|relay|api|scoring|notifier"}', "{{job}} {{instance}}"),),
                    kind="stat",
                    description="1 when Prometheus could scrape the service's /metrics.",
                    width=24,
                ),
            ),
        ),
        Row(
            "Throughput",
            (
                Panel(
                    "Ingest events by outcome",
                    (q("sum by (outcome) (rate(salespulse_ingest_events_total[5m]))", "{{outcome}}"),),
                    unit="ops",
                ),
                Panel(
                    "Relay published to Kafka",
                    (q("sum(rate(salespulse_ingest_relay_published_total[5m]))", "published"),),
                    unit="ops",
                ),
                Panel(
                    "Scoring events processed by agent",
                    (q("sum by (agent) (rate(salespulse_scoring_events_total[5m]))", "{{agent}}"),),
                    unit="ops",
                ),
                Panel(
                    "WebSocket messages sent by channel",
                    (q("sum by (channel) (rate(salespulse_ws_messages_sent_total[5m]))", "{{channel}}"),),
                    unit="ops",
                ),
                Panel(
                    "HTTP requests by service and status",
                    (q(f"sum by (service, status) (rate({HTTP}_count[5m]))", "{{service}} {{status}}"),),
                    unit="reqps",
                ),
            ),
        ),
        Row(
            "Lag and backlog",
            (
                Panel(
                    "Scoring consumer lag by topic",
                    (q("sum by (topic) (salespulse_scoring_consumer_lag_messages)", "{{topic}}"),),
                    description="High watermark minus committed offset, summed over the partitions of each topic.",
                ),
                Panel(
                    "Relay backlog",
                    (q("max(salespulse_ingest_relay_backlog_events)", "events not yet in Kafka"),),
                ),
                Panel(
                    "Gateway read model lag",
                    (q("max by (instance) (salespulse_api_read_model_lag_seconds)", "{{instance}}"),),
                    unit="s",
                    description="Seconds since the read model last received a rep snapshot (quiet floors rise too).",
                ),
                Panel(
                    "Notifier open deliveries",
                    (q("sum(salespulse_notifier_open_deliveries)", "pending or deferred"),),
                ),
            ),
        ),
        Row(
            "Latency",
            (
                Panel(
                    "Event to screen (freshness promise: p99 < 1 s)",
                    (
                        q(p99("salespulse_event_to_screen_seconds", quantile=0.5), "p50"),
                        q(p99("salespulse_event_to_screen_seconds"), "p99"),
                    ),
                    unit="s",
                ),
                Panel("HTTP p99 by service", (q(p99(HTTP, "service"), "{{service}}"),), unit="s"),
                Panel(
                    "Ledger group commit p99",
                    (q(p99("salespulse_ingest_ledger_commit_seconds"), "commit"),),
                    unit="s",
                ),
                Panel(
                    "Scoring batch processing p99 by agent",
                    (q(p99("salespulse_scoring_batch_processing_seconds", "agent"), "{{agent}}"),),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Errors",
            (
                Panel(
                    "HTTP 5xx ratio by service",
                    (
                        q(
                            f'(sum by (service) (rate({HTTP}_count{{status="5xx"}}[5m]))'
                            f" or sum by (service) (rate({HTTP}_count[5m])) * 0)"
                            f" / sum by (service) (rate({HTTP}_count[5m]))",
                            "{{service}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                Panel(
                    "Ingest events not accepted",
                    (
                        q(
                            'sum by (outcome) (rate(salespulse_ingest_events_total{outcome!="accepted"}[5m]))',
                            "{{outcome}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Relay failures and dead letters",
                    (
                        q("sum(rate(salespulse_ingest_relay_failures_total[5m]))", "relay failures"),
                        q("sum by (agent) (rate(salespulse_scoring_dead_letters_total[5m]))", "dead letters {{agent}}"),
                        q(
                            "sum by (reader) (rate(salespulse_dead_letters_total[5m])) or vector(0)",
                            "dead letters {{reader}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Screens disconnected slow, messages dropped, connections refused",
                    (
                        q("sum(rate(salespulse_ws_disconnected_slow_total[5m])) or vector(0)", "slow disconnects"),
                        q("sum(rate(salespulse_ws_messages_dropped_total[5m])) or vector(0)", "dropped"),
                        q("sum(rate(salespulse_ws_rejected_total[5m]))", "refused at capacity"),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Notification deliveries failed by channel",
                    (
                        q(
                            "sum by (channel) (rate(salespulse_notifier_deliveries_failed_total[5m])) or vector(0)",
                            "{{channel}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Won deals held for want of an FX rate, by currency",
                    (q("sum by (currency) (salespulse_scoring_fx_held_deals) or vector(0)", "{{currency}}"),),
                    unit="short",
                ),
            ),
        ),
    ),
)

BUSINESS_LIVE = Dashboard(
    uid="salespulse-business-live",
    title="salespulse / Business live",
    description="What the sales floor is doing right now: events, tier crossings and screens watching.",
    rows=(
        Row(
            "Now",
            (
                Panel(
                    "Events per minute",
                    (q('sum(rate(salespulse_ingest_events_total{outcome="accepted"}[5m])) * 60', "events/min"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Tier crossings today",
                    (q("sum(increase(salespulse_notifier_tier_crossings_recorded_total[24h]))", "crossings"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Screens connected",
                    (q("sum(salespulse_ws_connected_clients)", "screens"),),
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Reps on the boards",
                    (q("max(salespulse_api_read_model_reps)", "reps"),),
                    kind="stat",
                    width=6,
                ),
            ),
        ),
        Row(
            "Over time",
            (
                Panel(
                    "Events per minute by type",
                    (
                        q(
                            'sum by (type) (rate(salespulse_ingest_events_total{outcome="accepted"}[5m])) * 60',
                            "{{type}}",
                        ),
                    ),
                ),
                Panel(
                    "Events scored per minute",
                    (q('sum(rate(salespulse_scoring_events_total{agent="rep-kpis"}[5m])) * 60', "scored"),),
                ),
                Panel(
                    "Tier crossings per hour",
                    (q("sum(increase(salespulse_notifier_tier_crossings_recorded_total[1h]))", "crossings"),),
                ),
                Panel(
                    "Notifications sent per hour by channel",
                    (
                        q(
                            "sum by (channel) (increase(salespulse_notifier_deliveries_sent_total[1h])) or vector(0)",
                            "{{channel}}",
                        ),
                    ),
                ),
                Panel(
                    "Screens connected by kind",
                    (q("sum by (channel) (salespulse_ws_connected_clients)", "{{channel}}"),),
                ),
                Panel(
                    "Event to screen p99",
                    (q(p99("salespulse_event_to_screen_seconds"), "p99"),),
                    unit="s",
                ),
            ),
        ),
    ),
)

DASHBOARDS: dict[str, Dashboard] = {"pipeline-health": PIPELINE_HEALTH, "business-live": BUSINESS_LIVE}


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, object]:
    body: dict[str, object] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8 if panel.kind == "timeseries" else 5, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {"datasource": DATASOURCE, "expr": query.expr, "legendFormat": query.legend, "refId": chr(ord("A") + i)}
            for i, query in enumerate(panel.queries)
        ],
    }
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    else:
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    return body


def render(dashboard: Dashboard) -> dict[str, object]:
    panels: list[dict[str, object]] = []
    next_id = 1
    y = 0
    for row in dashboard.rows:
        panels.append({"id": next_id, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            body = _panel_json(panel, next_id, x, y)
            next_id += 1
            panels.append(body)
            x += panel.width
            row_height = max(row_height, body["gridPos"]["h"])  # type: ignore[index]
        y += row_height
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": dashboard.refresh,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def rendered_files() -> dict[Path, str]:
    return {
        OUT_DIR / f"{name}.json": json.dumps(render(dashboard), indent=2, sort_keys=True) + "\n"
        for name, dashboard in DASHBOARDS.items()
    }


def all_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every query of every panel."""
    return [
        (name, panel.title, query.expr)
        for name, dashboard in DASHBOARDS.items()
        for panel in dashboard.panels()
        for query in panel.queries
    ]


def main(argv: list[str]) -> int:
    stale = [path for path, text in rendered_files().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"out of date: {path} (run python deploy/dashboards.py)", file=sys.stderr)
        return 1 if stale else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in rendered_files().items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
