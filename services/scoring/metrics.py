"""Scoring metrics, grouped in one object built on its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400, float("inf"))


class ScoringMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("salespulse_scoring_events_total", "Events processed, by agent", ["agent"], registry=r)
        self.batch_size = Histogram(
            "salespulse_scoring_batch_size",
            "Events per batch, by agent",
            ["agent"],
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.processing = Histogram(
            "salespulse_scoring_batch_processing_seconds",
            "Time to process one batch, by agent",
            ["agent"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.event_age = Histogram(
            "salespulse_scoring_event_age_seconds",
            "Now minus occurred_at when an event is processed",
            ["agent"],
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.stale_snapshots = Counter(
            "salespulse_scoring_stale_snapshots_total",
            "Deal snapshots ignored as not newer than the applied one",
            registry=r,
        )
        self.duplicates = Counter(
            "salespulse_scoring_duplicates_total",
            "Redelivered messages recognised and skipped, by agent",
            ["agent"],
            registry=r,
        )

    def observe_batch(self, agent: str, size: int, seconds: float) -> None:
        self.events.labels(agent).inc(size)
        self.batch_size.labels(agent).observe(size)
        self.processing.labels(agent).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
