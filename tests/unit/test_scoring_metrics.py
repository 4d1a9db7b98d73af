"""The scoring worker's metrics: ages counted per batch give the exposition per-event observations give."""

from __future__ import annotations

import math
import random

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
