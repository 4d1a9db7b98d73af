"""The scoring worker's metrics: ages counted per batch give the exposition per-event observations give."""

from __future__ import annotations

import math
import random
import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.scoring.metrics import _AGE_BUCKETS, ScoringMetrics


def test_ages_observed_per_batch_expose_what_observing_each_age_exposes() -> None:
    rng = random.Random(7)
    # Every bound exactly (an age on a bound belongs to that bucket), just above each, and a spread of ages.
    ages = [b for b in _AGE_BUCKETS if b != float("inf")]
    ages += [b * 1.0001 for b in ages] + [0.0, 1e6] + [rng.expovariate(0.05) for _ in range(500)]
    batched, each = ScoringMetrics(), ScoringMetrics()
    batched.observe_ages("rep-kpis", ages[:300])
    batched.observe_ages("rep-kpis", ages[300:])
    batched.observe_ages("deal-state", [])
    for age in ages:
        each.event_age.labels("rep-kpis").observe(age)
    got, want = _samples(batched), _samples(each)
    assert got.keys() == want.keys()
    for key, value in want.items():  # counts exactly; the sum up to the order floats were added in
        assert math.isclose(got[key], value, rel_tol=1e-12), key
    assert got[("salespulse_scoring_event_age_seconds_count", (("agent", "rep-kpis"),))] == len(ages)


def _samples(metrics: ScoringMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "salespulse_scoring_event_age_seconds"
        for sample in family.samples
    }


def _gauge(metrics: ScoringMetrics, name: str, agent: str) -> float | None:
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("agent") == agent:
                return float(sample.value)
    return None


def test_batches_stamp_when_the_first_began_and_the_last_completed() -> None:
    metrics = ScoringMetrics()
    first, last = (
        "salespulse_scoring_first_batch_started_timestamp_seconds",
        "salespulse_scoring_last_batch_finished_timestamp_seconds",
    )
    assert _gauge(metrics, first, "rep-kpis") is None  # no batch yet: no stamp (not a zero read as 1970)
    before = time.time()
    metrics.observe_batch("rep-kpis", 10, 0.5)
    began, ended = _gauge(metrics, first, "rep-kpis"), _gauge(metrics, last, "rep-kpis")
    assert began is not None and ended is not None
    assert before - 0.5 <= began <= ended - 0.5 + 1e-6 and ended <= time.time()
    metrics.observe_batch("rep-kpis", 5, 0.1)
    assert _gauge(metrics, first, "rep-kpis") == began  # the first batch's stays
    assert (_gauge(metrics, last, "rep-kpis") or 0) >= ended
    assert _gauge(metrics, first, "deal-state") is None  # per agent
