"""One fault run: the whole stack as real processes (ingest, scoring, gateway, notifier) on a broker of its own
and a fresh PostgreSQL database, real webhook and SMTP receivers, a load generator posting the feed from a
thread, one fault injected while the load flows, and the outcome counted from what users see."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from sqlalchemy.engine import make_url

from services.common import db
from services.common.broker import ensure_topics
from services.common.settings import Settings
from tests.support.crm_feed import (
    FISCAL_YEAR_START_MONTH,
    TIMEZONE,
    Event,
    Expected,
    fetch_kpis,
    mismatches,
    period_keys,
    year_queries,
)
from tests.support.metrics import relay_leader
from tests.support.receivers import IdempotentHook, Mailbox, receiver_env
from tests.support.scenario import (
    SCENARIO_ENV,
    Scenario,
    collect,
    collect_current,
    configure,
    crossing_problems,
    crossings_of,
    current_log,
    differences,
    expected_crossings,
    notification_log,
    wait_settled,
)
from tests.support.stack import (
    ROOT,
    Service,
    Stack,
    child_of,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    random_admin_key,
    start_broker_process,
    stop_processes,
    up_port_env,
    up_ports,
    wait_until,
)
from tests.support.tcp_proxy import TcpProxy

POSTGRES_ADMIN_URL = os.environ.get("SALESPULSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
KPI_FACTS = ("activities", "deals_won", "deals_lost")
"""The countable facts in a rep's KPIs: what "counted", "duplicates" and "lost" are measured in."""
DATABASE_OUTAGE_SECONDS = 5.0
_MIGRATING = threading.Lock()
"""Alembic keeps its migration context in module globals: one migration at a time in this process."""
HEALTH = {"ingest": "/v1/health", "relay": "/v1/health", "scoring": "/metrics", "api": "/v1/ready",
          "notifier": "/v1/ready"}
"""Where each kind of service says it is up (the gateway and the notifier: ready, caught up)."""


# --- the load -------------------------------------------------------------------------------------------------


class Load:
    """Posts the feed's batches as NDJSON from a thread, `pause` seconds apart. A batch answered with anything but
    202, or not answered, is posted again as it is (same event ids: ingest's idempotency makes that safe), so the
    events acknowledged are exactly the distinct event ids of the batches that got a 202."""

    def __init__(self, stack: Stack, batches: list[list[Event]], pause: float) -> None:
        self._stack = stack
        self._ingests = [f"http://127.0.0.1:{port}" for name, port in stack.ports.items() if name.startswith("ingest")]
        self._posts = 0
        self._batches = batches
        self._pause = pause
        self._lock = threading.Lock()
        self._acknowledged: set[str] = set()
        self.retries = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    @property
    def acknowledged(self) -> set[str]:
        with self._lock:
            return set(self._acknowledged)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for batch in self._batches:
                    self._post_until_acknowledged(client, batch)
                    time.sleep(self._pause)  # pacing the load, not waiting for anything
        except BaseException as exc:  # noqa: BLE001  (reported by the run)
            self.error = exc

    def _post_until_acknowledged(self, client: httpx.Client, batch: list[Event]) -> None:
        body = b"\n".join(orjson.dumps(event) for event in batch)
        headers = {**self._stack.headers, "Content-Type": "application/x-ndjson"}
        while True:
            self._posts += 1  # each try goes to the next ingest process, as a load balancer spreads them
            ingest = self._ingests[self._posts % len(self._ingests)]
            try:
                response = client.post(f"{ingest}/v1/events", content=body, headers=headers)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 202:
                with self._lock:
                    self._acknowledged.update(str(event["event_id"]) for event in batch)
                return
            if response is not None and response.status_code not in (502, 503, 504):
                raise AssertionError(f"ingest refused a batch: {response.status_code} {response.text[:500]}")
            self.retries += 1
            time.sleep(0.2)  # back off before the retry a real client would make

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the load did not finish within {timeout:.0f} s")
        if self.error is not None:
            raise AssertionError(f"the load failed: {self.error!r}")


# --- the stack of one run -------------------------------------------------------------------------------------


@dataclass
class FaultStack:
    """A stack on its own broker and database; `proxy` sits between the services and PostgreSQL."""

    stack: Stack
    broker: subprocess.Popen[bytes] | None
    """The broker this suite started; None under `salespulse up`, which runs its own."""
    broker_port: int
    direct_url: str
    proxy: TcpProxy
    hook: IdempotentHook
    mailbox: Mailbox
    up: subprocess.Popen[bytes] | None = None
    """`salespulse up` when it runs the stack (and supervises it) instead of this suite."""
    revivals: list[str] = field(default_factory=list)
    """Services this suite restarted after they stopped by themselves (`revive`)."""
    kinds: tuple[str, ...] = ("ingest", "scoring", "api", "notifier")
    """The services of the run, in the order they start."""

    @classmethod
    def start(
        cls, workdir: Path, ingest_processes: int = 1, under_up: bool = False, external_relay: bool = False
    ) -> FaultStack:
        broker_port = free_port()
        broker = None if under_up else start_broker_process(broker_port)
        direct_url = create_postgres_database(POSTGRES_ADMIN_URL, "sp_fault")
        url = make_url(direct_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        hook = IdempotentHook()
        mailbox = Mailbox().__enter__()
        stack = Stack(
            bootstrap=f"127.0.0.1:{broker_port}",
            database_url=url.set(port=proxy.port).render_as_string(hide_password=False),
            data_dir=workdir,
            topic_prefix=f"f{uuid.uuid4().hex[:6]}.",
            admin_key=random_admin_key(),
            extra_env={**SCENARIO_ENV, **receiver_env(mailbox, hook)},
        )
        run = cls(stack, broker, broker_port, direct_url, proxy, hook, mailbox)
        if external_relay:  # as `salespulse up` and docker-compose run it: the relay in its own process
            stack.extra_env["SALESPULSE_RELAY"] = "external"
            run.kinds = ("ingest", "relay", "scoring", "api", "notifier")
        try:
            if under_up:
                run.start_up()
                return run
            run.prepare()
            for name in run.kinds:
                stack.start_service(name)
            for number in range(2, ingest_processes + 1):
                stack.start_service("ingest", instance=f"ingest-{number}")
            run.wait_healthy()
        except BaseException:
            run.close()
            raise
        return run

    def revive(self, log: Callable[[str], None]) -> None:
        """Start again a service that stopped by itself, as the deployments do (compose's `restart:
        unless-stopped`, `salespulse up`'s supervisor): scoring stops on purpose when a batch cannot complete
        (a database outage mid-batch) so that the batch is redone by its replacement. Under `up`, `up` does it."""
        if self.up is not None:
            return
        for label, service in list(self.stack.services.items()):
            code = service.proc.poll()
            if code is None:
                continue
            log(f"  {label} stopped by itself (exit {code}); restarting it as its supervisor would")
            self.revivals.append(label)
            self.stack.services.pop(label)
            self.stack.start_service(label.split("-")[0], instance=label)

    def start_up(self) -> None:
        """Run the stack as `salespulse up` does: the embedded broker and every service as its children, which
        it supervises (restarts, repairs a broker that came back empty) with no operator."""
        stack = self.stack
        ports = up_ports()
        stack.ports.update(ports)
        env = stack.env(SALESPULSE_BROKER_PORT=str(self.broker_port), **up_port_env(ports))
        del env["SALESPULSE_KAFKA_BOOTSTRAP"]  # none given: `up` starts the embedded broker on BROKER_PORT
        stack.data_dir.mkdir(parents=True, exist_ok=True)
        log = stack.data_dir / "up.log"
        with log.open("ab") as out:
            self.up = subprocess.Popen([sys.executable, "-m", "services.cli.main", "up"], env=env, cwd=ROOT,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        stack.services["up"] = Service("up", self.up, log)
        self.wait_healthy()

    def prepare(self) -> None:
        """Migrate the database and create the topics, as `Stack.prepare` does, in this process: two fewer
        interpreters to start per run on a busy machine."""
        settings = Settings(kafka_bootstrap=self.stack.bootstrap, database_url=self.direct_url,
                            topic_prefix=self.stack.topic_prefix, data_dir=self.stack.data_dir)
        self.stack.data_dir.mkdir(parents=True, exist_ok=True)
        with _MIGRATING:
            db.migrate(settings.db_url)
        asyncio.run(ensure_topics(settings))

    def wait_healthy(self, *labels: str) -> None:
        """Wait for each service (all of them by default) to answer its health or readiness check."""
        if self.up is not None:  # the services are `up`'s children: ask them where `up` serves them
            for label in ("ingest", "api", "notifier"):
                url = f"http://127.0.0.1:{self.stack.ports[label]}{HEALTH[label]}"
                up = self.up

                def answers(url: str = url, up: subprocess.Popen[bytes] = up) -> bool:
                    if up.poll() is not None:
                        raise AssertionError(f"salespulse up exited ({up.returncode}):\n{self.stack.tail('up')}")
                    return httpx.get(url, timeout=2).status_code == 200

                wait_until(answers, timeout=180, interval=0.2, what=f"{label} under salespulse up")
            return
        for label in labels or tuple(self.stack.services):
            self.stack.wait_healthy(label, HEALTH[self.kind(label)], timeout=120)

    def kind(self, label: str) -> str:
        return next(name for name in HEALTH if label.startswith(name))

    def stop_services(self, grace: float = 15.0) -> None:
        """Stop every service as an operator does (SIGTERM to all), forcefully those still running after `grace`
        seconds (a process waiting for a broker that is gone may not finish its shutdown)."""
        self.stack.stop(grace)

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=self.stack.env(), cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise AssertionError(f"salespulse {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def close(self) -> None:
        """Tear the run down; its state is thrown away, so nothing needs a graceful stop."""
        if self.up is not None:  # Ctrl-C: `up` stops its children (each in a session of its own) in order
            stop_processes([self.up], signal.SIGINT, grace=60)
            self.stack.services.pop("up", None)
        for label in list(self.stack.services):
            self.stack.kill(label)
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            self.broker.wait(timeout=10)
        self.proxy.close()
        self.hook.close()
        self.mailbox.__exit__(None, None, None)
        drop_postgres_database(POSTGRES_ADMIN_URL, self.direct_url)


# --- the faults -----------------------------------------------------------------------------------------------


def _kill_and_restart(label: str, replacement: str | None = None) -> Callable[[FaultStack, Load], None]:
    """kill -9 a service in the middle of the load, then start it (or a replacement) again."""

    def inject(run: FaultStack, load: Load) -> None:
        kind = run.kind(label)
        run.stack.kill(label)  # SIGKILL to the process group: no shutdown, nothing flushed
        run.stack.start_service(kind, instance=replacement or label)
        run.wait_healthy(replacement or label)

    return inject


def _kill_relay_leader(run: FaultStack, load: Load) -> None:
    """Of the ingest processes sharing the ledger, kill -9 the one running the relay (a follower takes the lock
    and publishes what it had not), then start it again."""
    leader = relay_leader(run.stack, [label for label in run.stack.services if label.startswith("ingest")])
    run.stack.kill(leader)
    run.stack.start_service("ingest", instance=leader)
    run.wait_healthy(leader)


def _cut_database(run: FaultStack, load: Load) -> None:
    """Sever every connection to PostgreSQL and refuse new ones for DATABASE_OUTAGE_SECONDS, then let them
    through again. (Whether the clients felt it — ingest answering 503 — is the run's `retries`.)"""
    run.proxy.down()
    cut_at = time.monotonic()
    wait_until(lambda: time.monotonic() - cut_at >= DATABASE_OUTAGE_SECONDS, timeout=DATABASE_OUTAGE_SECONDS + 5,
               interval=0.1, what="the end of the database outage")
    run.proxy.up()


def _kill_broker_under_up(run: FaultStack, load: Load) -> None:
    """kill -9 the embedded broker that `salespulse up` runs; no operator: `up` restarts it, replays the ledger
    into the new topics and restarts the services. The fault is over when they all answer again."""
    assert run.up is not None
    log = run.stack.data_dir / "up.log"
    repaired = log.read_text(errors="replace").count(REPAIRED)
    os.kill(child_of(run.up.pid, "broker --listener-url"), signal.SIGKILL)
    # Ingest keeps answering through the repair (it only writes the ledger), so its health says nothing; `up`
    # says when the repair is done.
    wait_until(lambda: log.read_text(errors="replace").count(REPAIRED) > repaired, timeout=180, interval=0.1,
               what="salespulse up repairing the broker and restarting the services")
    run.wait_healthy()


REPAIRED = "salespulse: repaired; every service restarted"
"""What `salespulse up` prints once it has replayed the ledger into a new broker and started the services."""


def _restart_broker(run: FaultStack, load: Load) -> None:
    """The embedded broker dies and comes back empty (it keeps everything in memory); then the operator procedure
    of docs/operations.md ("The embedded broker restarted"): stop the services, start the broker, replay the
    ledger into fresh topics, start the services."""
    assert run.broker is not None
    run.broker.kill()
    run.broker.wait(timeout=10)
    run.stop_services()
    run.broker = start_broker_process(run.broker_port)
    run.cli("replay")
    for name in run.kinds:
        run.stack.start_service(name)
    run.wait_healthy()


@dataclass(frozen=True)
class Fault:
    key: str
    title: str
    inject: Callable[[FaultStack, Load], None] | None
    weight: int = 1
    """How long its run takes, roughly: the heaviest start first when runs share the machine."""
    ingest_processes: int = 1
    """Ingest processes sharing the ledger (the load spreads its requests over them)."""
    under_up: bool = False
    """The stack runs under `salespulse up` (embedded broker, supervised children) rather than this suite."""
    external_relay: bool = False
    """The relay runs in its own process (SALESPULSE_RELAY=external) rather than in ingest's."""


FAULTS: tuple[Fault, ...] = (
    Fault("baseline", "none (undisturbed run)", None),
    Fault("ingest", "kill -9 ingest, restart it", _kill_and_restart("ingest")),
    Fault("scoring", "kill -9 the scoring worker, start a replacement", _kill_and_restart("scoring", "scoring-2"), 2),
    Fault("api", "kill -9 the gateway, restart it", _kill_and_restart("api")),
    Fault("notifier", "kill -9 the notifier, restart it", _kill_and_restart("notifier")),
    Fault("broker", "restart the embedded broker (topics lost; replay from the ledger)", _restart_broker, 3),
    Fault("database", f"cut the database connections for {DATABASE_OUTAGE_SECONDS:.0f} s", _cut_database),
    Fault("relay", "the relay in its own process killed (kill -9), restarted", _kill_and_restart("relay"),
          external_relay=True),
    Fault("ingest-leader", "two ingest processes, the relay's leader killed (kill -9), restarted", _kill_relay_leader,
          ingest_processes=2),
    Fault("up-broker", "kill -9 the embedded broker under `salespulse up`, no operator", _kill_broker_under_up, 3,
          under_up=True),
)


# --- what users see, and the outcome --------------------------------------------------------------------------


@dataclass
class Outcome:
    """One row of the table, and what it was computed from."""

    fault: Fault
    sent: int
    expected: int
    counted: int
    duplicates: int
    lost: int
    crossings: int
    expected_crossings: int
    notifications: dict[str, int]
    received: dict[str, int]
    resent_on_wire: int
    recovery_seconds: float | None
    retries: int
    """Requests the load had to post again (the fault was felt by the clients)."""
    acknowledged_at_fault: int | None
    seen: dict[str, Any] = field(repr=False)
    kpi_problems: list[str] = field(default_factory=list)
    baseline_differences: list[str] | None = None

    @property
    def exactly_once(self) -> bool:
        """Every crossing notified once per channel, at the receivers too."""
        counts = list(self.notifications.values()) + list(self.received.values())
        return self.crossings == self.expected_crossings and all(n == self.crossings for n in counts)

    @property
    def clean(self) -> bool:
        return (not self.duplicates and not self.lost and not self.kpi_problems and self.exactly_once
                and not self.baseline_differences)


def fact_counts(stack: Stack, expected: Expected) -> tuple[int, int, int, int]:
    """(expected, counted, duplicates, lost) over every rep's activities, deals won and deals lost per fiscal
    year, read through the gateway: a fact counted twice for one rep and missing for another shows as one
    duplicate and one loss, never as 0. A rep the gateway does not know (404) has counted nothing."""
    zone = ZoneInfo(TIMEZONE)
    want_total = got_total = duplicates = lost = 0
    for (rep, kind, on), body in fetch_kpis(stack, year_queries(expected)).items():
        key = period_keys(datetime(on.year, on.month, on.day, 12, tzinfo=zone), zone, FISCAL_YEAR_START_MONTH)[kind]
        want = expected.get(rep, kind, key).report()
        for name in KPI_FACTS:
            wanted, got = round(want[name]), round(body["kpis"][name]) if body else 0
            want_total, got_total = want_total + wanted, got_total + got
            duplicates += max(0, got - wanted)
            lost += max(0, wanted - got)
    return want_total, got_total, duplicates, lost


def activities_counted(stack: Stack, expected: Expected) -> int:
    """Activities in every rep's fiscal-year KPIs, summed (-1 while the gateway does not answer)."""
    try:
        answers = fetch_kpis(stack, year_queries(expected))
    except (httpx.HTTPError, OSError, AssertionError):
        return -1
    return sum(body["kpis"]["activities"] for body in answers.values() if body)


# --- one run --------------------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    pause: float = 0.1
    """Seconds between two batches of the load (100-event batches: about 1,000 events/s)."""
    fault_at: float = 0.3
    """The fault comes once this share of the feed is acknowledged."""
    settle_timeout: float = 180.0
    full: bool = False
    """Wait for and compare every period the feed touches (`scenario.collect`, thousands of requests), not only
    the fiscal years and today's periods (`scenario.collect_current`)."""
    workdir: Path | None = None


def run_fault(fault: Fault, scenario: Scenario, options: RunOptions,
              log: Callable[[str], None] = print) -> Outcome:
    workdir = Path(tempfile.mkdtemp(prefix=f"fault-{fault.key}-", dir=options.workdir))
    run = FaultStack.start(workdir, fault.ingest_processes, fault.under_up, fault.external_relay)
    try:
        configure(run.stack, scenario)
        feed = scenario.feed
        load = Load(run.stack, feed.batches(100), options.pause).start()
        recovery = at_fault = None
        if fault.inject is not None:
            threshold = int(options.fault_at * feed.unique)
            wait_until(lambda: len(load.acknowledged) >= threshold, timeout=120, interval=0.05,
                       what=f"{threshold} events acknowledged before the fault")
            acknowledged = load.acknowledged
            at_fault = len(acknowledged)
            before = scenario.expected_of([e for e in feed.events if e["event_id"] in acknowledged])
            activities = sum(t.activities for (_, kind, _), t in before.totals.items() if kind == "year")
            started = time.monotonic()
            log(f"  {fault.key}: injecting at {at_fault} events acknowledged")
            fault.inject(run, load)
            def recovered() -> bool:
                run.revive(log)
                return activities_counted(run.stack, before) >= activities

            wait_until(recovered, timeout=options.settle_timeout, interval=0.2,
                       what="the activities acknowledged before the fault in the KPIs")
            recovery = time.monotonic() - started
            log(f"  {fault.key}: recovered in {recovery:.1f} s")
        load.join(timeout=options.settle_timeout)
        outcome = settle(run, scenario, fault, load, recovery, options)
        outcome.acknowledged_at_fault = at_fault
        return outcome
    except BaseException:
        for label in list(run.stack.services):
            log(f"--- {label} log tail ---\n{run.stack.tail(label, 30)}")
        raise
    finally:
        run.close()


def settle(run: FaultStack, scenario: Scenario, fault: Fault, load: Load, recovery: float | None,
           options: RunOptions) -> Outcome:
    """Wait until the pipeline shows every acknowledged event and sent every notification; then count."""
    stack = run.stack
    acknowledged = load.acknowledged
    expected = scenario.expected_of([e for e in scenario.feed.events if e["event_id"] in acknowledged])
    problems: list[str] = []
    try:
        if options.full:
            wait_settled(stack, scenario, timeout=options.settle_timeout)
        else:
            wait_light(stack, scenario, expected, options.settle_timeout)
    except AssertionError as exc:
        problems.append(str(exc)[:2000])  # counted below: the table says what is missing or doubled
    seen = (collect if options.full else collect_current)(stack, scenario)
    want, got, duplicates, lost = fact_counts(stack, expected)
    problems += mismatches(expected, fetch_kpis(stack, year_queries(expected)))
    log_entries = notification_log(stack, scenario)
    problems += crossing_problems(log_entries, scenario)
    log_entries = current_log(log_entries, scenario)  # the pushed ones; past periods ended long before now
    crossings = crossings_of(log_entries)
    sent: Counter[str] = Counter(d["channel"] for e in log_entries for d in e["deliveries"] if d["status"] == "sent")
    ids = {e["notification_id"] for e in log_entries}
    received = {
        "webhook (JSON receiver)": len(set(run.hook.keys("/json")) & ids),
        "webhook (Slack receiver)": len(set(run.hook.keys("/slack")) & ids),
        "e-mail (SMTP server)": len(set(run.mailbox.ids()) & ids),
    }
    wire = sum(run.hook.keys(p).total() for p in ("/json", "/slack")) + len(run.mailbox.ids())
    return Outcome(
        fault=fault, sent=len(acknowledged), expected=want, counted=got, duplicates=duplicates, lost=lost,
        crossings=len(crossings), expected_crossings=len(expected_crossings(scenario)),
        notifications=dict(sorted(sent.items())), received=received, resent_on_wire=wire - sum(received.values()),
        recovery_seconds=recovery, retries=load.retries, acknowledged_at_fault=None, seen=seen,
        kpi_problems=problems,
    )


def wait_light(stack: Stack, scenario: Scenario, expected: Expected, timeout: float) -> None:
    """`wait_settled` on the cheap: every rep's fiscal-year KPIs as expected, then every expected crossing
    notified with all its deliveries sent."""
    queries = year_queries(expected)
    wait_until(lambda: not mismatches(expected, fetch_kpis(stack, queries)), timeout=timeout, interval=0.5,
               what="every rep's fiscal-year KPIs")
    def notified() -> bool:
        log = notification_log(stack, scenario)
        return not crossing_problems(log, scenario) and all(d["status"] == "sent" for n in log for d in n["deliveries"])

    wait_until(notified, timeout=timeout, interval=0.5, what="every expected crossing notified and sent")


def compare_with_baseline(outcomes: list[Outcome]) -> None:
    """Mark each disturbed run with where it differs from the undisturbed one (nothing, when all is well)."""
    baseline = next(o for o in outcomes if o.fault.inject is None)
    for outcome in outcomes:
        if outcome is not baseline:
            outcome.baseline_differences = differences(baseline.seen, outcome.seen)


def run_suite(faults: Sequence[Fault], scenario: Scenario, options: RunOptions, *, jobs: int = 1,
              log: Callable[[str], None] = print) -> list[Outcome]:
    """Every fault's run (`jobs` at a time: a run spends much of its time waiting for timeouts to pass), in the
    order given, compared with the undisturbed run."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {}
        for fault in sorted(faults, key=lambda f: -f.weight):
            log(f"{fault.key}: {fault.title} …")
            futures[fault.key] = pool.submit(run_fault, fault, scenario, options, log)
        outcomes = [futures[fault.key].result() for fault in faults]
    compare_with_baseline(outcomes)
    return outcomes
