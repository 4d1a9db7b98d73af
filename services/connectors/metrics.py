"""The connectors' metrics, registered on ingest's registry (they show on ingest's /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ConnectorMetrics"]


class ConnectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
