"""Scale-out on PostgreSQL: two scoring workers, two notifiers and two gateways give the same KPIs, standings,
plan progress and notifications as one of each — also when one worker is killed with SIGKILL while the
events stream in and the survivor takes its partitions over.

The scenario (tests/support/scenario.py) is the replay test's CRM feed thinned to a few thousand events plus
a live part dated today that makes reps cross plan tiers; each run gets a fresh PostgreSQL database. What
each stack answers is collected into one dict; the two runs and the two gateways must agree, the KPIs must
be the independent expectation (CONTRACT §1–3), and every crossing the contract asks for must be notified
exactly once (CONTRACT §4) — one row, one delivery per channel, one message per kind on the topic, one
recording across both notifiers. (test_scoring_faults covers kills at each step of a batch and replacement
workers on SQLite; test_gateway the replica read path.)
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import POSTGRES_ADMIN_URL
from tests.support.crm_feed import post_feed
from tests.support.kafka import read_topic
from tests.support.metrics import metric, owned_partitions, scrape
from tests.support.scenario import (
    SCENARIO_ENV,
    Scenario,
    build_scenario,
    collect,
    configure,
    crossing_problems,
    current_log,
    differences,
    expected_crossings,
    kpi_mismatches,
    notification_log,
    wait_settled,
)
from tests.support.stack import (
    Stack,
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
    wait_until,
)

pytestmark = pytest.mark.integration

FEED_SIZE = 3000

LOGGED_ENV = {**SCENARIO_ENV, "SALESPULSE_LOG_LEVEL": "INFO", "SALESPULSE_LIBRARY_LOG_LEVEL": "INFO"}
"""Both stacks log their rebalances, restores and checkpoints: a run that does not settle shows them (`explain`)."""


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], str]]:
    """Makes fresh PostgreSQL databases; drops them after the test (after its stacks have stopped, since
    this fixture is set up before `stack_factory`)."""
    if not postgres_available(POSTGRES_ADMIN_URL):
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; start it (see README, Testing)")
    made: list[str] = []

    def make() -> str:
        made.append(create_postgres_database(POSTGRES_ADMIN_URL, "sp_scale"))
        return made[-1]

    yield make
    for url in made:
        drop_postgres_database(POSTGRES_ADMIN_URL, url)


HEALTH = {"ingest": "/v1/health", "scoring": "/metrics", "notifier": "/v1/ready", "api": "/v1/ready"}


def start_all(stack: Stack, services: dict[str, str]) -> None:
    """Migrate, then launch every service (label → service name) at once and wait until each is ready:
    on two cores, starting them one after the other would double the time."""
    stack.prepare()
    for label, name in services.items():
        stack.start_service(name, instance=label)
    for label, name in services.items():
        stack.wait_healthy(label, HEALTH[name], timeout=120)


def check_notified_exactly_once(stack: Stack, scenario: Scenario, notifiers: list[str]) -> None:
    """Each crossing is one notification with one delivery per channel, one `notification` and one
    `celebration` message on the topic, and was recorded once over all the notifiers."""
    everything = notification_log(stack, scenario)
    assert not crossing_problems(everything, scenario)
    log = current_log(everything, scenario)  # pushed; past periods ended more than SALESPULSE_NOTIFY_MAX_AGE ago
    ids = {n["notification_id"] for n in log}
    assert len(ids) == len(log) == len(expected_crossings(scenario))
    for entry in log:
        channels = [d["channel"] for d in entry["deliveries"]]
        assert sorted(channels) == ["board", "in_app"], entry
    messages = read_topic(stack.bootstrap, f"{stack.topic_prefix}notifications", timeout=30)
    sent = Counter((m["type"], m["notification_id"]) for m in messages)
    assert set(sent) == {(kind, i) for kind in ("notification", "celebration") for i in ids}
    assert set(sent.values()) == {1}, [key for key, n in sent.items() if n > 1][:10]
    recorded = sum(
        metric(scrape(stack, label), "salespulse_notifier_tier_crossings_recorded_total") for label in notifiers
    )
    assert recorded == len(everything)  # each crossing, past periods included, recorded by one notifier only


def run_one_of_each(stack: Stack, scenario: Scenario) -> dict[str, Any]:
    """(a) one ingest, one scoring worker, one notifier, one gateway; the feed posted in one go."""
    start_all(stack, {"ingest": "ingest", "scoring": "scoring", "notifier": "notifier", "api": "api"})
    configure(stack, scenario)
    accepted, duplicates = post_feed(stack, scenario.feed.batches(500))
    assert (accepted, duplicates) == (scenario.feed.unique, scenario.feed.resent)
    settle_or_explain(stack, scenario, stack.api)
    check_notified_exactly_once(stack, scenario, ["notifier"])
    result = collect(stack, scenario)
    for label in list(stack.services):  # done with: free the two cores for the scaled-out run at once
        stack.kill(label)
    return result


def run_scaled_out_with_a_kill(stack: Stack, scenario: Scenario) -> tuple[dict[str, Any], dict[str, Any]]:
    """(b) one ingest, two scoring workers, two notifiers, two gateways; worker 2 is killed with SIGKILL
    while the feed is being posted, and worker 1 takes over all its partitions (no replacement)."""
    start_all(
        stack,
        {
            "ingest": "ingest",
            "scoring": "scoring",
            "scoring-2": "scoring",
            "notifier": "notifier",
            "notifier-2": "notifier",
            "api": "api",
            "api-2": "api",
        },
    )
    wait_until(
        lambda: owned_partitions(stack, "scoring") == 6 and owned_partitions(stack, "scoring-2") == 6,
        timeout=60,
        interval=0.5,
        what="the two workers to split the 12 source partitions",
    )
    second_api = f"http://127.0.0.1:{stack.ports['api-2']}"
    configure(stack, scenario)

    deal_events = sum(1 for event in scenario.feed.events if event["type"] == "deal")
    killed = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        posting = pool.submit(post_around_a_kill, stack, scenario, killed)
        scored = wait_until(lambda: _deals_scored(stack, "scoring-2", 300), timeout=90, what="worker 2 into the feed")
        stack.kill("scoring-2")  # SIGKILL
        killed.set()
        assert not posting.done() and scored < deal_events, "the kill must come while events flow"
        wait_until(
            lambda: owned_partitions(stack, "scoring") == 12,
            timeout=60,
            interval=0.5,
            what="the survivor to take over all 12 source partitions",
        )
        assert posting.result() == (scenario.feed.unique, scenario.feed.resent)

    settle_or_explain(stack, scenario, stack.api, second_api)
    check_notified_exactly_once(stack, scenario, ["notifier", "notifier-2"])
    return collect(stack, scenario), collect(stack, scenario, second_api)


NOISE = ("Starting...", "Stopping...", "Creating topic", "Updating subscribed topics", "Subscribed to topic")


def settle_or_explain(stack: Stack, scenario: Scenario, *apis: str) -> None:
    """`wait_settled` through each gateway; a run that does not settle fails with what its workers logged."""
    try:
        for api in apis:
            wait_settled(stack, scenario, api)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{explain(stack)}") from None


def explain(stack: Stack) -> str:
    """What the scoring workers logged (their rebalances, restores, checkpoints, warnings), for a run that did not
    settle: the evidence a rare failure on a busy machine leaves."""
    parts = []
    for label, keep in (("scoring", 200), ("scoring-2", 60)):
        lines = [line for line in stack.tail(label, 5000).splitlines()
                 if line.strip() and not any(n in line for n in NOISE)]
        if not lines:
            continue  # no such worker in this stack, or nothing of note
        parts.append(f"--- {label}.log, last {keep} lines of note ---\n" + "\n".join(lines[-keep:]))
    return "\n".join(parts)


def post_around_a_kill(stack: Stack, scenario: Scenario, killed: threading.Event) -> tuple[int, int]:
    """Post the feed at a steady pace (200 events every 0.1 s). Two thirds in, if the kill has not come
    yet (a slow machine), hold the rest until it has: the kill always lands while the feed streams in.
    Returns (accepted, duplicates) over all the answers."""
    batches = scenario.feed.batches(200)
    cut = len(batches) * 2 // 3
    accepted, duplicates = post_feed(stack, batches[:cut], pause=0.1)
    assert killed.wait(timeout=120), "the worker was not killed"
    more = post_feed(stack, batches[cut:], pause=0.1)
    return accepted + more[0], duplicates + more[1]


def _deals_scored(stack: Stack, label: str, floor: int) -> float | None:
    """The deal events worker `label` has scored, once they are at least `floor`."""
    value = metric(scrape(stack, label), "salespulse_scoring_events_total", agent="deal-state")
    return value if value >= floor else None


@pytest.mark.timeout(1800)  # eleven processes on two shared cores
def test_two_of_each_with_a_worker_killed_mid_stream_give_what_one_of_each_gives_on_postgresql(
    postgres_database: Callable[[], str], stack_factory: Any
) -> None:
    scenario = build_scenario(FEED_SIZE)
    assert len(expected_crossings(scenario)) > 0

    single = run_one_of_each(stack_factory(postgres_database(), **LOGGED_ENV), scenario)
    first, second = run_scaled_out_with_a_kill(stack_factory(postgres_database(), **LOGGED_ENV), scenario)

    problems = kpi_mismatches(scenario, single)
    assert not problems, f"{len(problems)} KPIs differ from the expectation, e.g.:\n" + "\n".join(problems[:30])
    assert not differences(first, second), "the two gateways differ:\n" + "\n".join(differences(first, second))
    assert not differences(single, first), "scale-out differs from one of each:\n" + "\n".join(
        differences(single, first)
    )
    # The collected result is not trivially equal: it holds every expected crossing and non-zero standings.
    assert len(single["notifications"]) == len(expected_crossings(scenario))
    assert any(entry["value"] for body in single["standings"].values() for entry in body["entries"])
