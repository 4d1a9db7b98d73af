"""The fault suite's table, and docs/RELIABILITY.md around it. The hand-written part lives here, so that
regenerating the file keeps it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tests.faults.harness import DATABASE_OUTAGE_SECONDS, Outcome

HEADER = (
    "| fault | events sent | events counted (expected) | duplicates | lost | crossings (expected) "
    "| notifications sent per channel | received (distinct, per receiver) | recovery | same as undisturbed |"
)


@dataclass(frozen=True)
class RunFacts:
    """What the document says about how the table was produced."""

    command: str
    started: str
    feed_events: int
    feed_resent: int
    reps: int
    rate: float
    fault_at: float
    seconds: float
    jobs: int


def _per_channel(counts: dict[str, int]) -> str:
    values = set(counts.values())
    if len(values) == 1:
        return f"{values.pop()} × {len(counts)} ({', '.join(counts)})"
    return ", ".join(f"{channel} {n}" for channel, n in counts.items()) or "0"


def row(outcome: Outcome) -> str:
    recovery = "—" if outcome.recovery_seconds is None else f"{outcome.recovery_seconds:.1f} s"
    if outcome.baseline_differences is None:
        same = "(this is it)"
    elif outcome.baseline_differences:
        same = f"**no** ({len(outcome.baseline_differences)} differences)"
    else:
        same = "yes"
    cells = [
        outcome.fault.title,
        f"{outcome.sent:,}",
        f"{outcome.counted:,} ({outcome.expected:,})",
        f"{outcome.duplicates:,}",
        f"{outcome.lost:,}",
        f"{outcome.crossings} ({outcome.expected_crossings})",
        _per_channel(outcome.notifications),
        _per_channel(outcome.received),
        recovery,
        same,
    ]
    return "| " + " | ".join(cells) + " |"


def table(outcomes: Sequence[Outcome]) -> str:
    separator = "|" + "---|" * HEADER.count(" | ") + "---|"
    return "\n".join([HEADER, separator, *(row(o) for o in outcomes)])


def problems(outcomes: Sequence[Outcome]) -> list[str]:
    """Every way a run fell short, as lines (empty when every run is clean)."""
    out = []
    for o in outcomes:
        name = o.fault.key
        if o.duplicates or o.lost:
            out.append(f"{name}: {o.duplicates} duplicated and {o.lost} lost facts")
        out += [f"{name}: {p}" for p in o.kpi_problems[:10]]
        if not o.exactly_once:
            out.append(f"{name}: {o.crossings} crossings ({o.expected_crossings} expected), notifications "
                       f"{o.notifications}, received {o.received}")
        out += [f"{name}: differs from the undisturbed run at {d}" for d in (o.baseline_differences or [])[:10]]
    return out


METHOD = """\
## Method

Each row is its own run of the whole stack as real processes — ingest, a scoring worker, the gateway and the
notifier — on a Tansu broker started for the run and a fresh PostgreSQL database reached through a TCP proxy
the suite can cut. The notifier delivers to a real HTTP receiver (a Slack-style hook and a signed JSON hook;
both honour `Idempotency-Key`) and a real SMTP server, besides the in-app and board channels.

- **Load.** A generator thread posts the shared scenario (`tests/support/scenario.py`) as NDJSON, 100 events a
  request: a year of CRM history — deal snapshots with reversals (won → reopened → won again or lost, new
  owners and close dates), stale and reordered versions, splits, activities, re-sent events — with today's
  live part interleaved (won and lost deals, activities) that carries reps across the tiers of a monthly
  revenue plan and a quarterly activity plan. A request that gets anything but 202, or no answer, is posted
  again as it is — same event ids, which ingest's idempotency makes safe — so **events sent** is the number
  of distinct events acknowledged with a 202.
- **Fault.** Once {fault_at:.0%} of the feed is acknowledged, the fault is injected while the load goes on:
  `kill -9` of a service (its whole process group) and a restart — a new scoring worker takes over the
  killed one's partitions after its session times out —; the broker killed and started again empty,
  followed by the operator procedure in [operations.md](operations.md#the-embedded-broker-restarted)
  (stop the services, start the broker, `salespulse replay`, start the services); every database
  connection severed and refused for {outage:.0f} s; two ingest processes sharing the ledger (the load
  spreads its requests over both) and `kill -9` of the one running the relay, which the other takes over;
  or the stack run by `salespulse up` (embedded broker and every service as its children) and its broker
  killed, with no operator: `up` restarts the broker, replays the ledger and restarts the services.
- **Counting.** When the load is done the suite waits — on conditions with deadlines, never on sleeps — for
  every rep's KPIs to equal what the contract gives for the acknowledged events, and for every crossing's
  deliveries to be sent. That expectation is computed by the suite from the feed (per deal, only the snapshot
  with the greatest `(version, occurred_at, event_id)` counts), not by the scoring code. **Events counted** are
  the facts in the final KPIs read through the gateway: activities, deals won and deals lost (share-weighted,
  rounded), per rep and fiscal year, summed (an opening snapshot, or one a later snapshot replaced, leaves no
  count of its own, hence fewer than sent). **Duplicates** and **lost** add, per rep, year and fact, what the
  gateway shows above or below the expectation, so one rep's extra never hides another's loss; revenue and
  rates are compared as well.
- **Crossings and notifications.** The live part only adds, so the tiers a rep reaches follow from its final
  totals whatever the batching: every run must notify the same crossings. **Crossings** are the (rep, plan,
  period, tier) in the notification log, expected from the feed. **Notifications** are the deliveries marked
  sent per channel; **received** counts distinct notification ids at each receiver. Exactly once means both
  equal the crossings on every channel. A webhook or e-mail repeated on the wire after a `kill -9` between
  sending and recording carries the same idempotency key; such repeats are counted apart ({resent} in this run
  of the suite).
- **Recovery** is the time from the fault until the KPIs read through the gateway hold every activity
  acknowledged before it (for the broker: the whole procedure included, by the suite or by `salespulse up`).
- **Same as undisturbed** compares what users see with the first row (`scenario.collect_current`, or
  `scenario.collect` with `--full`): every rep's and team's KPIs for each fiscal year and today's day, week,
  month and quarter (with `--full`: every period the feed touches), every board's standings, every rep's plan
  progress (pace and forecast aside, as they move with the clock), and the notification log.
"""


def document(outcomes: Sequence[Outcome], facts: RunFacts) -> str:
    resent = sum(o.resent_on_wire for o in outcomes)
    lines = [
        "# Reliability: the fault suite",
        "",
        "Nothing accepted is lost, nothing is counted twice, no crossing is notified twice — under `kill -9` of",
        "each service (the relay's leader among two ingest processes too), a restart of the embedded broker (by",
        "an operator, and under `salespulse up` by nobody) and a database outage, with events flowing. This file is",
        f"generated by `{facts.command}` (`make reliability`); edit `tests/faults/report.py`, not this file.",
        "`tests/integration/test_fault_suite.py` runs the same suite with a smaller load and matrix inside",
        "`make test`.",
        "",
        table(outcomes),
        "",
        f"Run {facts.started} on the 2-core development machine: {facts.feed_events:,} events posted "
        f"({facts.feed_resent:,} of them twice) for {facts.reps} reps at about {facts.rate:,.0f} events/s; "
        f"{len(outcomes)} runs, {facts.jobs} at a time, in {facts.seconds / 60:.1f} minutes"
        + (" (runs shared the machine, so recovery times are upper bounds)." if facts.jobs > 1 else "."),
        "",
        METHOD.format(fault_at=facts.fault_at, outage=DATABASE_OUTAGE_SECONDS, resent=resent),
    ]
    found = problems(outcomes)
    if found:
        lines += ["## Problems found in this run", "", *(f"- {p}" for p in found), ""]
    return "\n".join(lines)
