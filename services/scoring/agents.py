"""The scoring worker's agents as named functions over one `Scoring` context: the deal-state agent (snapshots in,
credit deltas out), the rep agent (credits and activities in, KPI state and snapshots out), the loop that runs
either batch by batch, and the refresh that recomputes every owned rep when plans change or after a rebalance.
services/scoring/app.py builds the context and registers these with Faust; the argument for exactly-once
effect is in its docstring.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from services.common.background import wait_set
from services.common.clock import Clock
from services.common.settings import Settings
from services.common.topics import partition_for
from services.scoring.codecs import DealState, encode_deal_state, event_json
from services.scoring.crashpoints import CrashPoints
from services.scoring.domain.achievements import with_deal_totals
from services.scoring.domain.credits import Credit
from services.scoring.domain.deals import DealSnapshot, is_newer
from services.scoring.domain.fx import HELD, ONE, Rate, applied_credits
from services.scoring.domain.outboxes import outbox_work
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import Activity, RepState, check_activity
from services.scoring.domain.rollup import deal_delta, restatement, rollup_of
from services.scoring.faust_internals import committed_offsets
from services.scoring.held import HeldList
from services.scoring.history import HistoryWriter
from services.scoring.inputs import read_activity, read_deal
from services.scoring.intake import BatchIntake
from services.scoring.metrics import ScoringMetrics
from services.scoring.outputs import credits_message, read_credits, snapshot_message
from services.scoring.plan_book import PlanBook
from services.scoring.publisher import Publisher
from services.scoring.tables import StateTable

__all__ = [
    "Scoring",
    "carry_restored_outboxes",
    "fail_stop",
    "flush_outboxes",
    "fold_deals",
    "fold_reps",
    "note_restored_outboxes",
    "owned_states",
    "refresh_assignment_metrics",
    "refresh_reps",
    "republish_owned",
    "run_agent",
]

log = logging.getLogger("salespulse.scoring")

ROLLUP_CHECK_SECONDS = 2.0
"""How often a worker with nothing else to do looks whether a roll-up reconcile is due (after a restart or a
rebalance, with no deal events coming)."""

_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError)
"""What decoding or folding a malformed message raises (msgspec.DecodeError and UnreadableMessage are
ValueErrors)."""

Fold = Callable[["Scoring", Sequence[Any]], Awaitable[None]]


@dataclass
class Scoring:
    """What the agents share: settings and calendar, the tables, the topics they write, the plan book, the
    history writer, metrics and crash points, and the batches in flight (a rebalance waits for them)."""

    settings: Settings
    calendar: Calendar
    clock: Clock
    metrics: ScoringMetrics
    crash: CrashPoints
    publisher: Publisher
    deal_table: StateTable
    rep_table: StateTable
    day_table: StateTable
    """The reps' minute days (services/scoring/domain/minute_days.py), on their reps' partitions."""
    history: HistoryWriter
    held_list: HeldList
    """The admin list of held deals (services/scoring/held.py)."""
    plan_book: PlanBook
    encode_rep: Callable[[RepState], bytes]
    credits_topic: str
    snapshots_topic: str
    dead_letter_topic: str
    source_topics: tuple[str, ...]
    config_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """A configuration refresh and a rep batch never interleave."""
    in_flight: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    restored_outboxes: set[str] = field(default_factory=set)
    """Reps restored with outboxes that may not have been carried out: each is carried out before the rep's
    next batch or republish (`carry_restored_outboxes`)."""
    processed: dict[tuple[str, int], int] = field(default_factory=dict)
    """Per source partition, the offset after the last event a completed batch folded (for presence)."""
    consumer: Callable[[], Any] = lambda: None  # the worker's: app.py sets it
    """The worker's consumer: its assignment says which reps and deals are this worker's."""
    rebalances: Callable[[], int] = lambda: 0  # app.py: Faust's count of rebalances begun
    """How many rebalances have begun (a batch folded across one is not acknowledged: `run_agent`)."""
    deal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """A deal batch and a roll-up reconcile never interleave."""
    rollup_dirty: bool = True
    """Whether the roster or the FX rates changed (or the worker started or took partitions over) since the last
    reconcile."""
    held: dict[str, str] = field(default_factory=dict)
    """This worker's deals whose credit is held for want of an FX rate, with their currency (for the metric)."""

    def owned(self, consumer: Any) -> set[int]:
        """The partitions of the rep agent's sources this worker owns now."""
        return {tp.partition for tp in consumer.assignment() if tp.topic == self.credits_topic}

    def owns_every_source(self, consumer: Any) -> bool:
        """Whether this worker owns every partition of every source topic (no other worker shares them)."""
        mine = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        return all((t, p) in mine for t in self.source_topics for p in range(self.settings.partitions))

    def folded(self, consumer: Any) -> dict[tuple[str, int], int]:
        """Per owned source partition, the offset up to which completed batches folded it: this worker's own
        account, or the group's committed offset where that is further (after a restart, before any batch)."""
        committed = committed_offsets(consumer)
        return {
            (tp.topic, tp.partition): max(self.processed.get((tp.topic, tp.partition), 0), committed.get(tp) or 0)
            for tp in consumer.assignment()
            if tp.topic in self.source_topics
        }


async def fold_deals(ctx: Scoring, events: Sequence[Any]) -> None:
    """Snapshots in, credit deltas out: one credits message per (rep, source event), a manager's roll-up credits
    in the same message as any credit of their own (services/scoring/domain/rollup.py)."""
    async with ctx.deal_lock:
        await _fold_deals(ctx, events)


async def _fold_deals(ctx: Scoring, events: Sequence[Any]) -> None:
    # A roll-up follows the roster (services/scoring/domain/rollup.py): never credit from half of it, nor from
    # one older than these events (a team set up, then its first deals posted at once); deals it moved away
    # from are moved first.
    roster = ctx.plan_book.follower
    if not roster.caught_up.is_set():
        await roster.caught_up.wait()
    if events and not await roster.sync(max(record.timestamp or 0 for record in events)):  # ms
        log.warning("deal-state: the roster may lag these events; a roll-up follows the roster as it is read")
    if ctx.rollup_dirty:
        await reconcile_rollup(ctx)
    reps, teams = roster.state.reps(), roster.state.teams()
    fx, zone = ctx.plan_book.fx(), ctx.calendar.zone
    judge_deals = ctx.plan_book.judges_deals()
    held, held_changes = ctx.held, dict[str, DealSnapshot | None]()
    started = time.perf_counter()
    metrics = ctx.metrics
    ages: list[float] = []
    outgoing: list[tuple[bytes, bytes]] = []
    unreadable: list[tuple[bytes, bytes]] = []
    pending: dict[str, DealState] = {}
    get_state = ctx.deal_table.get
    now = ctx.clock.time()
    stale = duplicates = 0
    for message in events:
        try:
            envelope = read_deal(message.value)
            seq = envelope.seq
            snapshot = envelope.event.snapshot()
            deal_id = snapshot.deal_id
            state = pending.get(deal_id) or get_state(deal_id)
            if state is not None and seq <= state.seq:
                duplicates += 1
                continue
            previous = state.snapshot if state is not None else None
            if previous is not None and not is_newer(snapshot, previous):
                stale += 1
                pending[deal_id] = replace(state, seq=seq)
                continue
            rate = fx.deal_rate(snapshot, zone)
            credits, managers = deal_delta(
                previous, state.managers if state is not None else None, snapshot, reps, teams,
                rate_before=state.rate if state is not None else ONE, rate=rate, reporting=fx.reporting,
            )
        except _UNREADABLE as exc:
            unreadable.append(_dead_letter(message, "deal-state", exc))
            continue
        pending[deal_id] = DealState(
            seq, snapshot, event_json(message.value), managers or None, None, state.rollup_n if state else 0, rate
        )
        if rate is HELD or (state is not None and state.rate is HELD):
            _note_held(held, held_changes, deal_id, snapshot, rate)
        ages.append(max(0.0, now - snapshot.occurred_at.timestamp()))
        if not credits:
            continue
        if judge_deals and snapshot.stage == "won":
            credits = with_deal_totals(credits, applied_credits(snapshot, rate))
        src, accepted_ms = f"deals/{message.partition}", envelope.accepted_ms
        if len(credits) == 1:
            outgoing.append((credits[0].rep_id.encode(), credits_message(src, seq, accepted_ms, credits)))
        else:
            by_rep: dict[str, list[Credit]] = {}
            for credit in credits:
                by_rep.setdefault(credit.rep_id, []).append(credit)
            for rep_id, items in by_rep.items():
                outgoing.append((rep_id.encode(), credits_message(src, seq, accepted_ms, items)))
    # Credits (and dead letters) first, acknowledged; then the table; only then are the events
    # acknowledged. A crash in between re-emits the same credits, which the rep agent recognises.
    publish = ctx.publisher.publish
    await asyncio.gather(publish(ctx.credits_topic, outgoing), publish(ctx.dead_letter_topic, unreadable))
    ctx.crash.reached("deal-state:credits-sent")
    await ctx.held_list.write(held_changes)
    await ctx.deal_table.write(pending, {k: encode_deal_state(v) for k, v in pending.items()})
    ctx.crash.reached("deal-state:table-written")
    if duplicates:
        metrics.duplicates.labels("deal-state").inc(duplicates)
    if stale:
        metrics.stale_snapshots.inc(stale)
    if unreadable:
        metrics.dead_letters.labels("deal-state").inc(len(unreadable))
    metrics.set_held(held)
    metrics.observe_ages("deal-state", ages)
    metrics.observe_batch("deal-state", len(events), time.perf_counter() - started)


def _note_held(
    held: dict[str, str], changes: dict[str, DealSnapshot | None], deal_id: str, snapshot: DealSnapshot, rate: Rate
) -> None:
    """Record whether a deal's credit is held now (the worker's count, and the admin list's change)."""
    if rate is HELD:
        held[deal_id] = snapshot.currency or ""
        changes[deal_id] = snapshot
    else:
        held.pop(deal_id, None)
        changes[deal_id] = None


async def reconcile_rollup(ctx: Scoring) -> int:
    """Bring every owned deal's roll-up in line with the roster as it is now (a rep's first team given after
    their deals were credited, a team's manager changed, a team removed), and its conversion with the FX rates as
    they are now (a rate arrived for a held deal, a past rate corrected): returns how many deals moved.

    Per deals partition, under a reconcile number of its own: (1) the deals to move are stored with whom their
    roll-up goes to and the rate they convert at now (`pending`, `pending_rate`, `rollup_n`); (2) each rep or
    manager concerned gets one credits message (source `rollup/<partition>`, seq the number) taking back what
    went to them and giving what comes; (3) the deals are stored with the move done. A crash at any step is
    finished by the next reconcile with the same number and the same deals: a rep whose message arrived before
    ignores it again (the rep agent's dedup).
    Called with the deal lock held (a deal batch, or `follow_plans`)."""
    roster = ctx.plan_book.follower
    if not roster.caught_up.is_set():
        await roster.caught_up.wait()
    ctx.rollup_dirty = False
    reps, teams = roster.state.reps(), roster.state.teams()
    fx, zone = ctx.plan_book.fx(), ctx.calendar.zone
    table = ctx.deal_table
    consumer = ctx.consumer()
    owned = ctx.owned(consumer) if consumer is not None else None
    partitions: dict[int, list[tuple[str, DealState]]] = {}
    for deal_id, state in table.items():
        partition = table.partition_of(deal_id)
        if owned is None or partition in owned:
            partitions.setdefault(partition, []).append((deal_id, state))
    moved = 0
    ctx.held.clear()
    judge_deals = ctx.plan_book.judges_deals()
    for partition, deals in sorted(partitions.items()):
        ctx.held.update((deal_id, s.snapshot.currency or "") for deal_id, s in deals if s.rate is HELD)
        moving = {deal_id: state for deal_id, state in deals if state.pending is not None}
        if not moving:  # none left half done: a new reconcile, if anything is to move
            number = max(state.rollup_n for _, state in deals) + 1
            for deal_id, state in deals:
                wanted = rollup_of(state.snapshot, reps, teams)
                rate = fx.deal_rate(state.snapshot, zone)
                if wanted != (state.managers or {}) or rate != state.rate:
                    moving[deal_id] = replace(state, pending=wanted, pending_rate=rate, rollup_n=number)
            if not moving:
                continue
            await table.write(moving, {k: encode_deal_state(v) for k, v in moving.items()})
            ctx.crash.reached("rollup:pending-written")
        number = next(iter(moving.values())).rollup_n
        by_rep: dict[str, list[Credit]] = {}
        held_changes: dict[str, DealSnapshot | None] = {}
        for deal_id, state in moving.items():
            moves = restatement(state.snapshot, (state.managers, state.rate), (state.pending or {}, state.pending_rate))
            if judge_deals and moves and state.snapshot.stage == "won":  # a held deal counted: judged as it counts
                moves = with_deal_totals(moves, applied_credits(state.snapshot, state.pending_rate))
            for credit in moves:
                by_rep.setdefault(credit.rep_id, []).append(credit)
            if state.pending_rate is HELD or state.rate is HELD:
                _note_held(ctx.held, held_changes, deal_id, state.snapshot, state.pending_rate)
        source = f"rollup/{partition}"
        await ctx.publisher.publish(ctx.credits_topic, [
            (rep_id.encode(), credits_message(source, number, 0, items)) for rep_id, items in by_rep.items()
        ])
        ctx.crash.reached("rollup:credits-sent")
        await ctx.held_list.write(held_changes)
        done = {
            k: replace(v, managers=v.pending or None, pending=None, rate=v.pending_rate, pending_rate=ONE)
            for k, v in moving.items()
        }
        await table.write(done, {k: encode_deal_state(v) for k, v in done.items()})
        moved += len(done)
    ctx.metrics.set_held(ctx.held)
    if moved:
        log.info("reconcile: %d deals moved to the managers and FX rates the configuration gives them now", moved)
    return moved


async def fold_reps(ctx: Scoring, events: Sequence[Any]) -> None:
    """Credits and activities in, per-rep KPI state and snapshots out."""
    started = time.perf_counter()
    metrics, calendar, plan_book = ctx.metrics, ctx.calendar, ctx.plan_book
    ages: list[float] = []
    touched: dict[str, RepState] = {}
    accepted: dict[str, int] = {}
    unreadable: list[tuple[bytes, bytes]] = []
    get_state = ctx.rep_table.get
    now, moment = ctx.clock.time(), ctx.clock.now()
    judge_deals = plan_book.judges_deals()
    duplicates = 0
    # A rep's activities are queued and counted together (RepState.apply_activities), before the rep's next credit
    # and at the end: each rep's events still apply in their order. `marks` are the queued ones' (rep, source) marks;
    # what is queued has been checked (a bad kind or a naive instant is that message's dead letter).
    queued: dict[str, list[Activity]] = {}
    marks: dict[tuple[str, str], int] = {}
    sources: dict[int, str] = {}
    if ctx.restored_outboxes:  # a recovery's, not yet carried out (before anything changes those states)
        await carry_restored_outboxes(ctx, {m.key.decode(errors="replace") for m in events if m.key})
    for message in events:
        try:
            rep_id = message.key.decode()
            state = touched.get(rep_id) or get_state(rep_id) or RepState(rep_id)
            if message.topic == ctx.credits_topic:
                credit_message, credits = read_credits(message.value)
                waiting = queued.pop(rep_id, None)
                if waiting:
                    state.apply_activities(waiting, calendar=calendar, checked=True)
                changed = state.apply_credits(
                    credits, source=credit_message.src, seq=credit_message.seq, calendar=calendar
                )
                if changed and judge_deals:
                    plan_book.deal_achievements(state, credits, moment)
                accepted_ms = credit_message.accepted_ms
            else:
                read = read_activity(message.value)
                accepted_ms, seq, kind, at = read.accepted_ms, read.seq, read.event.kind, read.event.occurred_at
                check_activity(kind, at)
                source = sources.get(message.partition) or sources.setdefault(
                    message.partition, f"activities/{message.partition}"
                )
                mark = marks.get((rep_id, source))
                changed = seq > (state.activity_marks.get(source, -1) if mark is None else mark)
                if changed:
                    marks[(rep_id, source)] = seq
                    waiting = queued.get(rep_id)
                    if waiting is None:
                        queued[rep_id] = [(kind, at, source, seq)]
                    else:
                        waiting.append((kind, at, source, seq))
                ages.append(max(0.0, now - at.timestamp()))
        except _UNREADABLE as exc:
            unreadable.append(_dead_letter(message, "rep-kpis", exc))
            continue
        if not changed:
            duplicates += 1
            continue
        touched[rep_id] = state
        if accepted_ms > accepted.get(rep_id, 0):
            accepted[rep_id] = accepted_ms
    for rep_id, waiting in queued.items():
        touched[rep_id].apply_activities(waiting, calendar=calendar, checked=True)
    # Progress in the plans, and tiers and achievements newly reached recorded in the state before it is stored.
    days = ctx.day_table.get
    progress = {rep_id: plan_book.refresh(state, moment, days=days) for rep_id, state in touched.items()}
    encode_rep = ctx.encode_rep
    encoded = {rep_id: encode_rep(state) for rep_id, state in touched.items()}
    await asyncio.gather(
        ctx.rep_table.write(touched, encoded), ctx.publisher.publish(ctx.dead_letter_topic, unreadable)
    )
    ctx.crash.reached("rep-kpis:state-written")
    await flush_outboxes(ctx, touched)
    now_ms = ctx.clock.now_ms()
    await ctx.publisher.publish(
        ctx.snapshots_topic,
        [
            (
                rep_id.encode(),
                snapshot_message(
                    state,
                    progress=progress[rep_id],
                    contests=plan_book.contest_totals(state, ctx.day_table.get),
                    updated_ms=now_ms,
                    accepted_ms=accepted.get(rep_id, 0),
                ),
            )
            for rep_id, state in touched.items()
        ],
    )
    if duplicates:
        metrics.duplicates.labels("rep-kpis").inc(duplicates)
    if unreadable:
        metrics.dead_letters.labels("rep-kpis").inc(len(unreadable))
    metrics.observe_ages("rep-kpis", ages)
    metrics.observe_batch("rep-kpis", len(events), time.perf_counter() - started)


async def flush_outboxes(ctx: Scoring, states: Mapping[str, RepState]) -> None:
    """Carry out the outboxes of these stored states: evicted periods, and the minutes of days behind the
    minute floor, into SQL history (guarded by their sequence there) before any snapshot shows them as gone;
    minute entries into their days (each day guarded by its own per-source marks) and days behind the floor
    deleted; then the outboxes emptied in memory (the stored states keep them until their next write; doing
    them again changes nothing).

    Called for the reps a batch changed, and for restored states (`carry_restored_outboxes`)."""
    work = outbox_work(states, ctx.day_table.get)
    if work.history:
        await ctx.history.add(work.history)
        ctx.crash.reached("rep-kpis:history-written")
    if work.days or work.gone:
        await asyncio.gather(ctx.day_table.write(work.days), ctx.day_table.delete(work.gone))
        ctx.crash.reached("rep-kpis:days-written")
    work.acknowledge()


async def fold_reps_exclusively(ctx: Scoring, events: Sequence[Any]) -> None:
    """`fold_reps`, never at the same time as a configuration refresh."""
    async with ctx.config_lock:
        await fold_reps(ctx, events)


async def run_agent(ctx: Scoring, agent: str, intake: BatchIntake, fold: Fold) -> None:
    """Take batches from `intake` and fold each to its end before acknowledging it, until cancelled.

    A batch folded while a rebalance began is not acknowledged. Faust forgets the acknowledgements of every
    partition it revokes when the rebalance begins, before the batch ends (a rebalance waits for it); its
    acknowledgement afterwards would leave offsets in Faust's books for partitions that may be another worker's
    now, and should one come back later with a higher committed offset, those stale offsets would move its
    commit back and then hold it there. Unacknowledged, the batch's events are fetched again from the committed
    offsets, by whoever owns them, and recognised as already folded (the sequence marks)."""
    settings = ctx.settings
    batch_size, within, backlog = settings.scoring_batch_size, settings.scoring_batch_within, settings.scoring_batch_max
    try:
        while True:
            events = await intake.take(batch_size, within, backlog)
            rebalances = ctx.rebalances()
            batch = ctx.in_flight[agent] = asyncio.ensure_future(_complete(ctx, agent, fold, events))
            try:
                await asyncio.shield(batch)
            finally:
                ctx.in_flight.pop(agent, None)
            if ctx.rebalances() != rebalances:
                log.info("%s: a rebalance began during a batch of %d events; they are folded again after it, as "
                         "duplicates", agent, len(events))
                continue
            processed = ctx.processed
            for where, offset in intake.ack(events).items():
                if offset >= processed.get(where, 0):
                    processed[where] = offset + 1
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001
        fail_stop(agent, exc)


def owned_states(ctx: Scoring, owned: set[int]) -> dict[str, RepState]:
    """The rep states of the `owned` source partitions."""
    partitions = ctx.settings.partitions
    if len(owned) >= partitions:  # all of them (the usual single worker): no partitioner call per rep
        return dict(ctx.rep_table.items())
    return {r: s for r, s in ctx.rep_table.items() if partition_for(r, partitions) in owned}


async def refresh_reps(ctx: Scoring, states: Mapping[str, RepState], now_ms: int, *, every_period: bool = False) -> int:
    """Recompute progress for these reps, store tiers newly reached (`every_period`: in every plan period the
    state holds, after a plan changed), publish their snapshots; returns how many."""
    moment = ctx.clock.now()
    plan_book = ctx.plan_book
    before = {r: s.version for r, s in states.items()}
    days = ctx.day_table.get
    progress = {r: plan_book.refresh(s, moment, every_period=every_period, days=days) for r, s in states.items()}
    changed = {r: s for r, s in states.items() if s.version != before[r]}
    if changed:
        await ctx.rep_table.write(changed, {r: ctx.encode_rep(s) for r, s in changed.items()})
    get_day = ctx.day_table.get
    snapshots = [
        (
            r.encode(),
            snapshot_message(
                s, progress=progress[r], contests=plan_book.contest_totals(s, get_day), updated_ms=now_ms, accepted_ms=0
            ),
        )
        for r, s in states.items()
    ]
    return await ctx.publisher.publish(ctx.snapshots_topic, snapshots)


async def carry_restored_outboxes(ctx: Scoring, reps: Iterable[str]) -> None:
    """Carry out the outboxes these reps' states were restored with, where not done yet: before anything else
    changes such a state (a new event could move its minute floor past an entry its day already holds, and
    that minute would reach history twice)."""
    pending = ctx.restored_outboxes
    if not pending:
        return
    get = ctx.rep_table.get
    due = {r: s for r in reps if r in pending and (s := get(r)) is not None}
    if due:
        await flush_outboxes(ctx, due)
    pending.difference_update(reps)


def note_restored_outboxes(ctx: Scoring, owned: set[int]) -> None:
    """After a recovery: the owned reps whose states hold outboxes (a worker killed after storing a state and
    before carrying out its outbox leaves it to whoever restores the state, for whom a replay of the same
    events, all duplicates by then, would touch nothing)."""
    ctx.restored_outboxes = {r for r, s in owned_states(ctx, owned).items() if s.holds_outbox()}


REPUBLISH_CHUNK = 2_000
"""Reps republished between two batches after a recovery (~60 ms of the worker's time)."""


async def republish_owned(ctx: Scoring, owned: set[int]) -> int:
    """After a recovery: carry out the restored outboxes and publish the snapshot of every rep of the `owned`
    partitions, so consumers heal from any lost message (they keep the highest version per rep) and a broker
    that came back empty gets every rep again; returns how many snapshots.

    In chunks between batches (each holds the configuration lock the rep agent's batches take, and counts as
    a batch in flight, which a rebalance waits for), so new events are folded while the owned reps are
    republished: a restart with 100,000 reps folds its first events seconds sooner. The worker does not
    report itself serving until this is done (services/scoring/app.py), so the gateway's readiness waits."""
    reps = list(owned_states(ctx, owned).items())  # a batch changes states in place, never replaces them
    sent = 0

    async def chunk(states: dict[str, RepState]) -> None:
        nonlocal sent
        await carry_restored_outboxes(ctx, states)
        sent += await refresh_reps(ctx, states, ctx.clock.now_ms())

    for start in range(0, len(reps), REPUBLISH_CHUNK):
        async with ctx.config_lock:
            states = dict(reps[start : start + REPUBLISH_CHUNK])
            done = ctx.in_flight["republish"] = asyncio.ensure_future(chunk(states))
            try:
                await asyncio.shield(done)
            finally:
                ctx.in_flight.pop("republish", None)
    return sent


async def follow_plans(ctx: Scoring, serving: Callable[[], bool]) -> None:
    """Plans, roster and contests from the config topic; a change recomputes every owned rep, and a roster
    change moves the roll-up of the deals it concerns (`reconcile_rollup`, once the worker serves)."""
    plan_book = ctx.plan_book

    def on_change(change: dict[str, Any]) -> None:
        if change["kind"] in ("rep", "team", "fx"):
            ctx.rollup_dirty = True

    plan_book.follower.listeners.append(on_change)
    plan_book.start()
    while True:
        if not await wait_set(plan_book.changed, ROLLUP_CHECK_SECONDS):
            if ctx.rollup_dirty and serving():
                await _reconcile_between_batches(ctx)
            continue
        await asyncio.sleep(0.3)  # let a burst of changes settle
        plan_book.changed.clear()
        if ctx.rollup_dirty and serving():
            await _reconcile_between_batches(ctx)
        async with ctx.config_lock:
            states = owned_states(ctx, ctx.owned(ctx.consumer()))
            await carry_restored_outboxes(ctx, states)  # before any snapshot of theirs (a republish may be under way)
            sent = await refresh_reps(ctx, states, ctx.clock.now_ms(), every_period=True)
        log.info("configuration changed: %d rep snapshots recomputed", sent)


async def _reconcile_between_batches(ctx: Scoring) -> None:
    """`reconcile_rollup` as a batch of its own: under the deal lock, waited for by a rebalance, and a failure
    stops the worker as a batch's does."""

    async def reconcile(ctx: Scoring, _: Sequence[Any]) -> None:
        await reconcile_rollup(ctx)

    async with ctx.deal_lock:
        batch = ctx.in_flight["rollup"] = asyncio.ensure_future(_complete(ctx, "rollup", reconcile, ()))
        try:
            await asyncio.shield(batch)
        finally:
            ctx.in_flight.pop("rollup", None)


async def refresh_assignment_metrics(ctx: Scoring, consumer: Any) -> None:
    """Consumer lag per owned source partition: the high watermark minus the group's committed offset."""
    tps = [tp for tp in consumer.assignment() if tp.topic in ctx.source_topics]
    lag: dict[tuple[str, int], int] = {}
    if tps:
        highwaters = await consumer.highwaters(*tps)
        committed = committed_offsets(consumer)
        for tp in tps:
            done = committed.get(tp)
            if done is None:
                done = await consumer.position(tp) or 0
            # ListOffsets can fall short of the log end on the embedded broker (see publisher.py); the
            # high watermark of the last fetch response is exact, so take the larger.
            end = max(highwaters.get(tp) or 0, consumer.highwater(tp) or 0)
            lag[(tp.topic, tp.partition)] = max(0, end - done)
    ctx.metrics.set_assignment(lag, ctx.source_topics)


async def _complete(ctx: Scoring, agent: str, fold: Fold, events: Sequence[Any]) -> None:
    """Run one batch to its end before its events are acknowledged.

    A cancellation (shutdown) waits for the batch to finish; any error stops the process before the
    acknowledgement, so nothing is committed past a batch that did not complete: it is redone by whoever
    takes the partitions over."""
    task = asyncio.ensure_future(fold(ctx, events))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            try:
                await task
            except BaseException as exc:  # noqa: BLE001
                fail_stop(agent, exc)
        raise
    except BaseException as exc:  # noqa: BLE001
        fail_stop(agent, exc)


def fail_stop(agent: str, exc: BaseException) -> NoReturn:
    log.critical(
        "%s batch failed (%s: %s); stopping the worker so the batch is redone", agent, type(exc).__name__, exc,
        exc_info=exc,
    )
    logging.shutdown()
    os._exit(70)


def _dead_letter(message: Any, agent: str, exc: BaseException) -> tuple[bytes, bytes]:
    log.error(
        "%s: unreadable message at %s/%s offset %s (%s: %s); moved to the dead-letter topic",
        agent,
        message.topic,
        message.partition,
        message.offset,
        type(exc).__name__,
        exc,
    )
    value = message.value if isinstance(message.value, bytes) else b""
    return (message.key or b"", value)
