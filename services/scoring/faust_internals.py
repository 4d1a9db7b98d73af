"""Everything the scoring worker does inside faust-streaming's internals, in one place, and why.

Faust's per-message machinery costs more than the scoring itself at the rates the worker must sustain, and
two of its defaults lose or delay data. This module replaces or reaches into exactly these internals of
faust-streaming 0.15.3 (`FAUST_VERSION`; tests/unit/test_faust_internals.py fails on any other version and
checks that each internal used here is still there):

1. **The drain loop** (`Consumer._drain_messages`): each partition's fetched records are handed to the agents'
   batch buffer in one call, with no Faust message, conductor callback or task per record (`LeanConsumer`,
   below); records of any other topic take Faust's per-message path, awaited directly.
2. **The fetch wait** (`fetch_max_wait_ms`, hard-coded 1,500 ms by Faust's aiokafka driver): 20 ms. **Changelog
   ends** (`AIOKafkaConsumerThread._highwaters`, where the table restore asks how far to read): exact, from a
   fetch's high watermark, where ListOffsets on the embedded broker falls short (`_PromptConsumerThread`).
3. **The conductor's subscription and the acknowledgements** (`Topic._queue`, `Consumer._acked`,
   `_acked_index`, `_n_acked`): the agents' topics are subscribed through the conductor as an agent's are
   (`attach_queue`) but delivered by the hand-off into a batch buffer (`services/scoring/intake.py`);
   `acknowledge` marks a batch's offsets done as Faust's per-message `ack` would.
4. **The per-message monitor hooks**: no-ops (`LeanMonitor`); the worker's own metrics are elsewhere.
5. **Table data and restores** (`Table.data.data`, `Table.apply_changelog_batch`, `Table.on_rebalance`,
   `Table.persisted_offset`): `CodecTable` sets its serializers before registration, never lets a restore move
   a key back, and starts a restore from the SQL checkpoint (its values put into the store when partitions are
   assigned, the changelog read only from the offset the checkpoint covers — what a persistent store's
   `persisted_offset` does); `memory_store` is the dict the agents write in batches
   (services/scoring/tables.py, services/scoring/checkpoint.py).
6. **Committed offsets** (`Consumer._committed_offset`), read for the consumer-lag metric.
7. **Serving** (`App.in_recovery`, `App.flow_control`): whether the worker processes its assignment now, for
   its presence row (services/scoring/presence.py).
8. **The seek after a rebalance** (`Consumer.seek_to_committed`): partitions with no committed offset are
   sought to their beginning too (`LeanConsumer.seek_to_committed`, below), or messages fetched during
   recovery and dropped there are never fetched again.
9. **The offset to commit** (`Consumer._new_offset`, over `_acked`, `_acked_index`, `_gap`, `_committed_offset`):
   when the acknowledged offsets of a partition are one run and no gap is recorded (a batch acknowledges
   thousands of consecutive offsets at once), the offset after the run, without Faust's per-offset `groupby`
   (`new_offset_of_one_run`); anything else takes Faust's own path.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final, Protocol, cast

import aiokafka
import faust
from aiokafka import TopicPartition
from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.futures import notify

from services.common.kafka import EndsUnknown, log_ends

__all__ = [
    "FAUST_VERSION",
    "FETCH_MAX_WAIT_MS",
    "CodecTable",
    "LeanConsumer",
    "LeanMonitor",
    "NOT_ONE_RUN",
    "RecordQueue",
    "acknowledge",
    "attach_queue",
    "committed_offsets",
    "key_partitions",
    "memory_store",
    "new_offset_of_one_run",
    "serving",
    "use_lean_consumer",
]

FAUST_VERSION = "0.15.3"
"""The faust-streaming release every internal here was read from and tested against."""


# --- 1 and 2: the drain loop and the fetch wait ----------------------------------------------------------------
#
# Faust's drain loop turns every fetched record into a Faust message (`getmany`, round-robin over partitions)
# and hands it to the conductor through `wait_first(callback(message), suspend_flow.wait())`: a message object,
# two tasks, a wait, flow-control and producer-buffer checks and a queue put per record — together with the
# per-message acknowledgement, about a fifth of the scoring worker's time. Here the records a fetch returned for
# a partition of a batch topic (one `attach_queue` registered) go to its queue in one `put_records` call, after
# the checks Faust makes per message made once for the partition's records: flow (a rebalance in progress drops
# them: they are fetched again from the committed offset, as Faust's own abandoned callbacks are), the read
# offset (records before it were delivered already), gaps in the offsets (acknowledged as Faust does), the
# producer buffer. Records of any other topic take Faust's per-message path, awaited directly while flow is
# active (the conductor's callback does not yield then, so no rebalance can overtake it), through Faust's wait
# otherwise. The rest of the loop is Faust's.


class RecordQueue(Protocol):
    """What the hand-off delivers a batch topic's records to (services/scoring/intake.py)."""

    def put_records(
        self, tp: Any, records: Sequence[Any], *, on_pressure_high: Callable[[], None],
        on_pressure_drop: Callable[[], None],
    ) -> None: ...


_RECORD_QUEUES: weakref.WeakKeyDictionary[Any, dict[str, RecordQueue]] = weakref.WeakKeyDictionary()
"""Per app, the batch topics' queues by topic name (filled by `attach_queue`)."""


class LeanConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover  (exercised by every run)
        consumer_should_stop = cast(Service, self)._stopped.is_set  # noqa: SLF001
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set  # noqa: SLF001
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        queues = _RECORD_QUEUES.get(self.app, {})
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records and not self.should_stop:
                    if self.flow_active:
                        await self._hand_over(records, active, queues)
                    else:  # as Faust's getmany: what was fetched while flow was off is fetched again
                        try:
                            await self.perform_seek()
                        except Exception as exc:  # noqa: BLE001
                            self.log.warning(f"exception performing seek when flow not active {exc}")
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _hand_over(self, records: Mapping[Any, list[Any]], active: set[Any] | None,
                         queues: Mapping[str, RecordQueue]) -> None:
        """Deliver one fetch's records, partition by partition, in offset order within each."""
        app = self.app
        generation_id = app.consumer_generation_id
        read_offset = self._read_offset
        suspended = self.suspend_flow.is_set
        app_flow = app.flow_control
        producer_ebb = app.producer.buffer.wait_until_ebb
        for tp, batch in records.items():
            if not self.flow_active or app.consumer_generation_id != generation_id:
                return
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            queue = queues.get(tp.topic)
            if queue is None:
                await self._deliver_each(tp, batch)
                continue
            r_offset = read_offset[tp]
            if r_offset is not None and batch[0].offset < r_offset:
                batch = [record for record in batch if record.offset >= r_offset]
                if not batch:
                    continue
            if r_offset and app.topics.acks_enabled_for(tp.topic):
                await self._add_gaps(tp, r_offset, batch)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            if not app_flow.is_active() and not suspended():
                await self.wait_first(app_flow.acquire(), self.suspend_flow.wait())
            await producer_ebb()
            if suspended() or not app_flow.is_active():
                return  # a rebalance began: fetched again from the committed offsets after it
            tp = TP(tp.topic, tp.partition)  # the fetch's keys are aiokafka's; Faust's books hold its own TP
            queue.put_records(
                tp, batch,
                on_pressure_high=partial(self._pressure_high, tp), on_pressure_drop=partial(self.on_buffer_drop, tp),
            )
            read_offset[tp] = batch[-1].offset

    def _pressure_high(self, tp: Any) -> None:
        self.app.sensors.on_topic_buffer_full(tp)
        self.on_buffer_full(tp)

    async def _add_gaps(self, tp: Any, r_offset: int, batch: Sequence[Any]) -> None:
        """Offsets skipped before or inside `batch` (transaction markers, compaction) count as acknowledged, as
        Faust's loop records them per message."""
        if batch[0].offset - r_offset > 1:
            await self._add_gap(tp, r_offset + 1, batch[0].offset)
        if batch[-1].offset - batch[0].offset + 1 == len(batch):
            return  # contiguous: no gap inside
        previous = batch[0].offset
        for record in batch[1:]:
            if record.offset - previous > 1:
                await self._add_gap(tp, previous + 1, record.offset)
            previous = record.offset

    async def _deliver_each(self, tp: Any, batch: Sequence[Any]) -> None:
        """Faust's per-message path for a topic without a batch queue."""
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for n, record in enumerate(batch, 1):
            if not self.flow_active:
                return
            if n % 100 == 0:
                await asyncio.sleep(0)
            offset = record.offset
            r_offset = read_offset[tp]
            if r_offset is None or offset >= r_offset:
                if offset - (r_offset or 0) > 1 and r_offset and acks_enabled:
                    await self._add_gap(tp, r_offset + 1, offset)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                message = self._to_message(tp, record)
                if self.suspend_flow.is_set() or not self.app.flow_control.is_active():
                    await self.wait_first(callback(message), self.suspend_flow.wait())
                else:
                    await callback(message)
                read_offset[tp] = offset

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's `_new_offset` (9 in the module's list), with its common case made cheap."""
        found = new_offset_of_one_run(self, tp)
        if found is NOT_ONE_RUN:
            return super()._new_offset(tp)
        return cast("int | None", found)

    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Seek every assigned partition to its committed offset, and the stream partitions that have none
        to their beginning.

        Faust rewinds this way after every rebalance because it drops what was fetched while its flow was
        off or a partition was not active yet (during recovery); aiokafka's `seek_to_committed` seeks only
        partitions whose committed offset is above 0, so a partition no worker of the group had committed yet
        kept the position past the dropped messages, and they were lost: a worker killed before its first
        commit took its first events with it. Changelog partitions (no acknowledgements) keep Faust's
        handling: their reads are placed by the table recovery."""
        committed = await super().seek_to_committed()
        acks_enabled_for = self.app.topics.acks_enabled_for
        unstarted = [tp for tp, offset in committed.items() if not offset and acks_enabled_for(tp.topic)]
        if unstarted:
            await self._thread.seek_to_beginning(*unstarted)
        return committed


NOT_ONE_RUN: Final = object()
"""What `new_offset_of_one_run` returns when Faust's own `_new_offset` must decide."""


def new_offset_of_one_run(consumer: Any, tp: TP) -> int | None | object:
    """What Faust's `Consumer._new_offset(tp)` returns, with its side effects, when the acknowledged offsets of
    `tp` are one run of consecutive offsets and no gap is recorded: None while the run does not start right after
    the committed offset, else the offset after the run (the run leaves `_acked` and `_acked_index`). Otherwise
    `NOT_ONE_RUN`, touching nothing but the order of `_acked` (which Faust sorts first too)."""
    acked: list[int] = consumer._acked[tp]  # noqa: SLF001
    if not acked or consumer._gap[tp]:  # noqa: SLF001
        return NOT_ONE_RUN
    acked.sort()
    first, last = acked[0], acked[-1]
    if last - first != len(acked) - 1 or len(set(acked)) != len(acked):
        return NOT_ONE_RUN
    committed = consumer._committed_offset[tp]  # noqa: SLF001
    if committed and first - committed > 1:
        return None
    consumer._acked_index[tp].difference_update(acked)  # noqa: SLF001
    acked.clear()
    return last + 1


FETCH_MAX_WAIT_MS = 20
"""Faust hard-codes fetch_max_wait_ms=1500; the embedded broker answers an empty fetch only after that wait,
even when data arrives meanwhile, which put up to 1.5 s between a credit and the rep agent."""


class _PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _probe: aiokafka.AIOKafkaConsumer | None = None

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # noqa: SLF001  (read when the fetcher starts)
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        """The end of each partition; exact for changelogs, whose restore reads up to it.

        Faust's table recovery takes a changelog's end from ListOffsets, which the embedded broker (Tansu 0.6)
        answers with the base offset of the partition's last record batch + 1: short of the log end when that
        batch holds several records, and the restore would leave out its tail. A fetch's high watermark is
        exact (`log_ends`), so changelogs are asked that way, by a consumer of their own outside the group;
        their writers then need no one-record last batch, which halved the batches the broker holds and walks
        on every fetch (services/scoring/publisher.py)."""
        if self.consumer.in_transaction:  # Faust's exactly-once mode reads the last stable offsets instead
            return await super()._highwaters(partitions)
        changelogs = self.app.tables.changelog_topics
        exact = [tp for tp in partitions if tp.topic in changelogs]
        rest = [tp for tp in partitions if tp.topic not in changelogs]
        ends: dict[TP, int] = dict(await super()._highwaters(rest)) if rest else {}
        if exact:
            if self._probe is None:
                probe = self._create_probe()
                await probe.start()
                self._probe = probe
            found = await self._changelog_ends(self._probe, [TopicPartition(tp.topic, tp.partition) for tp in exact])
            ends.update({tp: found[TopicPartition(tp.topic, tp.partition)] for tp in exact})
        return ends

    async def _changelog_ends(
        self, probe: aiokafka.AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """`log_ends`, asked again while no fetch answers, for up to 0.8 of Faust's own wait for them (its
        `broker_request_timeout`: past that, its recovery stops without a word and the worker never serves); then
        the error stops the worker, to be restarted. A listed end in place of the exact one would leave the tail
        of a changelog unread, and the work its committed offsets stand for lost."""
        deadline = time.monotonic() + 0.8 * self.app.conf.broker_request_timeout
        while True:
            try:
                return await log_ends(probe, tps)
            except EndsUnknown as exc:
                if time.monotonic() >= deadline:
                    raise
                self.log.warning("changelog ends for the restore: %s", exc)

    def _create_probe(self) -> aiokafka.AIOKafkaConsumer:
        transport, conf = cast(Any, self.transport), self.app.conf
        return aiokafka.AIOKafkaConsumer(
            client_id=conf.broker_client_id,
            bootstrap_servers=faust_aiokafka.server_list(transport.url, transport.default_port),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            **faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )

    async def on_thread_stop(self) -> None:
        await super().on_thread_stop()
        if self._probe is not None:
            await self._probe.stop()
            self._probe = None


def use_lean_consumer(app: Any) -> None:
    """Make `app` build its consumer from `LeanConsumer` (before the worker starts it)."""
    transport = app.transport
    if not issubclass(transport.Consumer, faust_aiokafka.Consumer):
        raise RuntimeError(
            f"the scoring worker needs Faust's aiokafka driver (a kafka:// broker URL), not {transport.Consumer!r}"
        )
    transport.Consumer = LeanConsumer


# --- 3: the conductor's subscription and the acknowledgements -----------------------------------------------


def attach_queue(app: faust.App, topic: faust.TopicT, queue: RecordQueue) -> None:
    """Subscribe to `topic` as an agent would, its records handed by `LeanConsumer` to `queue` in batches.

    The conductor still indexes the topic (its subscription and assignment are Faust's), but delivers nothing
    of it: should a consumer other than `LeanConsumer` run, its first message fails loudly in `queue`'s
    `put_nowait_enhanced` rather than waiting unread in a Faust queue."""
    channel = cast(Any, topic)  # Faust's TopicT declares neither
    channel._queue = queue  # noqa: SLF001  (the conductor puts into `topic.queue`)
    channel.decode = _message_itself
    _RECORD_QUEUES.setdefault(app, {}).update(dict.fromkeys(topic.topics, queue))
    app.topics.add(topic)


async def _message_itself(message: Any, *, propagate: bool = False) -> Any:
    return message


def acknowledge(consumer: Any, records: Iterable[Any]) -> dict[tuple[str, int], int]:
    """Mark handed-over records processed, as Faust's `Consumer.ack` does per message (Faust commits offsets up
    to acknowledged records only); returns the highest offset acknowledged per (topic, partition)."""
    offsets: dict[tuple[str, int], list[int]] = {}
    for record in records:
        where = (record.topic, record.partition)
        if (bucket := offsets.get(where)) is None:
            bucket = offsets[where] = []
        bucket.append(record.offset)
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    with ack_lock:
        for (topic, partition), done in offsets.items():
            if not acks_enabled_for(topic):
                continue
            tp = TP(topic, partition)
            committed = consumer._committed_offset[tp]  # noqa: SLF001
            index = consumer._acked_index[tp]  # noqa: SLF001
            fresh = [o for o in done if (committed is None or o >= committed) and o not in index]
            index.update(fresh)
            consumer._acked[tp].extend(fresh)  # noqa: SLF001
            consumer._n_acked += len(fresh)  # noqa: SLF001
        notify(consumer._waiting_for_ack)  # noqa: SLF001
    return {where: max(done) for where, done in offsets.items()}


# --- 4: the monitor ---------------------------------------------------------------------------------------------
#
# Faust calls four monitor hooks for every message (in, stream in, stream out, out), recording latencies the
# worker never reads. Those hooks do nothing here; the rest of the monitor (committed and end offsets,
# rebalances, sends) is kept.

class LeanMonitor(Monitor):
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


# --- 5: table data and restores ---------------------------------------------------------------------------------


class CodecTable(faust.Table[Any, Any]):
    """A Faust table with str keys (raw UTF-8 on the changelog) and values in a named codec.

    Faust derives a table's serializers from its key and value types (str → JSON) when it is built and
    gives them to its changelog topic, which decodes every record of a restore; so they are set here,
    before the table is registered. (Setting them after `app.Table(...)` changed what was sent but not
    how a restore decoded it: every record failed with "Error in recovery", and a restarted worker came
    back with empty tables.)"""

    def __init__(self, app: faust.App, *, codec: str, progress: Callable[[Any], int], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = codec
        self._progress = progress
        self.restore_base: Callable[[set[int]], Awaitable[Mapping[int, int]]] | None = None
        """Loads the checkpointed values of newly assigned changelog partitions into the store and returns,
        per partition, the last changelog offset the checkpoint covers (absent: read from the beginning)."""
        self.on_restored: Callable[[list[Any]], None] | None = None
        """Told of every changelog record a restore applied (so the next checkpoint includes it)."""
        self._restore_from: dict[int, int] = {}

    async def on_rebalance(
        self, assigned: set[Any], revoked: set[Any], newly_assigned: set[Any], generation_id: int = 0
    ) -> None:
        """Before Faust's recovery reads the changelogs (it asks `persisted_offset` next), put each newly
        assigned partition's checkpoint into the store, so the restore reads only the changelog after it."""
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if self.restore_base is None:
            return
        changelog = self.changelog_topic.get_topic_name()
        mine = {tp.partition for tp in newly_assigned if tp.topic == changelog}
        for partition in {tp.partition for tp in revoked if tp.topic == changelog}:
            self._restore_from.pop(partition, None)
        if mine:
            self._restore_from.update(await self.restore_base(mine))

    def persisted_offset(self, tp: Any) -> int | None:
        if tp.topic != self.changelog_topic.get_topic_name():
            return None
        return self._restore_from.get(tp.partition)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Apply restored values, but never one behind the value already held for its key.

        A restore reads the changelog up to the end it saw when it began; a value written after that (by a
        batch that was still finishing when the rebalance began) is newer than anything the restore reads,
        and replacing it with an older one would undo work whose offsets may already be committed."""
        store = memory_store(self)
        progress = self._progress
        fresh = []
        for event in batch:
            value = event.value
            held = store.get(event.key)
            if held is None or value is None or progress(value) >= progress(held):
                fresh.append(event)
        if fresh:
            super().apply_changelog_batch(fresh)
            if self.on_restored is not None:
                self.on_restored(fresh)


def memory_store(table: Any) -> dict[str, Any]:
    """The dict behind a table with the memory store: what a restore fills and the agents read and write."""
    return cast(dict[str, Any], table.data.data)


def key_partitions(table: Any) -> dict[str, int]:
    """The memory store's key → changelog partition, by which it drops the keys of partitions it no longer owns
    when a recovery completes (values put in the store from a checkpoint must be in it too)."""
    return cast(dict[str, int], table.data._key_partition)  # noqa: SLF001


# --- 6: committed offsets ---------------------------------------------------------------------------------------


def committed_offsets(consumer: Any) -> dict[Any, int]:
    """The group's committed offset per partition as Faust keeps it (read at assignment, updated on commit)."""
    return cast(dict[Any, int], getattr(consumer, "_committed_offset", {}))


# --- 7: serving -------------------------------------------------------------------------------------------------


def serving(app: faust.App) -> bool:
    """Whether the worker processes its assignment now: its tables recovered (Faust sets `in_recovery` while
    restoring changelogs) and its flow running (suspended from a rebalance's start until recovery ends).
    `App.rebalancing` is not used: when a rebalance interrupts a recovery ("Recovery rebalancing again"),
    Faust can leave it set although the worker runs."""
    return not getattr(app, "in_recovery", False) and app.flow_control.is_active()
