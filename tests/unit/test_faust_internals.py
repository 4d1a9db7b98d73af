"""services/scoring/faust_internals.py reaches into faust-streaming: it is pinned to the release it was read from,
and each internal it relies on must still be there, with the shape it was written against. Upgrading Faust
fails here first, with the list of what to re-read."""

from __future__ import annotations

import importlib.metadata
import inspect
import random

from aiokafka import AIOKafkaConsumer
from faust.channels import Channel
from faust.sensors.monitor import Monitor
from faust.stores.memory import Store
from faust.tables.table import Table
from faust.topics import Topic
from faust.transport import conductor
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st
from intervaltree import IntervalTree

from services.scoring import faust_internals


def test_the_installed_faust_streaming_is_the_release_the_internals_were_read_from() -> None:
    installed = importlib.metadata.version("faust-streaming")
    assert installed == faust_internals.FAUST_VERSION, (
        f"faust-streaming {installed} is installed; services/scoring/faust_internals.py was written against "
        f"{faust_internals.FAUST_VERSION}: re-read each internal it lists, then update FAUST_VERSION"
    )


def test_the_drain_loop_it_replaces_still_hands_each_message_over_through_wait_first() -> None:
    original = inspect.getsource(Consumer._drain_messages)
    for piece in ("wait_first(", "callback(message)", "self.suspend_flow.wait()", "self._read_offset",
                  "self._commit_every", "self._n_acked", "self._add_gap(", "CONSUMER_FETCHING"):
        assert piece in original, f"Consumer._drain_messages no longer uses {piece}"
    assert issubclass(faust_internals.LeanConsumer, faust_aiokafka.Consumer)
    assert "_drain_messages" in vars(faust_internals.LeanConsumer)


def test_the_fetch_and_per_message_steps_the_hand_off_makes_once_per_partition_are_still_faust_s() -> None:
    """The hand-off calls what Faust's getmany calls (the fetch, the active partitions, the end-offset
    tracking, the seek when flow is off) and makes the conductor callback's waits once per partition."""
    getmany = inspect.getsource(Consumer.getmany)
    for piece in ("self._wait_next_records(timeout)", "self._buffered_partitions", "track_tp_end_offset(tp",
                  "self.perform_seek()", "self.app.consumer_generation_id", "self.flow_active",
                  "to_message(tp, record)"):
        assert piece in getmany, f"Consumer.getmany no longer uses {piece}"
    handler = inspect.getsource(conductor.ConductorCompiler.build)
    for piece in ("acquire_flow_control: Callable = app.flow_control.acquire", "app.producer.buffer.wait_until_ebb",
                  "consumer_on_buffer_full(tp)", "consumer_on_buffer_drop(tp)", "on_topic_buffer_full(tp)"):
        assert piece in handler, f"the conductor's message handler no longer uses {piece}"


def test_a_batch_acknowledgement_keeps_the_books_faust_s_per_message_ack_keeps() -> None:
    ack = inspect.getsource(Consumer.ack)
    for piece in ("with ack_lock:", "self._committed_offset[tp]", "offset >= committed", "self._acked_index[tp]",
                  "self._acked[tp]", "self._n_acked += 1", "notify(self._waiting_for_ack)"):
        assert piece in ack, f"Consumer.ack no longer does {piece}"


def test_faust_still_rewinds_to_committed_offsets_after_a_rebalance_and_aiokafka_still_skips_uncommitted() -> None:
    # Faust drops what it fetched while its flow was off and rewinds with seek_to_committed...
    assert "self.perform_seek()" in inspect.getsource(Consumer.getmany)
    assert "self.seek_to_committed()" in inspect.getsource(Consumer.perform_seek)
    # ...which leaves a partition with no committed offset (or 0) where the dropped fetch left it.
    assert "if offset and offset > 0:" in inspect.getsource(AIOKafkaConsumer.seek_to_committed)
    assert "seek_to_committed" in vars(faust_internals.LeanConsumer)
    assert callable(faust_aiokafka.AIOKafkaConsumerThread.seek_to_beginning)


def test_the_fetch_wait_it_shortens_is_still_faust_s_hard_coded_1500_ms() -> None:
    thread = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread)
    assert "fetch_max_wait_ms=1500" in thread
    assert "_create_worker_consumer" in vars(faust_aiokafka.AIOKafkaConsumerThread)


def test_the_restore_still_takes_changelog_ends_from_the_consumer_thread_s_highwaters() -> None:
    from faust.tables.recovery import Recovery

    assert "consumer.highwaters(" in inspect.getsource(Recovery._build_highwaters)
    assert "self._highwaters" in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.highwaters)
    assert "end_offsets" in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._highwaters)
    for name in ("server_list", "credentials_to_aiokafka_auth"):
        assert callable(getattr(faust_aiokafka, name))
    assert "on_thread_stop" in vars(faust_aiokafka.AIOKafkaConsumerThread)


def test_the_conductor_still_puts_into_the_topic_queue() -> None:
    assert "self._queue" in inspect.getsource(Channel)  # Channel.queue is built lazily into self._queue
    assert "put_nowait_enhanced" in inspect.getsource(conductor)  # the queue method BatchIntake offers
    assert callable(Topic.decode)


def test_the_monitor_hooks_it_silences_exist_and_table_data_is_a_dict_in_the_memory_store() -> None:
    for hook in ("on_message_in", "on_stream_event_in", "on_stream_event_out", "on_message_out"):
        assert hook in vars(Monitor), hook
        assert hook in vars(faust_internals.LeanMonitor), hook
    assert "apply_changelog_batch" in {name for cls in Table.__mro__ for name in vars(cls)}
    assert "self.data" in inspect.getsource(Store)
    assert "self._key_partition" in inspect.getsource(Store.on_recovery_completed)


def test_faust_keeps_the_committed_offsets_it_reads_for_the_lag_metric() -> None:
    assert "_committed_offset" in inspect.getsource(Consumer)


def test_faust_says_when_a_worker_rebalances_recovers_or_holds_its_flow() -> None:
    from faust.app.base import App
    from faust.tables.recovery import Recovery

    assert "self.flow_control.suspend()" in inspect.getsource(App)
    assert "self.app.in_recovery = True" in inspect.getsource(Recovery)
    from mode.utils.queues import FlowControlEvent

    assert "def flow_control(self) -> FlowControlEvent" in inspect.getsource(App)
    assert callable(FlowControlEvent.is_active)


def test_faust_asks_a_table_where_its_restore_starts_after_the_tables_rebalance() -> None:
    """The checkpoint (services/scoring/checkpoint.py) is loaded in `Table.on_rebalance`, which the app awaits
    before the recovery service reads `persisted_offset` for each assigned changelog partition."""
    from faust.app.base import App
    from faust.tables.manager import TableManager
    from faust.tables.recovery import Recovery

    manager = inspect.getsource(TableManager.on_rebalance)
    assert manager.index("table.on_rebalance") < manager.index("self.recovery.on_rebalance")
    assert "self.tables.on_rebalance" in inspect.getsource(App._on_partitions_assigned)
    assert "table.persisted_offset(tp)" in inspect.getsource(Recovery)
    for name in ("on_rebalance", "persisted_offset"):
        assert name in {n for cls in Table.__mro__ for n in vars(cls)}, name


def test_a_batch_acknowledgement_gives_the_commit_offset_faust_computes_from_per_message_acks() -> None:
    """`acknowledge` keeps the books Faust's commit reads (`Consumer._new_offset`): a contiguous run commits
    past its end, a hole stops the commit before it, records at or behind the committed offset change nothing."""
    from collections import defaultdict
    from types import SimpleNamespace

    from faust.types import TP
    from intervaltree import IntervalTree

    def consumer(committed: int | None) -> SimpleNamespace:
        fake = SimpleNamespace(
            app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == "events")),
            _acked=defaultdict(list), _acked_index=defaultdict(set), _gap=defaultdict(IntervalTree),
            _committed_offset=defaultdict(lambda: None), _n_acked=0, _waiting_for_ack=None,
        )
        fake._committed_offset[TP("events", 0)] = committed
        return fake

    def records(topic: str, partition: int, offsets: range | list[int]) -> list[SimpleNamespace]:
        return [SimpleNamespace(topic=topic, partition=partition, offset=o) for o in offsets]

    tp = TP("events", 0)
    books = consumer(committed=None)
    highest = faust_internals.acknowledge(books, records("events", 0, range(0, 5)) + records("other", 0, [9]))
    assert highest == {("events", 0): 4, ("other", 0): 9}
    assert books._n_acked == 5  # the topic without acknowledgements is not counted
    assert Consumer._new_offset(books, tp) == 5  # type: ignore[arg-type]

    books = consumer(committed=10)
    faust_internals.acknowledge(books, records("events", 0, [8, 9, 10, 11, 13]))  # 8, 9: behind the commit
    faust_internals.acknowledge(books, records("events", 0, [11]))  # again: counted once
    assert books._n_acked == 3
    assert Consumer._new_offset(books, tp) == 12  # 10, 11; 12 is a hole


class _Acks:
    """The acknowledgement state `Consumer._new_offset` reads and changes, for one partition."""

    def __init__(self, tp: TP, acked: list[int], committed: int | None, gap: tuple[int, int] | None) -> None:
        self._acked = {tp: list(acked)}
        self._acked_index = {tp: set(acked)}
        self._committed_offset = {tp: committed}
        self._gap = {tp: IntervalTree()}
        if gap is not None:
            self._gap[tp].addi(*gap)

    def seen(self, tp: TP) -> tuple[list[int], set[int]]:
        return sorted(self._acked[tp]), self._acked_index[tp]


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 50),
    st.lists(st.integers(0, 120), max_size=60, unique=True) | st.integers(0, 60).map(lambda n: list(range(7, 7 + n))),
    st.none() | st.integers(0, 60),
    st.none() | st.tuples(st.integers(0, 60), st.integers(1, 10)).map(lambda g: (g[0], g[0] + g[1])),
    st.randoms(),
)
def test_the_offset_to_commit_is_faust_s_own(
    shift: int, acked: list[int], committed: int | None, gap: tuple[int, int] | None, rng: random.Random
) -> None:
    tp = TP("events.activities", 3)
    offsets = [offset + shift for offset in acked]
    rng.shuffle(offsets)  # acknowledged in any order
    faust_s, ours = _Acks(tp, offsets, committed, gap), _Acks(tp, offsets, committed, gap)
    expected = Consumer._new_offset(faust_s, tp)  # type: ignore[arg-type]
    found = faust_internals.new_offset_of_one_run(ours, tp)
    if found is faust_internals.NOT_ONE_RUN:
        assert sorted(ours._acked[tp]) == sorted(offsets) and ours._acked_index[tp] == set(offsets)  # untouched
        found = Consumer._new_offset(ours, tp)  # type: ignore[arg-type]
    else:
        assert gap is None and sorted(offsets) == list(range(min(offsets), max(offsets) + 1))  # one run, no gap
    assert found == expected
    assert ours.seen(tp) == faust_s.seen(tp)


def test_a_batch_s_acknowledged_run_is_committed_without_faust_s_groupby() -> None:
    tp = TP("events.deals", 0)
    acks = _Acks(tp, list(range(1_000, 6_000))[::-1], 999, None)
    assert faust_internals.new_offset_of_one_run(acks, tp) == 6_000
    assert acks.seen(tp) == ([], set())
    assert "_new_offset" in vars(faust_internals.LeanConsumer)
    original = inspect.getsource(Consumer._new_offset)
    for piece in ("self._acked[tp]", "self._gap[tp]", "self._committed_offset[tp]", "consecutive_numbers(acked)",
                  "self._acked_index[tp].difference_update(batch)", "acked.sort()"):
        assert piece in original, f"Consumer._new_offset no longer uses {piece}"


def test_faust_s_recovery_still_waits_for_changelog_ends_no_longer_than_its_request_timeout() -> None:
    # `_PromptConsumerThread._changelog_ends` gives up within 0.8 of that wait: past it, Faust's recovery would stop
    # (its `_wait` answers ServiceStopped on a timeout) and the worker never serve again.
    from faust.tables.recovery import Recovery

    restart = inspect.getsource(Recovery._restart_recovery.fun)  # a mode ServiceTask around the method
    assert "self._build_highwaters" in restart and "timeout=self.app.conf.broker_request_timeout" in restart
    assert "raise ServiceStopped()" in inspect.getsource(Recovery._wait)


def test_faust_counts_a_rebalance_as_it_begins_and_forgets_the_acknowledgements_it_revokes() -> None:
    # agents.run_agent leaves a batch folded across a rebalance unacknowledged, by this count.
    from faust.app.base import App

    assert "self.rebalancing_count += 1" in inspect.getsource(App.on_rebalance_start)
    assert "thread.app.on_rebalance_start()" in inspect.getsource(
        faust_aiokafka.ConsumerRebalanceListener.on_partitions_revoked
    )
    revoked = inspect.getsource(Consumer.on_partitions_revoked)
    assert "self._acked.pop(tp, None)" in revoked and "self._committed_offset.pop(tp, None)" in revoked
