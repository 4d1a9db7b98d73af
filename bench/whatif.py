"""What-if on real history: a draft plan over one fiscal quarter of the CRM data set (issue 21).

    .venv/bin/python -m bench.whatif [--runs 5]

The CRM feed of tests/support/crm_feed.py (the data set's 15,011 deal snapshots plus re-sent, reversed, stale
and split ones, and activities) goes through ingest; then `POST /v1/plans/what-if` runs a quarterly plan over
FY2026-Q3 `runs` times, and the median time is reported. The same-run reference is the live path: one
`GET /v1/reps/{rep}/progress` per rep of the data set, one after the other, from the read model."""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from bench.common import Figure, bench_stack, print_figures
from tests.support.crm_feed import STACK_ENV, crm_feed, expected_kpis, post_feed, wait_for_kpis

PLAN = {"plan_id": "q-revenue", "name": "Quarterly revenue", "metric": "revenue", "period": "quarter",
        "effective_from": "2025-01-01", "quota": 150000,
        "tiers": [{"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.04},
                  {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.07}]}


def run(runs: int = 5) -> list[Figure]:
    feed = crm_feed()
    expected = expected_kpis(feed.events)
    reps = sorted({key[0] for key in expected.totals})
    with bench_stack("sqlite", **STACK_ENV) as stack:
        stack.start()
        post_feed(stack, feed.batches(2500))
        wait_for_kpis(stack, expected)
        with httpx.Client(base_url=stack.api, headers=stack.headers, timeout=300) as http:
            http.put("/v1/plans/q-revenue", json=PLAN).raise_for_status()
            times, served = [], []
            for _ in range(runs):
                began = time.perf_counter()
                answer = http.post("/v1/plans/what-if", json={"plan": PLAN, "period_key": "FY2026-Q3"})
                answer.raise_for_status()
                times.append(time.perf_counter() - began)
                served.append(answer.json()["elapsed_ms"])
            live = []
            for _ in range(runs):
                began = time.perf_counter()
                for rep in reps:
                    http.get(f"/v1/reps/{rep}/progress", params={"date": "2025-11-15"}).raise_for_status()
                live.append(time.perf_counter() - began)
            ledger = answer.json()["as_of_seq"]
    return [Figure(
        "whatif", f"what-if of a quarterly plan over FY2026-Q3, {len(reps)} reps, {ledger:,} ledger events",
        statistics.median(times) * 1000, "ms", higher_is_better=False,
        reference=statistics.median(live) * 1000,
        reference_label=f"live progress of the {len(reps)} reps, one GET each (read model)",
        note=f"the gateway's own time: {statistics.median(served):,.0f} ms",
    )]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    print_figures(run(parser.parse_args().runs))


if __name__ == "__main__":
    main()
