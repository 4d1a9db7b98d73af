"""Scoring metrics, grouped in one object built on its own registry (no rep ids in labels)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

AGENTS = ("deal-state", "rep-kpis")

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
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10_000, 20_000),
            registry=r,
        )
        self.processing = Histogram(
            "salespulse_scoring_batch_processing_seconds",
            "Time to process one batch, by agent",
            ["agent"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.first_batch_started = Gauge(
            "salespulse_scoring_first_batch_started_timestamp_seconds",
            "Unix time this process began its first batch, by agent (from process_start_time_seconds: start-up, "
            "joining the group and table recovery)",
            ["agent"],
            registry=r,
        )
        self.last_batch_finished = Gauge(
            "salespulse_scoring_last_batch_finished_timestamp_seconds",
            "Unix time this process last completed a batch, by agent",
            ["agent"],
            registry=r,
        )
        self._started_agents: set[str] = set()
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

        self.dead_letters = Counter(
            "salespulse_scoring_dead_letters_total",
            "Unreadable messages moved to the dead-letter topic, by agent",
            ["agent"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "salespulse_scoring_consumer_lag_messages",
            "High watermark minus committed offset of each source partition this worker owns",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "salespulse_scoring_assigned_partitions",
            "Source partitions this worker owns, by topic",
            ["topic"],
            registry=r,
        )

        self.checkpoint_seq = Gauge(
            "salespulse_scoring_checkpoint_seq",
            "Ledger sequence number the last checkpoint reflects (a restart replays only what follows it)",
            registry=r,
        )
        self.checkpoint_values = Counter(
            "salespulse_scoring_checkpoint_values_total",
            "Table values written to the SQL checkpoint",
            registry=r,
        )
        self.checkpoint_seconds = Gauge(
            "salespulse_scoring_checkpoint_seconds",
            "How long the last checkpoint took",
            registry=r,
        )

        self.serving = Gauge(
            "salespulse_scoring_serving",
            "1 when this worker serves its assignment (partitions assigned, tables recovered, snapshots republished)",
            registry=r,
        )
        self.held_deals = Gauge(
            "salespulse_scoring_fx_held_deals",
            "Won deals this worker owns whose credit is held: no FX rate of their currency on or before the close date",
            ["currency"],
            registry=r,
        )
        self.held_deals_all = Gauge(
            "salespulse_scoring_fx_held_deals_total",
            "Won deals this worker owns whose credit is held for want of an FX rate, every currency",
            registry=r,
        )

        # Every agent's series exist from the start (at zero), so dashboards and alerts see them before traffic.
        for agent in AGENTS:
            for family in (self.events, self.batch_size, self.processing, self.event_age, self.duplicates):
                family.labels(agent)
            self.dead_letters.labels(agent)

    def set_assignment(self, lag: Mapping[tuple[str, int], int], topics: tuple[str, ...]) -> None:
        """Replace the per-partition lag and assignment gauges with the current assignment's values."""
        self.consumer_lag.clear()
        counts = dict.fromkeys(topics, 0)
        for (topic, partition), value in lag.items():
            self.consumer_lag.labels(topic, str(partition)).set(value)
            counts[topic] = counts.get(topic, 0) + 1
        for topic, count in counts.items():
            self.assigned_partitions.labels(topic).set(count)

    def set_held(self, held: Mapping[str, str]) -> None:
        """The held deals (deal id → currency) as gauges by currency, and in all."""
        counts: dict[str, int] = {}
        for currency in held.values():
            counts[currency] = counts.get(currency, 0) + 1
        self.held_deals.clear()
        for currency, count in counts.items():
            self.held_deals.labels(currency).set(count)
        self.held_deals_all.set(len(held))

    def observe_batch(self, agent: str, size: int, seconds: float) -> None:
        """A batch of `size` events that took `seconds` and completed now."""
        finished = time.time()
        if agent not in self._started_agents:
            self._started_agents.add(agent)
            self.first_batch_started.labels(agent).set(finished - seconds)
        self.last_batch_finished.labels(agent).set(finished)
        self.events.labels(agent).inc(size)
        self.batch_size.labels(agent).observe(size)
        self.processing.labels(agent).observe(seconds)

    def observe_ages(self, agent: str, ages: Sequence[float]) -> None:
        """`event_age.labels(agent).observe(age)` for each age, counted per bucket first: one increment per
        bucket and one of the sum per batch instead of a locked increment and a bucket search per event.
        (prometheus-client's `Histogram.observe` adds an amount to the bucket of the first bound at or above it
        and to the sum; tests/unit/test_scoring_metrics.py checks this gives the same exposition.)"""
        if not ages:
            return
        child = self.event_age.labels(agent)
        counts = [0] * len(_AGE_BUCKETS)
        for age in ages:
            counts[bisect_left(_AGE_BUCKETS, age)] += 1
        buckets = child._buckets  # noqa: SLF001
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
        child._sum.inc(sum(ages))  # noqa: SLF001

    def render(self) -> bytes:
        return generate_latest(self.registry)
