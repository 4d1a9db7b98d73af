"""What a service's /metrics serves, read with the Prometheus text parser."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import Stack, wait_until

__all__ = ["Samples", "connected_screens", "metric", "owned_partitions", "relay_leader", "scrape", "scrape_url"]

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(stack: Stack, label: str = "scoring") -> Samples:
    """The samples the service `label` of `stack` serves on /metrics, by sample name."""
    return scrape_url(f"http://127.0.0.1:{stack.ports[label]}/metrics")


def scrape_url(url: str) -> Samples:
    """The samples a /metrics URL serves, by sample name."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`; fails when there is none."""
    matching = [value for have, value in samples.get(name, []) if labels.items() <= have.items()]
    assert matching, f"{name}{labels or ''} is not in /metrics"
    return sum(matching)


def owned_partitions(stack: Stack, label: str) -> float:
    """How many source partitions the scoring worker `label` owns (its own metric)."""
    return metric(scrape(stack, label), "salespulse_scoring_assigned_partitions")


def connected_screens(stack: Stack, channel: str) -> float:
    """The gateway's count of open screens on `channel` (0 before the first one)."""
    samples = scrape(stack, "api").get("salespulse_ws_connected_clients", [])
    return sum(value for labels, value in samples if labels.get("channel") == channel)


def relay_leader(stack: Stack, labels: list[str]) -> str:
    """Which of the ingest processes `labels` runs the relay (its leader gauge is 1); waits for one to."""

    def find() -> str | None:
        for label in labels:
            try:
                if metric(scrape(stack, label), "salespulse_ingest_relay_leader") == 1:
                    return label
            except (httpx.HTTPError, AssertionError):
                continue
        return None

    return wait_until(find, timeout=60, what="the process running the relay")
