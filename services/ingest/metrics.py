"""Ingest metrics: what was accepted, duplicated or rejected, how long commits take, and the relay's backlog."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.http_metrics import LATENCY_BUCKETS


class RelayMetrics:
    """The relay's metrics, wherever it runs: in ingest's process, or in its own (`salespulse relay`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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


class IngestMetrics:
    """Ingest's own metrics; `relay` is None when the relay runs in its own process (SALESPULSE_RELAY=external)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, relay: bool = True) -> None:
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
        self.relay = RelayMetrics(r) if relay else None
