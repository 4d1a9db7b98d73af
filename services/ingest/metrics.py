"""Ingest metrics: what was accepted, duplicated or rejected, how long commits take, and the relay's backlog."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.http_metrics import LATENCY_BUCKETS


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "salespulse_ingest_events_total",
            "Events received, by type and outcome (accepted, duplicate, rejected, conflict)",
            ["type", "outcome"],
            registry=r,
        )
        self.ledger_commit = Histogram(
            "salespulse_ingest_ledger_commit_seconds",
            "Time of one ledger group commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ledger_batch = Histogram(
            "salespulse_ingest_ledger_commit_events",
            "Events written per ledger group commit",
            buckets=(1, 10, 100, 1000, 5000, 10000, 20000),
            registry=r,
        )
        self.relay_backlog = Gauge(
            "salespulse_ingest_relay_backlog_events",
            "Ledger events not yet published to Kafka (latest ledger seq minus relay cursor)",
            registry=r,
        )
        self.relay_published = Counter(
            "salespulse_ingest_relay_published_total", "Events published to Kafka by the relay", registry=r
        )
        self.relay_publish = Histogram(
            "salespulse_ingest_relay_publish_seconds",
            "Time to publish one relay batch and see it acknowledged",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.relay_failures = Counter(
            "salespulse_ingest_relay_failures_total", "Relay rounds that failed (broker or database down)", registry=r
        )
        self.relay_leader = Gauge(
            "salespulse_ingest_relay_leader", "1 when this process runs the relay (one per database)", registry=r
        )
        # CRM connectors (services/connectors/)
        self.connector_deliveries = Counter(
            "salespulse_connector_deliveries_total",
            "Webhook deliveries and change events received, by connector and outcome (accepted, ignored, "
            "rejected_signature, rejected_auth, rejected_body)",
            ["connector", "outcome"],
            registry=r,
        )
        self.connector_records = Counter(
            "salespulse_connector_records_total",
            "CRM records handled, by connector and outcome (fetched, accepted, duplicate, deleted, rejected_mapping, "
            "rejected_event, not_found)",
            ["connector", "outcome"],
            registry=r,
        )
        self.connector_api_errors = Counter(
            "salespulse_connector_api_errors_total",
            "Failed calls to a CRM's API, by connector and HTTP status (0: no answer)",
            ["connector", "status"],
            registry=r,
        )
        self.connector_lag = Histogram(
            "salespulse_connector_lag_seconds",
            "From the change in the CRM to its event in the ledger",
            ["connector"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.connector_pending = Gauge(
            "salespulse_connector_pending_records",
            "CRM changes accepted and not yet in the ledger, by connector",
            ["connector"],
            registry=r,
        )
