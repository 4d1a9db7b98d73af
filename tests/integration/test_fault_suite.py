"""The fault suite inside `make test` (a smaller load and matrix than `make reliability`, three runs at a time):
for each fault — kill -9 of ingest and of the scoring worker, a restart of the embedded broker, a database
outage — nothing acknowledged is lost, nothing is counted twice, every tier crossing is notified exactly once
per channel, and everything a user sees equals the undisturbed run's.

The gateway and notifier kills run in `make reliability` only; in `make test` their stronger counterparts are
tests/integration/test_notifier_stack.py (the notifier killed mid-burst, every crossing once per channel) and
tests/integration/test_up_heals.py and tests/e2e/test_screens_recover.py (the gateway killed, screens back)."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import FAULTS, Fault, Outcome, RunOptions, run_suite
from tests.faults.report import table
from tests.support import figures
from tests.support.scenario import build_scenario

pytestmark = pytest.mark.integration

IN_MAKE_TEST: tuple[Fault, ...] = tuple(f for f in FAULTS if f.key in {"baseline", "ingest", "relay", "scoring",
                                                                       "broker", "database"})
CLIENT_VISIBLE = {"ingest", "broker", "database"}
"""Faults the load's clients must feel (refused or unanswered requests they post again)."""


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Every run at once for the module: runs spend most of their time waiting (a killed worker's session to
    time out, a restart, an outage), so three share the machine."""
    scenario = build_scenario(300)
    began = time.monotonic()
    done = run_suite(IN_MAKE_TEST, scenario, RunOptions(pause=0.1, fault_at=0.3), jobs=3)
    section = "fault suite (make test's matrix; `make reliability` runs every fault)"
    for line in table(done).splitlines():
        figures.record(section, line)
    figures.record(section, f"{len(done)} runs, 3 at a time, in {time.monotonic() - began:.0f} s")
    return {outcome.fault.key: outcome for outcome in done}


@pytest.mark.timeout(480)  # the first test's setup runs the whole suite
@pytest.mark.parametrize("fault", [fault.key for fault in IN_MAKE_TEST])
def test_nothing_lost_nothing_doubled_each_crossing_notified_once(outcomes: dict[str, Outcome], fault: str) -> None:
    outcome = outcomes[fault]
    baseline = outcomes["baseline"]
    assert outcome.sent == baseline.sent > 0, "every event of the feed was acknowledged in the end"
    if outcome.acknowledged_at_fault is not None:
        assert outcome.acknowledged_at_fault < outcome.sent, "the fault came while the load was flowing"
    if fault in CLIENT_VISIBLE:
        assert outcome.retries > 0, "the clients felt the fault"
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert outcome.counted == outcome.expected > 0
    assert outcome.kpi_problems == []
    assert outcome.crossings == outcome.expected_crossings > 0
    assert set(outcome.notifications) == {"board", "email", "in_app", "webhook"}
    assert outcome.exactly_once, (outcome.notifications, outcome.received)
    assert not outcome.baseline_differences, outcome.baseline_differences
