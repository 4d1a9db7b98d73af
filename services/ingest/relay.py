"""The relay: publishes the ledger to Kafka in sequence order, and republishes whatever was not confirmed.

Per partition, records go out as whole record batches, one batch in flight at a time, so a partition never
holds a later event before an earlier one; a retry after a failure repeats a prefix that consumers
recognise by sequence number."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import socket
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import Connection, Table, bindparam, func, insert, select, text, update
from sqlalchemy.engine import make_url

from services.common import db
from services.common.background import BackgroundLoop, raise_if_cancelled, wait_set
from services.common.db import Sessions, Transactions
from services.common.kafka import log_ends, start_producer
from services.common.models import (
    RELAY_CURSOR,
    RelayCursor,
    RelayProgress,
    cursor_seq,
)
from services.common.settings import Settings
from services.common.topics import ACTIVITIES, DEALS, partition_for, topic_name
from services.ingest.ledger import LEDGER, Commit, LedgerRecord
from services.ingest.metrics import RelayMetrics
from services.ingest.sources import SourceCounts, Tally

log = logging.getLogger("salespulse.ingest.relay")

CURSOR = RELAY_CURSOR


PROGRESS_STEP = timedelta(seconds=1)
"""The relay_progress table keeps at most one row per this much time (see `ProgressLog`)."""


_CURSORS = cast(Table, RelayCursor.__table__)
_PROGRESS = cast(Table, RelayProgress.__table__)
# A relay pass runs a handful of statements a few milliseconds apart under load: Core statements on the tables,
# built once, skip the ORM's per-statement compile state and unit of work (most of a pass's CPU before).
_READ_LEDGER = (
    select(LEDGER.c.seq, LEDGER.c.type, LEDGER.c.key, LEDGER.c.body, LEDGER.c.accepted_at)
    .where(LEDGER.c.seq > bindparam("cursor"))
    .order_by(LEDGER.c.seq)
    .limit(bindparam("limit"))
)
_MOVE_CURSOR = (
    update(_CURSORS)
    .where(_CURSORS.c.name == CURSOR, _CURSORS.c.seq == bindparam("cursor"))
    .values(seq=bindparam("last"))
)
_NEWEST_PROGRESS = select(_PROGRESS.c.seq_end, _PROGRESS.c.published_at).order_by(_PROGRESS.c.seq_end.desc()).limit(1)
_MOVE_PROGRESS = (
    update(_PROGRESS)
    .where(_PROGRESS.c.seq_end == bindparam("was"))
    .values(seq_end=bindparam("last"), published_at=bindparam("now"))
)
_ADD_PROGRESS = insert(_PROGRESS)
_ADD_CURSOR = insert(_CURSORS)
_READ_CURSOR = cursor_seq(CURSOR)
_LATEST = select(func.max(LEDGER.c.seq))


class ProgressLog:
    """The relay_progress table as one relay writes it: events up to seq_end were on the topics at published_at
    (`GET /v1/events/{id}`'s `published_at`).

    A pass within PROGRESS_STEP of the newest row moves that row forward instead of adding one — its time becomes
    now, so "every event up to seq_end was published by then" stays true, at most a step late for the earlier
    events it covers — and the table grows with time, not with relay passes (one a few milliseconds apart under
    load). A republication after a replay changes nothing: the first publications' rows stand.

    Only the relay holding the leader lock writes the table, so the newest row is read once and then known; it is
    forgotten when a pass fails or the lock changes hands, and a move that finds the row changed reads it again."""

    def __init__(self) -> None:
        self._newest: tuple[int, datetime] | None = None
        self._known = False

    def forget(self) -> None:
        self._known = False

    def record(self, connection: Connection, last: int) -> int:
        """Record, in the caller's transaction, that the events up to `last` are on the topics now. Returns the
        sequence number published before this pass (events up to it were published already)."""
        now = datetime.now(UTC)
        for _ in range(2):
            if not self._known:
                row = connection.execute(_NEWEST_PROGRESS).first()
                self._newest = (row.seq_end, db.as_utc(row.published_at)) if row is not None else None
                self._known = True
            newest = self._newest
            before = newest[0] if newest is not None else 0
            if newest is not None and before >= last:
                return before  # a republication after a replay
            if newest is None or now - newest[1] >= PROGRESS_STEP:
                connection.execute(_ADD_PROGRESS, {"seq_end": last, "published_at": now})
            elif db.rows_matched(connection.execute(_MOVE_PROGRESS, {"was": before, "last": last, "now": now})) != 1:
                self._known = False  # another relay wrote meanwhile: read the newest row again
                continue
            self._newest = (last, now)
            return before
        raise RuntimeError("relay_progress keeps changing under this relay: is another one publishing?")


def envelope(seq: int, accepted_at: datetime, body: str) -> bytes:
    """The message value on events.* topics: ledger sequence, acceptance time (ms) and the event."""
    return envelope_at(seq, accepted_ms(accepted_at), body)


def envelope_at(seq: int, accepted_ms: int, body: str) -> bytes:
    """`envelope` with the acceptance time already in ms (a group commit's rows share it)."""
    return b'{"seq":%d,"accepted_ms":%d,"event":%s}' % (seq, accepted_ms, body.encode())


def accepted_ms(accepted_at: datetime) -> int:
    """A ledger row's acceptance time in epoch milliseconds (stored naive in SQLite: UTC)."""
    return int(accepted_at.replace(tzinfo=accepted_at.tzinfo or UTC).timestamp() * 1000)


class Relay(BackgroundLoop):
    """Moves ledger rows with seq > cursor to Kafka and advances the cursor once they are acknowledged."""

    loop_name = "relay"

    def __init__(
        self,
        settings: Settings,
        sessions: Sessions,
        metrics: RelayMetrics | None = None,
        *,
        idle_wait: float | None = None,
    ) -> None:
        self._settings = settings
        # The relay's statements (a pass's read, its bookkeeping) each run as one transaction on a thread of their
        # own on SQLite: through sessions they were most of a pass's CPU (db.Transactions).
        self._transactions = Transactions(db.engine_of(sessions))
        self._metrics = metrics or RelayMetrics()
        # How long an idle relay waits for a wake-up before it looks at the ledger anyway.
        self._idle_wait = settings.relay_idle_seconds * 20 if idle_wait is None else idle_wait
        # The shortest time from one pass's start to the next while commits keep coming (Kafka's linger.ms for
        # the relay): the embedded broker lists every batch a partition holds on each fetch that returns data, so
        # a pass per commit at a busy floor's rate cost it (and every consumer's fetch after it) most of a core.
        self._linger = settings.relay_linger_seconds
        self._leader: LeaderLock | None = None
        self._wake = asyncio.Event()
        # Records handed over by the ledger writer after commit: published from memory while they follow
        # the cursor without a gap; anything else (restart, replay, overflow) is read back from the ledger.
        self._memory: deque[LedgerRecord] = deque()
        self._memory_cap = 200_000
        self._producer: AIOKafkaProducer | None = None
        self.published_seq = 0
        self.latest_seq = 0
        # The cursor as this relay last saw or moved it, or None: read it from the database. A `replay` that
        # moves it back is seen by the next move's compare-and-set, or after a quiet idle wait.
        self._cursor: int | None = None
        self._published: dict[tuple[str, int], int] = {}
        self.topics = {"deal": topic_name(settings, DEALS), "activity": topic_name(settings, ACTIVITIES)}
        self._sources = SourceCounts(settings)
        self._progress = ProgressLog()
        # Whether the last pass read everything the ledger held after the cursor (then the next pass waits for
        # a wake-up: it would find nothing).
        self._drained = False

    def wake(self) -> None:
        self._wake.set()

    @property
    def leading(self) -> bool:
        """Whether this relay holds the leader lock (the one that publishes)."""
        return self._leader is not None

    def offer(self, commit: Commit) -> None:
        """Called by the ledger writer after each commit."""
        if len(self._memory) + len(commit.rows) > self._memory_cap:
            self._memory.clear()  # far behind (broker down): the ledger has them all
        else:
            self._memory.extend(commit.records())
        self._wake.set()

    def _from_memory(self, cursor: int, limit: int) -> list[LedgerRecord] | None:
        """The gapless run of remembered records right after the cursor, or None (read the ledger).

        With several ingest processes on one ledger, sequence numbers interleave between them: this process
        remembers only its own commits ([101, 102, 105, 106]), so the run stops at the first gap (102) and
        the ledger supplies 103–104 on the next pass."""
        memory = self._memory
        while memory and memory[0].seq <= cursor:
            memory.popleft()
        if not memory or memory[0].seq != cursor + 1:
            return None
        run = [memory[0]]
        for i in range(1, min(limit, len(memory))):
            if memory[i].seq != run[-1].seq + 1:
                break
            run.append(memory[i])
        return run

    async def _step_down(self) -> None:
        """The lock is gone (its connection dropped): publish nothing more until it is taken again."""
        log.warning("relay lock lost; publishing stops until this process takes the lock again")
        self._metrics.relay_leader.set(0)
        leader, self._leader = self._leader, None
        self._memory.clear()
        self._sources.forget()
        self._progress.forget()
        self._cursor = None  # another relay may move it meanwhile
        if leader is not None:
            try:
                await leader.release()
            except Exception as exc:  # noqa: BLE001  (its connection is already gone)
                log.debug("releasing a lost lock: %r", exc)

    async def count_pending(self) -> None:
        """Write the per-source counts that wait (services/ingest/sources.py); a failure loses nothing: the next
        relay recounts them from the ledger."""
        try:
            await self._sources.write_if_due(self._transactions, now=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("per-source counts not written (%s); the next relay recounts them", exc)

    async def stop(self) -> None:
        await super().stop()
        if self._leader:
            await self.count_pending()
        if self._producer:
            await self._producer.stop()
        if self._leader:
            await self._leader.release()
        await self._transactions.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_out = -math.inf  # when the last pass that published something started
        backoff = 0.2
        while True:
            raise_if_cancelled()  # a stop of the producer below may have swallowed it
            try:
                if self._leader is None:
                    self._leader = await LeaderLock.acquire(self._settings)
                    self._metrics.relay_leader.set(1)
                    # A relay that died mid-batch may have published records whose cursor move never
                    # committed: skip, per partition, what is already at its end (exactly once on the topic).
                    self._published = await published_upto(self._settings, self.topics.values())
                if self._producer is None:
                    self._producer = await start_producer(self._settings)
                if not await self._leader.still_held():
                    await self._step_down()
                    continue
                # Cleared before the pass reads: a commit woke it before the read (the ledger writer wakes after
                # committing), so the read sees that commit; a wake-up set from here on is a later commit's.
                self._wake.clear()
                started = loop.time()
                moved = await self.publish_once()
                backoff = 0.2
                if moved:
                    last_out = started
                if moved == 0 or self._drained:
                    # Nothing more was there when the pass read the ledger: wait for the next commit instead of
                    # a pass that would find nothing (one pass per commit, not two).
                    if await wait_set(self._wake, self._idle_wait):
                        # A commit soon after a pass that published: the commits that follow it within the
                        # linger go out with it (fewer, larger batches). After a quiet spell it is over already.
                        lingering = last_out + self._linger - loop.time()
                        if lingering > 0:
                            await asyncio.sleep(lingering)
                    elif moved == 0:
                        self._cursor = None  # quiet: read the cursor again (a `replay` may have moved it)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (broker or database unreachable: keep the ledger, retry later)
                self._metrics.relay_failures.inc()
                self._progress.forget()  # the pass's transaction may not have committed
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
        return await self._transactions.run(lambda connection: int(connection.execute(_READ_CURSOR).scalar() or 0))

    async def publish_once(self) -> int:
        """Publish the next batch after the cursor; returns how many events went out."""
        assert self._producer is not None
        cursor = self._cursor if self._cursor is not None else await self.read_cursor()
        limit = self._settings.relay_batch_size
        rows = self._from_memory(cursor, limit)
        read_all = False  # whether `rows` is everything the ledger held after the cursor when it was read
        if rows is None:
            rows = await self._transactions.run(
                lambda connection: [LedgerRecord(*row) for row in connection.execute(
                    _READ_LEDGER, {"cursor": cursor, "limit": limit})]
            )
            read_all = len(rows) < limit
        self._drained = False
        if not rows:
            self._cursor = cursor
            self.published_seq = cursor
            self._metrics.relay_backlog.set(0)
            await self._sources.write_if_due(self._transactions)
            return 0
        self._cursor = None  # until the move below commits
        started = time.perf_counter()
        by_partition: dict[tuple[str, int], list[tuple[bytes, bytes, int]]] = defaultdict(list)
        parts = self._settings.partitions
        published = self._published
        at, ms = None, 0
        for seq, type_, key, body, accepted_at in rows:
            topic = self.topics[type_]
            partition = partition_for(key, parts)
            if seq <= published.get((topic, partition), 0):
                continue  # already on the topic (published by a relay that died before moving the cursor)
            if accepted_at != at:  # a group commit's rows share their acceptance time
                at, ms = accepted_at, accepted_ms(accepted_at)
            by_partition[(topic, partition)].append((key.encode(), envelope_at(seq, ms, body), ms))
        await asyncio.gather(*(self._send_partition(t, p, recs) for (t, p), recs in by_partition.items()))
        last = rows[-1].seq
        moved, counted, latest = await self._transactions.run(
            lambda connection: self._account(connection, rows, cursor, read_all)
        )
        self._sources.committed(counted)
        if moved:
            self._cursor = last
            self._drained = read_all  # else a `replay` moved the cursor back: the next pass reads it at once
        self.published_seq = last
        self._metrics.relay_published.inc(len(rows))
        self._metrics.relay_publish.observe(time.perf_counter() - started)
        self._metrics.relay_backlog.set(max(0, latest - last))
        return len(rows)

    def _account(self, connection: Connection, rows: list[LedgerRecord], cursor: int,
                 read_all: bool) -> tuple[bool, Tally | None, int]:
        """A published pass's bookkeeping, in one transaction: the cursor moved from `cursor` to the last row (a
        compare-and-set: a concurrent `salespulse replay` that moved it back wins), the progress log, the
        per-source tallies, and the ledger's newest sequence number (the backlog)."""
        last = rows[-1].seq
        moved = db.rows_matched(connection.execute(_MOVE_CURSOR, {"cursor": cursor, "last": last})) == 1
        if not moved and cursor == 0 and connection.execute(_READ_CURSOR).first() is None:
            connection.execute(_ADD_CURSOR, {"name": CURSOR, "seq": last})
            moved = True
        before = self._progress.record(connection, last)
        counted = self._sources.in_pass(connection, rows, before)
        # The backlog: none when the read took everything there was; else ask the ledger.
        latest = last if read_all else connection.execute(_LATEST).scalar() or last
        return moved, counted, latest

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


class RelayWaker:
    """Ingest's side of an external relay (SALESPULSE_RELAY=external): after each ledger commit, one datagram to
    the relay's wake-up socket. Best effort by design: a datagram that is lost, or a relay that is down, costs
    only the relay's idle wait; the ledger holds every event."""

    def __init__(self, settings: Settings) -> None:
        self._address = (settings.relay_host, settings.relay_port)
        self._socket: socket.socket | None = None

    def offer(self, commit: Commit) -> None:
        """Called by the ledger writer after each commit (what it appended does not matter here)."""
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(b"w", self._address)
        except OSError as exc:  # unresolvable host, no route, full buffer: the relay's idle wait covers it
            log.debug("could not wake the relay at %s:%d (%s)", *self._address, exc)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class LeaderLock:
    """Only one relay per database. PostgreSQL: a session advisory lock on a dedicated connection;
    SQLite: an exclusive flock on a file beside the database. Either is released when the process dies,
    so another ingest process (or `salespulse replay`) takes over."""

    KEY = 7461003

    def __init__(self, release: Callable[[], Awaitable[None]],
                 check: Callable[[], Awaitable[bool]] | None = None) -> None:
        self._release = release
        self._check = check or _held

    @classmethod
    async def acquire(cls, settings: Settings, *, poll: float = 1.0, timeout: float | None = None) -> LeaderLock:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lock = await (cls._try_postgres(settings) if db.is_postgres(settings.db_url) else cls._try_file(settings))
            if lock is not None:
                log.info("this process now runs the relay")
                return lock
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("another process runs the relay")
            await asyncio.sleep(poll)

    @classmethod
    async def _try_postgres(cls, settings: Settings) -> LeaderLock | None:
        engine = db.create_engine(settings.db_url)
        connection = await engine.connect()
        got = (await connection.execute(text(f"SELECT pg_try_advisory_lock({cls.KEY})"))).scalar()
        await connection.commit()
        if not got:
            await connection.close()
            await engine.dispose()
            return None

        async def release() -> None:
            await connection.close()
            await engine.dispose()

        async def check() -> bool:
            # On the lock's own connection: an answer proves the session (and so the lock) is alive.
            try:
                held = await asyncio.wait_for(connection.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"
                    " AND pid = pg_backend_pid() AND granted"), {"key": cls.KEY}), timeout=2.0)
                count = held.scalar()
                await connection.commit()
            except Exception as exc:  # noqa: BLE001  (connection gone: the lock went with it)
                log.warning("relay lock check failed (%s: %s)", type(exc).__name__, exc)
                return False
            return bool(count)

        return cls(release, check)

    @classmethod
    async def _try_file(cls, settings: Settings) -> LeaderLock | None:
        database = make_url(settings.db_url).database or "memory"
        path = Path(database + ".relay.lock") if database != "memory" else settings.data_dir / "relay.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115, ASYNC230  (held for the life of the lock; a local file, opened once)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None

        async def release() -> None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

        return cls(release)

    async def still_held(self) -> bool:
        """Whether this process provably still holds the lock (asked before each publish)."""
        return await self._check()

    async def release(self) -> None:
        await self._release()


async def _held() -> bool:
    return True  # a flock lives as long as this process and its file handle


async def published_upto(
    settings: Settings, topics: Iterable[str], timeout: float = 15.0
) -> dict[tuple[str, int], int]:
    """The ledger sequence number of the last record on each partition of `topics` (absent when empty)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in range(settings.partitions)]
        ends = await log_ends(consumer, tps)
        have = [tp for tp in tps if ends[tp] > 0]
        consumer.assign(have)
        for tp in have:
            consumer.seek(tp, ends[tp] - 1)
        out: dict[tuple[str, int], int] = {}
        pending = set(have)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read the last record of {sorted(map(str, pending))}")
            batches = await consumer.getmany(*pending, timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset == ends[tp] - 1 and message.value:
                        out[(tp.topic, tp.partition)] = int(orjson.loads(message.value)["seq"])
                        pending.discard(tp)
        return out
    finally:
        await consumer.stop()


async def reset_relay_cursor(settings: Settings, seq: int) -> None:
    """Make the relay republish every ledger event after `seq` (replay into fresh topics)."""
    engine = db.create_engine(settings.db_url)
    try:
        async with db.sessionmaker(engine)() as session, session.begin():
            updated = await session.execute(update(RelayCursor).where(RelayCursor.name == CURSOR).values(seq=seq))
            if db.rows_matched(updated) == 0:
                session.add(RelayCursor(name=CURSOR, seq=seq))
    finally:
        await engine.dispose()


async def replay(settings: Settings, from_seq: int, *, out: Callable[[str], None] = print) -> int:
    """`salespulse replay`: republish the ledger from `from_seq` on. Runs the relay here until it has caught
    up, unless a running ingest process holds the relay, which then does the work. Returns events published."""
    await reset_relay_cursor(settings, max(0, from_seq - 1))
    try:
        lock = await LeaderLock.acquire(settings, poll=0.2, timeout=2.0)
    except TimeoutError:
        out(f"the running ingest service's relay republishes the ledger from seq {from_seq}")
        return 0
    await lock.release()
    engine = db.create_engine(settings.db_url)
    relay = Relay(settings, db.sessionmaker(engine))
    producer = await start_producer(settings)
    relay._producer = producer  # noqa: SLF001
    total = 0
    try:
        while moved := await relay.publish_once():
            total += moved
            out(f"republished up to seq {relay.published_seq} ({total:,} events)")
        await relay.count_pending()
    finally:
        await producer.stop()
        await engine.dispose()
    return total
