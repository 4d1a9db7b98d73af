"""The scoring worker: Faust agents that turn deal snapshots into credits and fold credits and activities
into per-rep KPI state, published as full snapshots on the compacted rep-snapshots topic."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import faust
import orjson

import services.scoring.codecs  # noqa: F401  (registers the table codecs)
from services.common.settings import Settings, get_settings
from services.common.topics import ACTIVITIES, CREDITS, DEALS, REP_SNAPSHOTS, partition_for, topic_name
from services.scoring.codecs import DealState
from services.scoring.domain.credits import Credit, delta
from services.scoring.domain.deals import is_newer
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import RepState
from services.scoring.events import snapshot_from_event
from services.scoring.history import HistoryWriter
from services.scoring.metrics import ScoringMetrics

log = logging.getLogger("salespulse.scoring")


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    calendar = Calendar(settings.timezone, settings.fiscal_year_start_month)
    metrics = ScoringMetrics()
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
        broker_commit_every=500,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=True,
        web_bind=settings.host,
        web_port=settings.scoring_web_port,
        key_serializer="raw",
        value_serializer="raw",
        stream_wait_empty=False,
        datadir=str(settings.data_dir / "scoring"),
    )
    # Each batch writes one changelog message per touched key; let Faust buffer them without warnings.
    app.producer.buffer.max_messages = 50_000
    deals_topic = app.topic(topic_name(settings, DEALS), key_type=bytes, value_type=bytes)
    credits_topic = app.topic(topic_name(settings, CREDITS), key_type=bytes, value_type=bytes)
    activities_topic = app.topic(topic_name(settings, ACTIVITIES), key_type=bytes, value_type=bytes)
    snapshots_topic = app.topic(topic_name(settings, REP_SNAPSHOTS), key_type=bytes, value_type=bytes)
    credits_name = credits_topic.get_topic_name()

    deal_table = _table(app, "deal-state", "sp_deal_state", settings.partitions)
    rep_table = _table(app, "rep-state", "sp_rep_state", settings.partitions)
    history = HistoryWriter(settings)
    app.metrics = metrics  # type: ignore[attr-defined]

    @app.agent(deals_topic, name="deal-state")
    async def deal_state_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        """Snapshots in, credit deltas out: one credits message per (rep, source event)."""
        async for events in stream.take_events(settings.scoring_batch_size, settings.scoring_batch_within):
            started = time.perf_counter()
            outgoing: list[tuple[bytes, bytes]] = []
            pending: dict[str, DealState] = {}
            for event in events:
                envelope = orjson.loads(event.value)
                seq: int = envelope["seq"]
                snapshot = snapshot_from_event(envelope["event"])
                state = pending.get(snapshot.deal_id) or deal_table.get(snapshot.deal_id)
                if state is not None and seq <= state.seq:
                    metrics.duplicates.labels("deal-state").inc()
                    continue
                previous = state.snapshot if state is not None else None
                if previous is not None and not is_newer(snapshot, previous):
                    metrics.stale_snapshots.inc()
                    pending[snapshot.deal_id] = DealState(seq, previous)
                    continue
                pending[snapshot.deal_id] = DealState(seq, snapshot)
                by_rep: dict[str, list[dict[str, Any]]] = {}
                for credit in delta(previous, snapshot):
                    by_rep.setdefault(credit.rep_id, []).append(credit.to_dict())
                source = f"deals/{event.message.partition}"
                for rep_id, credits in by_rep.items():
                    message = {"src": source, "seq": seq, "accepted_ms": envelope["accepted_ms"], "credits": credits}
                    outgoing.append((rep_id.encode(), orjson.dumps(message)))
                metrics.event_age.labels("deal-state").observe(_age(snapshot.occurred_at))
            # Credits first, acknowledged, then the table: a crash in between re-emits the same credits,
            # which the rep agent recognises by (source, seq).
            futures = [await credits_topic.send(key=k, value=v, force=True) for k, v in outgoing]
            if futures:
                await asyncio.gather(*futures)
            for deal_id, deal_state in pending.items():
                deal_table[deal_id] = deal_state
            metrics.observe_batch("deal-state", len(events), time.perf_counter() - started)
            yield None

    @app.agent(
        app.topic(credits_name, activities_topic.get_topic_name(), key_type=bytes, value_type=bytes), name="rep-kpis"
    )
    async def rep_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        """Credits and activities in, per-rep KPI state and snapshots out."""
        async for events in stream.take_events(settings.scoring_batch_size, settings.scoring_batch_within):
            started = time.perf_counter()
            touched: dict[str, RepState] = {}
            accepted: dict[str, int] = {}
            for event in events:
                rep_id = event.key.decode() if event.key else ""
                state = touched.get(rep_id) or rep_table.get(rep_id) or RepState(rep_id)
                data = orjson.loads(event.value)
                if event.message.topic == credits_name:
                    credits = [Credit.from_dict(c) for c in data["credits"]]
                    changed = state.apply_credits(credits, source=data["src"], seq=data["seq"], calendar=calendar)
                else:
                    activity = data["event"]
                    changed = state.apply_activity(
                        activity["kind"],
                        _parse_time(activity["occurred_at"]),
                        source=f"activities/{event.message.partition}",
                        seq=data["seq"],
                        calendar=calendar,
                    )
                    metrics.event_age.labels("rep-kpis").observe(_age(_parse_time(activity["occurred_at"])))
                if not changed:
                    metrics.duplicates.labels("rep-kpis").inc()
                    continue
                touched[rep_id] = state
                accepted[rep_id] = max(accepted.get(rep_id, 0), data.get("accepted_ms", 0))
            futures = []
            now_ms = int(time.time() * 1000)
            for rep_id, state in touched.items():
                rep_table[rep_id] = state
                futures.append(
                    await snapshots_topic.send(
                        key=rep_id.encode(), value=_snapshot(state, accepted[rep_id], now_ms), force=True
                    )
                )
            if futures:
                await asyncio.gather(*futures)
            # Periods leaving the hot state: stored in the table's outbox above, added to SQL history
            # (guarded by their sequence), then acknowledged.
            outbox = [(rep_id, state.evictions) for rep_id, state in touched.items() if state.evictions]
            if outbox:
                await history.add(outbox)
                for state in touched.values():
                    if state.evictions:
                        state.acknowledge_evictions(state.evictions[-1].seq)
            metrics.observe_batch("rep-kpis", len(events), time.perf_counter() - started)
            yield None

    @rep_table.on_recover
    async def republish_after_recovery() -> None:
        """After a rebalance, republish the snapshot of every rep whose partition this worker now owns, so
        consumers heal from any lost message (they keep the highest version per rep)."""
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == credits_name}
        now_ms = int(time.time() * 1000)
        futures = []
        for rep_id, state in list(rep_table.items()):
            if partition_for(rep_id, settings.partitions) in owned:
                futures.append(
                    await snapshots_topic.send(key=rep_id.encode(), value=_snapshot(state, 0, now_ms), force=True)
                )
        if futures:
            await asyncio.gather(*futures)
        log.info("republished %d rep snapshots after recovery", len(futures))

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    app.deal_table = deal_table  # type: ignore[attr-defined]
    app.rep_table = rep_table  # type: ignore[attr-defined]
    return app


def _table(app: faust.App, name: str, codec: str, partitions: int) -> Any:
    """A table keyed by str whose values are domain objects in memory and `codec` JSON on the changelog.

    `use_partitioner`: a key's changelog partition is Kafka's default partition for the key, the same as
    its source topic's, so batched writes need no current event."""
    table = app.Table(name, default=None, key_type=str, use_partitioner=True, partitions=partitions)
    table.key_serializer = "raw"
    table.value_serializer = codec
    return table


def _snapshot(state: RepState, accepted_ms: int, now_ms: int) -> bytes:
    return orjson.dumps(
        {
            "rep_id": state.rep_id,
            "version": state.version,
            "updated_ms": now_ms,
            "accepted_ms": accepted_ms,
            "state": state.to_dict(),
        }
    )


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _age(occurred_at: datetime) -> float:
    return max(0.0, time.time() - occurred_at.timestamp())
