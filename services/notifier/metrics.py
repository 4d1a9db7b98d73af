"""The notifier's Prometheus metrics, built on the process's own registry (no rep ids in labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["NotifierMetrics"]


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.crossings_recorded = Counter(
            "salespulse_notifier_tier_crossings_recorded_total",
            "Tier crossings recorded for the first time (each notifies once)",
            registry=registry,
        )
        self.recognitions_recorded = Counter(
            "salespulse_notifier_recognitions_recorded_total",
            "Achievements earned and streak milestones reached, recorded for the first time (each notifies once)",
            ["kind"],
            registry=registry,
        )
        self.sent = Counter(
            "salespulse_notifier_deliveries_sent_total", "Deliveries sent, by channel", ["channel"], registry=registry
        )
        self.failed = Counter(
            "salespulse_notifier_deliveries_failed_total",
            "Deliveries given up on (permanent error or attempts exhausted), by channel",
            ["channel"],
            registry=registry,
        )
        self.retried = Counter(
            "salespulse_notifier_delivery_retries_total",
            "Failed attempts that will be retried after a back-off, by channel",
            ["channel"],
            registry=registry,
        )
        self.deferred = Counter(
            "salespulse_notifier_deliveries_deferred_total",
            "Deliveries put off by quiet hours or the hourly cap, by channel and reason",
            ["channel", "reason"],
            registry=registry,
        )
        self.digests = Counter(
            "salespulse_notifier_digests_total",
            "Coaching digests by outcome (created, sent, failed, retried)",
            ["outcome"],
            registry=registry,
        )
        self.crossing_to_sent = Histogram(
            "salespulse_notifier_crossing_to_sent_seconds",
            "From a tier being reached (per the snapshot) to its delivery being sent, by channel",
            ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
            registry=registry,
        )
        self.snapshots = Counter(
            "salespulse_notifier_snapshots_total", "Rep snapshots read by the crossing consumer", registry=registry
        )
        self.open_deliveries = Gauge(
            "salespulse_notifier_open_deliveries",
            "Deliveries not sent or failed yet (pending or deferred), as of the last check",
            registry=registry,
        )
