"""The scoring worker: Faust agents that turn deal snapshots into credits and fold credits and activities
into per-rep KPI state, published as full snapshots on the compacted rep-snapshots topic.

Exactly-once effect on at-least-once delivery (no transactions on the embedded broker). The argument:

1. Events of one deal reach the deal-state agent in ledger order (one partition, the relay publishes each
   partition in sequence order), so a deal's table value — last applied snapshot and the sequence of the
   last event seen — is a deterministic fold of that deal's event prefix, and the credits for event `seq`
   are a deterministic function of that prefix: whoever computes them (a replacement, a worker that just
   lost the partition) computes the same ones.
2. A batch's credits are acknowledged by the broker before its deal-table values are written, and those
   are acknowledged before the batch's events are acknowledged to Faust (only acknowledged events are ever
   committed). So: committed offset ≤ table state ≤ credits sent. A restart resumes at the committed offset,
   skips every event at or below its deal's table sequence (their credits are out), and re-emits, identical,
   the credits of the rest.
3. Credits for one rep from one deals partition reach the rep agent in sequence order, so the rep state's
   mark per source (`deals/<partition>` → highest sequence applied) recognises every re-emission; the marks
   live in the same table value as the totals they guard. Activities likewise (`activities/<partition>`).
4. The rep agent writes its state (evictions bound for SQL history included) and waits for it, adds the
   evictions to SQL history (guarded by a per-rep sequence there), publishes the snapshots and waits for
   them, and only then acknowledges its events. A snapshot lost in a crash is republished when the
   replacement recovers the table (`republish_after_recovery`); the gateway keeps the highest version. A
   snapshot never shows a period as handed to history before history has it.
5. An unexpected error stops the process at once (`os._exit`), since Faust would otherwise acknowledge the
   failed batch and commit past it; a message that cannot be decoded goes to the dead-letter topic instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import faust
import orjson

import services.scoring.codecs  # noqa: F401  (registers the table codecs)
from services.common.dead_letters import DeadLetters
from services.common.settings import Settings, get_settings
from services.common.topics import (
    ACTIVITIES,
    CREDITS,
    DEAD_LETTER,
    DEALS,
    REP_SNAPSHOTS,
    partition_for,
    topic_name,
)
from services.scoring.codecs import DealState, RepStateEncoder, encode_deal_state, event_json
from services.scoring.consumer import use_lean_consumer
from services.scoring.crashpoints import CrashPoints
from services.scoring.domain.credits import Credit, delta
from services.scoring.domain.deals import is_newer
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import RepState
from services.scoring.events import snapshot_from_event
from services.scoring.history import HistoryWriter
from services.scoring.intake import BatchIntake
from services.scoring.metrics import ScoringMetrics
from services.scoring.monitor import LeanMonitor
from services.scoring.outputs import credits_message, read_credits, snapshot_message
from services.scoring.plan_book import PlanBook
from services.scoring.publisher import Publisher
from services.scoring.tables import state_table

log = logging.getLogger("salespulse.scoring")

_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError)
"""What decoding or folding a malformed message raises (orjson.JSONDecodeError and UnreadableMessage are
ValueErrors)."""


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    calendar = Calendar(settings.timezone, settings.fiscal_year_start_month)
    clock = settings.clock
    metrics = ScoringMetrics()
    crash = CrashPoints()
    app = faust.App(
        f"{settings.topic_prefix}scoring",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        producer_acks=1,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=max(settings.broker_session_timeout, 10.0),
        broker_commit_every=10_000,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=True,
        web_bind=settings.host,
        web_port=settings.scoring_web_port,
        key_serializer="raw",
        value_serializer="raw",
        stream_wait_empty=False,
        stream_buffer_maxsize=max(4096, 2 * settings.scoring_batch_size),
        datadir=str(settings.data_dir / "scoring"),
        Monitor=LeanMonitor,
    )
    use_lean_consumer(app)
    publisher = Publisher(settings)
    deals_name = topic_name(settings, DEALS)
    credits_name = topic_name(settings, CREDITS)
    activities_name = topic_name(settings, ACTIVITIES)
    snapshots_name = topic_name(settings, REP_SNAPSHOTS)
    dead_letter_name = topic_name(settings, DEAD_LETTER)
    source_topics = (deals_name, credits_name, activities_name)
    metrics.set_assignment({}, source_topics)

    deals_topic = app.topic(deals_name, key_type=bytes, value_type=bytes)
    rep_sources = app.topic(credits_name, activities_name, key_type=bytes, value_type=bytes)
    deal_table = state_table(
        app, "deal-state", "sp_deal_state", settings.partitions, publisher, progress=lambda state: state.seq
    )
    rep_table = state_table(
        app, "rep-state", "sp_rep_state", settings.partitions, publisher, progress=lambda state: state.version
    )
    history = HistoryWriter(settings)
    plan_book = PlanBook(settings, calendar, DeadLetters(settings, metrics.registry))
    config_lock = asyncio.Lock()  # a configuration refresh and a rep batch never interleave
    encode_rep = RepStateEncoder().encode
    app.metrics = metrics  # type: ignore[attr-defined]
    batch_size, batch_within = settings.scoring_batch_size, settings.scoring_batch_within

    deal_ages = metrics.event_age.labels("deal-state")
    rep_ages = metrics.event_age.labels("rep-kpis")
    deal_duplicates = metrics.duplicates.labels("deal-state")
    rep_duplicates = metrics.duplicates.labels("rep-kpis")

    async def fold_deals(events: Sequence[Any]) -> None:
        """Snapshots in, credit deltas out: one credits message per (rep, source event)."""
        started = time.perf_counter()
        outgoing: list[tuple[bytes, bytes]] = []
        unreadable: list[tuple[bytes, bytes]] = []
        pending: dict[str, DealState] = {}
        get_state = deal_table.get
        now = clock.time()
        stale = duplicates = 0
        for message in events:
            try:
                envelope = orjson.loads(message.value)
                seq: int = envelope["seq"]
                snapshot = snapshot_from_event(envelope["event"])
                deal_id = snapshot.deal_id
                state = pending.get(deal_id) or get_state(deal_id)
                if state is not None and seq <= state.seq:
                    duplicates += 1
                    continue
                previous = state.snapshot if state is not None else None
                if previous is not None and not is_newer(snapshot, previous):
                    stale += 1
                    pending[deal_id] = DealState(seq, previous, state.event_json)  # type: ignore[union-attr]
                    continue
                credits = delta(previous, snapshot)
            except _UNREADABLE as exc:
                unreadable.append(_dead_letter(message, "deal-state", exc))
                continue
            pending[deal_id] = DealState(seq, snapshot, event_json(message.value))
            deal_ages.observe(max(0.0, now - snapshot.occurred_at.timestamp()))
            if not credits:
                continue
            src, accepted_ms = f"deals/{message.partition}", envelope.get("accepted_ms", 0)
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
        await asyncio.gather(publisher.publish(credits_name, outgoing), publisher.publish(dead_letter_name, unreadable))
        crash.reached("deal-state:credits-sent")
        await deal_table.write(pending, {k: encode_deal_state(v) for k, v in pending.items()})
        crash.reached("deal-state:table-written")
        if duplicates:
            deal_duplicates.inc(duplicates)
        if stale:
            metrics.stale_snapshots.inc(stale)
        if unreadable:
            metrics.dead_letters.labels("deal-state").inc(len(unreadable))
        metrics.observe_batch("deal-state", len(events), time.perf_counter() - started)

    async def fold_reps(events: Sequence[Any]) -> None:
        """Credits and activities in, per-rep KPI state and snapshots out."""
        started = time.perf_counter()
        touched: dict[str, RepState] = {}
        accepted: dict[str, int] = {}
        unreadable: list[tuple[bytes, bytes]] = []
        get_state = rep_table.get
        now = clock.time()
        duplicates = 0
        for message in events:
            try:
                rep_id = message.key.decode()
                state = touched.get(rep_id) or get_state(rep_id) or RepState(rep_id)
                if message.topic == credits_name:
                    credit_message, credits = read_credits(message.value)
                    changed = state.apply_credits(
                        credits, source=credit_message.src, seq=credit_message.seq, calendar=calendar
                    )
                    accepted_ms = credit_message.accepted_ms
                else:
                    data = orjson.loads(message.value)
                    accepted_ms = data.get("accepted_ms", 0)
                    activity = data["event"]
                    at = datetime.fromisoformat(activity["occurred_at"])
                    changed = state.apply_activity(
                        activity["kind"],
                        at,
                        source=f"activities/{message.partition}",
                        seq=data["seq"],
                        calendar=calendar,
                    )
                    rep_ages.observe(max(0.0, now - at.timestamp()))
            except _UNREADABLE as exc:
                unreadable.append(_dead_letter(message, "rep-kpis", exc))
                continue
            if not changed:
                duplicates += 1
                continue
            touched[rep_id] = state
            if accepted_ms > accepted.get(rep_id, 0):
                accepted[rep_id] = accepted_ms
        # Progress in the plans, and tiers newly reached recorded in the state before it is stored.
        moment = clock.now()
        progress = {rep_id: plan_book.refresh(state, moment) for rep_id, state in touched.items()}
        encoded = {rep_id: encode_rep(state) for rep_id, state in touched.items()}
        await asyncio.gather(rep_table.write(touched, encoded), publisher.publish(dead_letter_name, unreadable))
        crash.reached("rep-kpis:state-written")
        # Periods leaving the hot state are in the stored outbox now: add them to SQL history (guarded by their
        # sequence there) before any snapshot shows the period as gone, then drop them from the outbox (that
        # is persisted with the rep's next write; a replay of the outbox is a no-op).
        outbox = [(rep_id, state.evictions) for rep_id, state in touched.items() if state.evictions]
        if outbox:
            await history.add(outbox)
            crash.reached("rep-kpis:history-written")
            for rep_id, evictions in outbox:
                touched[rep_id].acknowledge_evictions(evictions[-1].seq)
                encoded[rep_id] = encode_rep(touched[rep_id])
        now_ms = clock.now_ms()
        await publisher.publish(
            snapshots_name,
            [
                (
                    rep_id.encode(),
                    snapshot_message(
                        state,
                        progress=progress[rep_id],
                        contests=plan_book.contest_totals(state),
                        updated_ms=now_ms,
                        accepted_ms=accepted.get(rep_id, 0),
                    ),
                )
                for rep_id, state in touched.items()
            ],
        )
        if duplicates:
            rep_duplicates.inc(duplicates)
        if unreadable:
            metrics.dead_letters.labels("rep-kpis").inc(len(unreadable))
        metrics.observe_batch("rep-kpis", len(events), time.perf_counter() - started)

    deal_intake = BatchIntake(app, deals_topic, high_water=4 * batch_size)
    rep_intake = BatchIntake(app, rep_sources, high_water=4 * batch_size)

    in_flight: dict[str, asyncio.Future[None]] = {}

    async def run_agent(agent: str, intake: BatchIntake, fold: Callable[[Sequence[Any]], Awaitable[None]]) -> None:
        try:
            while True:
                events = await intake.take(batch_size, batch_within)
                batch = in_flight[agent] = asyncio.ensure_future(_complete(agent, fold, events))
                try:
                    await asyncio.shield(batch)
                finally:
                    in_flight.pop(agent, None)
                intake.ack(events)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            _fail_stop(agent, exc)

    @app.task
    async def deal_state_agent() -> None:
        """Snapshots in, credit deltas out."""
        await run_agent("deal-state", deal_intake, fold_deals)

    @app.task
    async def rep_agent() -> None:
        """Credits and activities in, per-rep KPI state and snapshots out."""

        async def fold_reps_exclusively(events: Sequence[Any]) -> None:
            async with config_lock:
                await fold_reps(events)

        await run_agent("rep-kpis", rep_intake, fold_reps_exclusively)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        """A rebalance begins (flow is suspended, so no new batch starts): let the batches in flight finish
        (their table writes must be in the changelog before any restore reads it), then drop the buffered
        events of revoked partitions: whoever owns them now processes them."""
        pending = list(in_flight.values())
        if pending:
            await asyncio.wait(pending)
        dropped = deal_intake.discard(revoked) + rep_intake.discard(revoked)
        if dropped:
            log.info("dropped %d buffered events of revoked partitions", dropped)

    @rep_table.table.on_recover
    async def republish_after_recovery() -> None:
        """After a rebalance, republish the snapshot of every rep whose partition this worker now owns, so
        consumers heal from any lost message (they keep the highest version per rep)."""
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == credits_name}
        now_ms = clock.now_ms()
        sent = await refresh_owned(owned, now_ms)
        log.info("republished %d rep snapshots after recovery", sent)

    async def refresh_owned(owned: set[int], now_ms: int) -> int:
        """Recompute progress for every rep this worker owns, store tiers newly reached, publish snapshots."""
        moment = clock.now()
        states = {r: s for r, s in rep_table.items() if partition_for(r, settings.partitions) in owned}
        before = {r: s.version for r, s in states.items()}
        progress = {r: plan_book.refresh(s, moment) for r, s in states.items()}
        changed = {r: s for r, s in states.items() if s.version != before[r]}
        if changed:
            await rep_table.write(changed, {r: encode_rep(s) for r, s in changed.items()})
        snapshots = [
            (
                r.encode(),
                snapshot_message(
                    s, progress=progress[r], contests=plan_book.contest_totals(s), updated_ms=now_ms, accepted_ms=0
                ),
            )
            for r, s in states.items()
        ]
        return await publisher.publish(snapshots_name, snapshots)

    @app.task
    async def follow_plans() -> None:
        """Plans, roster and contests from the config topic; a change recomputes every owned rep."""
        plan_book.start()
        while True:
            await plan_book.changed.wait()
            await asyncio.sleep(0.3)  # let a burst of changes settle
            plan_book.changed.clear()
            async with config_lock:
                owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == credits_name}
                sent = await refresh_owned(owned, clock.now_ms())
            log.info("configuration changed: %d rep snapshots recomputed", sent)

    async def refresh_assignment_metrics() -> None:
        consumer = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in source_topics]
        lag: dict[tuple[str, int], int] = {}
        if tps:
            highwaters = await consumer.highwaters(*tps)
            # Faust keeps the group's committed offset per partition (read at assignment, updated on commit).
            committed = getattr(consumer, "_committed_offset", {})
            for tp in tps:
                done = committed.get(tp)
                if done is None:
                    done = await consumer.position(tp) or 0
                # ListOffsets can fall short of the log end on the embedded broker (see publisher.py); the
                # high watermark of the last fetch response is exact, so take the larger.
                end = max(highwaters.get(tp) or 0, consumer.highwater(tp) or 0)
                lag[(tp.topic, tp.partition)] = max(0, end - done)
        metrics.set_assignment(lag, source_topics)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        try:
            await asyncio.wait_for(refresh_assignment_metrics(), timeout=5)
        except Exception as exc:  # noqa: BLE001  (not started, rebalancing: serve the rest)
            log.debug("consumer lag unavailable: %r", exc)
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    app.deal_table = deal_table  # type: ignore[attr-defined]
    app.rep_table = rep_table  # type: ignore[attr-defined]
    app.publisher = publisher  # type: ignore[attr-defined]
    return app


async def _complete(agent: str, fold: Callable[[Sequence[Any]], Awaitable[None]], events: Sequence[Any]) -> None:
    """Run one batch to its end before its events are acknowledged.

    A cancellation (shutdown) waits for the batch to finish; any error stops the process before the
    acknowledgement, so nothing is committed past a batch that did not complete: it is redone by whoever
    takes the partitions over."""
    task = asyncio.ensure_future(fold(events))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            try:
                await task
            except BaseException as exc:  # noqa: BLE001
                _fail_stop(agent, exc)
        raise
    except BaseException as exc:  # noqa: BLE001
        _fail_stop(agent, exc)


def _fail_stop(agent: str, exc: BaseException) -> None:
    log.critical("%s batch failed (%s: %s); stopping the worker so the batch is redone", agent, type(exc).__name__, exc)
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
