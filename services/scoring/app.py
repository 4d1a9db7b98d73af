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
4. The rep agent writes its state (its outboxes included: evictions bound for SQL history, minute entries
   bound for the rep's minute days, days to delete) and waits for it, adds the evictions to SQL history
   (guarded by a per-rep sequence there), writes the minute days (each guarded by per-source marks of its
   own) and deletes the days behind the floor, publishes the snapshots and waits for them, and only then
   acknowledges its events. The replacement of a worker killed in between carries out the outboxes it
   restores (each before anything else changes that rep's state: `agents.carry_restored_outboxes`), and
   republishes the snapshots; the gateway keeps the highest version. A snapshot never shows a period as
   handed to history before history has it.
5. An unexpected error stops the process at once (`os._exit`), since Faust would otherwise acknowledge the
   failed batch and commit past it; a message that cannot be decoded goes to the dead-letter topic instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import faust

import services.scoring.codecs  # noqa: F401  (registers the table codecs)
from services.common.dead_letters import DeadLetters
from services.common.settings import Settings, get_settings
from services.common.topics import ACTIVITIES, CREDITS, DEAD_LETTER, DEALS, REP_SNAPSHOTS, topic_name
from services.scoring import agents
from services.scoring.agents import Scoring
from services.scoring.checkpoint import Checkpointer
from services.scoring.codecs import RepStateEncoder
from services.scoring.crashpoints import CrashPoints
from services.scoring.domain.minute_days import rep_of_day_key
from services.scoring.domain.periods import Calendar
from services.scoring.faust_internals import LeanMonitor, serving, use_lean_consumer
from services.scoring.held import HeldList
from services.scoring.history import HistoryWriter
from services.scoring.intake import BatchIntake
from services.scoring.metrics import ScoringMetrics
from services.scoring.plan_book import PlanBook
from services.scoring.presence import PRESENCE_INTERVAL, Presence
from services.scoring.publisher import Publisher
from services.scoring.tables import state_table

log = logging.getLogger("salespulse.scoring")


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    metrics = ScoringMetrics()
    app = faust.App(
        f"{settings.topic_prefix}scoring",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        producer_acks=-1,  # all in-sync replicas (services/common/kafka.py)
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
        stream_buffer_maxsize=max(4096, 2 * settings.scoring_batch_size, settings.scoring_batch_max),
        datadir=str(settings.data_dir / "scoring"),
        Monitor=LeanMonitor,
    )
    use_lean_consumer(app)
    publisher = Publisher(settings)
    calendar = Calendar(settings.timezone, settings.fiscal_year_start_month)
    deals_name, credits_name = topic_name(settings, DEALS), topic_name(settings, CREDITS)
    activities_name = topic_name(settings, ACTIVITIES)
    ctx = Scoring(
        settings=settings,
        calendar=calendar,
        clock=settings.clock,
        metrics=metrics,
        crash=CrashPoints(),
        publisher=publisher,
        deal_table=state_table(
            app, "deal-state", "sp_deal_state", settings.partitions, publisher, progress=lambda state: state.seq
        ),
        rep_table=state_table(
            app, "rep-state", "sp_rep_state", settings.partitions, publisher, progress=lambda state: state.version
        ),
        day_table=state_table(
            app,
            "rep-minutes",
            "sp_minute_day",
            settings.partitions,
            publisher,
            progress=lambda day: day.version,
            partition_key=rep_of_day_key,
        ),
        history=HistoryWriter(settings),
        held_list=HeldList(settings.db_url, calendar.zone),
        plan_book=PlanBook(settings, calendar, DeadLetters(settings, metrics.registry)),
        encode_rep=RepStateEncoder().encode,
        credits_topic=credits_name,
        snapshots_topic=topic_name(settings, REP_SNAPSHOTS),
        dead_letter_topic=topic_name(settings, DEAD_LETTER),
        source_topics=(deals_name, credits_name, activities_name),
        consumer=lambda: app.consumer,
        rebalances=lambda: app.rebalancing_count,
    )
    metrics.set_assignment({}, ctx.source_topics)
    # A backlog is taken in batches of up to scoring_batch_max: fetching pauses at three of them buffered and
    # resumes below two, so a batch is buffered while the next fetch is on its way (services/scoring/intake.py).
    batch = max(settings.scoring_batch_size, settings.scoring_batch_max)
    waters = {"high_water": 3 * batch, "low_water": 2 * batch}
    deal_intake = BatchIntake(app, app.topic(deals_name, key_type=bytes, value_type=bytes), **waters)
    rep_intake = BatchIntake(app, app.topic(credits_name, activities_name, key_type=bytes, value_type=bytes), **waters)

    @app.task
    async def deal_state_agent() -> None:
        """Snapshots in, credit deltas out."""
        await agents.run_agent(ctx, "deal-state", deal_intake, agents.fold_deals)

    @app.task
    async def rep_agent() -> None:
        """Credits and activities in, per-rep KPI state and snapshots out."""
        await agents.run_agent(ctx, "rep-kpis", rep_intake, agents.fold_reps_exclusively)

    @app.task
    async def follow_plans() -> None:
        """Plans, roster and contests from the config topic; a change recomputes every owned rep."""
        await agents.follow_plans(ctx, serving_now)

    republishing: list[asyncio.Task[None]] = []

    async def republish(owned: set[int]) -> None:
        try:
            sent = await agents.republish_owned(ctx, owned)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001  (as for a batch: stop, whoever recovers republishes)
            agents.fail_stop("republish", exc)
        log.info("republished %d rep snapshots after recovery", sent)

    def serving_now() -> bool:
        """Serving the assignment: recovered, flowing, and every owned rep republished since."""
        return serving(app) and all(task.done() for task in republishing)

    def stop_republishing() -> None:
        while republishing:
            republishing.pop().cancel()  # between chunks; a chunk in flight is waited for as a batch is

    @cast(Any, app.on_partitions_revoked).connect
    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        """A rebalance begins (flow is suspended, so no new batch starts): let the batches in flight finish
        (their table writes must be in the changelog before any restore reads it), then drop the buffered
        events of revoked partitions: whoever owns them now processes them."""
        stop_republishing()
        pending = list(ctx.in_flight.values())
        if pending:
            await asyncio.wait(pending)
        dropped = deal_intake.discard(revoked) + rep_intake.discard(revoked)
        if dropped:
            log.info("dropped %d buffered events of revoked partitions", dropped)

    @ctx.rep_table.table.on_recover
    async def after_recovery() -> None:
        """Note the restored states with outboxes (each carried out before its rep's next batch), then, between
        batches, carry them out and republish every owned rep's snapshot (`agents.republish_owned`)."""
        owned = ctx.owned(app.consumer)
        ctx.rollup_dirty = True  # deals taken over may hold a reconcile their last owner did not finish
        agents.note_restored_outboxes(ctx, owned)
        stop_republishing()
        republishing.append(asyncio.create_task(republish(owned), name="republish after recovery"))

    def taken(seq: int, values: int, seconds: float) -> None:
        metrics.checkpoint_seq.set(seq)
        metrics.checkpoint_values.inc(values)
        metrics.checkpoint_seconds.set(seconds)

    checkpointer = Checkpointer(
        settings,
        deal_table=ctx.deal_table,
        rep_tables=(ctx.day_table, ctx.rep_table),
        event_topics=(deals_name, activities_name),
        credits_topic=credits_name,
        folded=lambda: ctx.folded(app.consumer),
        sole_owner=lambda: (
            app.consumer_generation_id if serving(app) and ctx.owns_every_source(app.consumer) else None
        ),
        on_taken=taken,
    )

    if settings.scoring_checkpoint_interval > 0:
        @app.task
        async def checkpoint() -> None:
            """The tables in SQL with the ledger sequence they reflect (services/scoring/checkpoint.py)."""
            await checkpointer.run(settings.scoring_checkpoint_interval, serving_now)

    presence = Presence(settings)

    @app.timer(PRESENCE_INTERVAL)
    async def announce_presence() -> None:
        """Which source partitions this worker serves now (none while rebalancing or recovering)."""
        await presence.beat(ctx.folded(app.consumer) if serving_now() else {})

    @cast(Any, app.on_before_shutdown).connect
    async def leave(sender: Any, **_: Any) -> None:
        await presence.leave()
        await checkpointer.close()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        metrics.serving.set(1 if serving_now() else 0)
        try:
            await asyncio.wait_for(agents.refresh_assignment_metrics(ctx, app.consumer), timeout=5)
        except Exception as exc:  # noqa: BLE001  (not started, rebalancing: serve the rest)
            log.debug("consumer lag unavailable: %r", exc)
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    app.metrics = metrics  # type: ignore[attr-defined]
    app.deal_table = ctx.deal_table  # type: ignore[attr-defined]
    app.rep_table = ctx.rep_table  # type: ignore[attr-defined]
    app.publisher = publisher  # type: ignore[attr-defined]
    app.checkpointer = checkpointer  # type: ignore[attr-defined]
    return app
