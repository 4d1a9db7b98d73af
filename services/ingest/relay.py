"""The relay: publishes the ledger to Kafka in sequence order, and republishes whatever was not confirmed.

Per partition, records go out as whole record batches, one batch in flight at a time, so a partition never
holds a later event before an earlier one; a retry after a failure repeats a prefix that consumers
recognise by sequence number."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.common import db
from services.common.models import LedgerEntry, RelayCursor
from services.common.settings import Settings
from services.common.topics import ACTIVITIES, DEALS, partition_for, topic_name
from services.ingest.metrics import IngestMetrics

log = logging.getLogger("salespulse.ingest.relay")

CURSOR = "kafka"


def envelope(seq: int, accepted_at: datetime, body: str) -> bytes:
    """The message value on events.* topics: ledger sequence, acceptance time (ms) and the event."""
    accepted_ms = int(accepted_at.replace(tzinfo=accepted_at.tzinfo or UTC).timestamp() * 1000)
    return b'{"seq":%d,"accepted_ms":%d,"event":%s}' % (seq, accepted_ms, body.encode())


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """The one producer configuration: no idempotence (Tansu rejects InitProducerId), acks from the leader."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap,
        "enable_idempotence": False,
        "acks": 1,
        "linger_ms": 2,
        "max_batch_size": 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "request_timeout_ms": 15000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


class Relay:
    """Moves ledger rows with seq > cursor to Kafka and advances the cursor once they are acknowledged."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker, metrics: IngestMetrics | None = None) -> None:
        self._settings = settings
        self._sessions = sessions
        self._metrics = metrics or IngestMetrics()
        self._leader: LeaderLock | None = None
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.published_seq = 0
        self.latest_seq = 0
        self.topics = {"deal": topic_name(settings, DEALS), "activity": topic_name(settings, ACTIVITIES)}

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._producer:
            await self._producer.stop()
        if self._leader:
            await self._leader.release()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if self._leader is None:
                    self._leader = await LeaderLock.acquire(self._settings)
                    self._metrics.relay_leader.set(1)
                if self._producer is None:
                    producer = make_producer(self._settings)
                    await producer.start()
                    self._producer = producer
                moved = await self.publish_once()
                backoff = 0.2
                if moved == 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=self._settings.relay_idle_seconds * 20)
                    except TimeoutError:
                        pass
                    self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database unreachable: keep the ledger, retry later
                self._metrics.relay_failures.inc()
                log.warning("relay paused (%s: %s); retrying in %.1f s", type(exc).__name__, exc, backoff)
                if self._producer is not None:
                    try:
                        await self._producer.stop()
                    except Exception:  # noqa: BLE001
                        pass
                    self._producer = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def read_cursor(self) -> int:
        async with self._sessions() as session:
            seq = (await session.execute(select(RelayCursor.seq).where(RelayCursor.name == CURSOR))).scalar()
        return int(seq or 0)

    async def publish_once(self) -> int:
        """Publish the next batch after the cursor; returns how many events went out."""
        assert self._producer is not None
        cursor = await self.read_cursor()
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(
                        LedgerEntry.seq, LedgerEntry.type, LedgerEntry.key, LedgerEntry.body, LedgerEntry.accepted_at
                    )
                    .where(LedgerEntry.seq > cursor)
                    .order_by(LedgerEntry.seq)
                    .limit(self._settings.relay_batch_size)
                )
            ).all()
        if not rows:
            self.published_seq = cursor
            self._metrics.relay_backlog.set(0)
            return 0
        started = time.perf_counter()
        by_partition: dict[tuple[str, int], list[tuple[bytes, bytes, int]]] = defaultdict(list)
        parts = self._settings.partitions
        for seq, type_, key, body, accepted_at in rows:
            topic = self.topics[type_]
            value = envelope(seq, accepted_at, body)
            ts = int(accepted_at.replace(tzinfo=accepted_at.tzinfo or UTC).timestamp() * 1000)
            by_partition[(topic, partition_for(key, parts))].append((key.encode(), value, ts))
        await asyncio.gather(*(self._send_partition(t, p, recs) for (t, p), recs in by_partition.items()))
        last = rows[-1][0]
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(LedgerEntry).where(LedgerEntry.seq > cursor, LedgerEntry.seq <= last).values(published_at=now)
            )
            # Compare-and-set: a concurrent `salespulse replay` that moved the cursor back wins.
            updated = await session.execute(
                update(RelayCursor).where(RelayCursor.name == CURSOR, RelayCursor.seq == cursor).values(seq=last)
            )
            if updated.rowcount == 0 and cursor == 0:
                exists = await session.get(RelayCursor, CURSOR)
                if exists is None:
                    session.add(RelayCursor(name=CURSOR, seq=last))
            latest = (await session.execute(select(func.max(LedgerEntry.seq)))).scalar() or last
        self.published_seq = last
        self._metrics.relay_published.inc(len(rows))
        self._metrics.relay_publish.observe(time.perf_counter() - started)
        self._metrics.relay_backlog.set(max(0, latest - last))
        return len(rows)

    async def _send_partition(self, topic: str, partition: int, records: list[tuple[bytes, bytes, int]]) -> None:
        assert self._producer is not None
        producer = self._producer
        batch = producer.create_batch()
        for key, value, ts in records:
            if batch.append(key=key, value=value, timestamp=ts) is None:
                await (await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=ts)
        if batch.record_count():
            await (await producer.send_batch(batch, topic, partition=partition))


class LeaderLock:
    """Only one relay per database: on PostgreSQL a session advisory lock held on a dedicated connection
    (another ingest process takes over when this one dies); on SQLite the single ingest process leads."""

    KEY = 7461003

    def __init__(self, engine: object | None, connection: object | None) -> None:
        self._engine = engine
        self._connection = connection

    @classmethod
    async def acquire(cls, settings: Settings, poll: float = 1.0) -> LeaderLock:
        if not db.is_postgres(settings.db_url):
            return cls(None, None)
        engine = db.create_engine(settings.db_url)
        while True:
            connection = await engine.connect()
            got = (await connection.execute(text(f"SELECT pg_try_advisory_lock({cls.KEY})"))).scalar()
            await connection.commit()
            if got:
                log.info("this process now runs the relay")
                return cls(engine, connection)
            await connection.close()
            await asyncio.sleep(poll)

    async def release(self) -> None:
        if self._connection is not None:
            await self._connection.close()  # type: ignore[attr-defined]
        if self._engine is not None:
            await self._engine.dispose()  # type: ignore[attr-defined]


async def reset_relay_cursor(settings: Settings, seq: int) -> None:
    """Make the relay republish every ledger event after `seq` (replay into fresh topics)."""
    engine = db.create_engine(settings.db_url)
    try:
        async with db.sessionmaker(engine)() as session, session.begin():
            updated = await session.execute(update(RelayCursor).where(RelayCursor.name == CURSOR).values(seq=seq))
            if updated.rowcount == 0:
                session.add(RelayCursor(name=CURSOR, seq=seq))
    finally:
        await engine.dispose()
