"""Checkpoints of the scoring tables in SQL, so a restart costs what changed since the last one.

**Taking one** (every `scoring_checkpoint_interval` seconds, by a worker that serves every partition alone; given up
if the group rebalances before the values are copied):

1. Read the relay's cursor `C` (every ledger event up to `C` is in the events topics), then the exact ends of
   `events.deals` and `events.activities`, and wait until the agents have completed batches up to those ends:
   every event up to `C` is folded.
2. Read the deal table's changelog ends, then copy the deal table's changed values (synchronously: one instant).
   A deal value is written only after its credits are acknowledged, so every credit it implies is in `credits`.
3. Read the ends of `credits`, wait until the rep agent has folded up to them, read the changelog ends of the
   rep table and of the rep's minute days, copy both tables' changed values (at one instant: a state and its
   days as they were together). The rep values now reflect every credit of the deal values of step 2 (and
   perhaps later ones: a deal event replayed after the checkpoint re-emits identical credits, which the rep
   state's per-source marks recognise), and every activity up to `C`.
4. Upsert the changed minute days (deleting the days deleted since), then the rep values, then the deal
   values, then the mark (`C`, the changelog ends), in short transactions (services/common/checkpoints.py,
   `write_checkpoint`, says why that order is safe: a rep state whose minute outbox is gone implies its
   entries are in the days).

Values written to the store after a changelog end was read are re-read from the changelog by a restore, which
never moves a key back (`CodecTable.apply_changelog_batch`): harmless.

**Restoring** (services/scoring/faust_internals.py, `CodecTable`): when changelog partitions are assigned, their
checkpointed values go into the store, and Faust's recovery reads the changelog only from the checkpoint's
offsets — or all of it when the broker is a new one (`up` voids the offsets), whose changelog holds only what
was written since, on top of the checkpoint. The worker reads and decodes the checkpoint ahead, from the moment
it starts, while it joins its group (`start_prefetch`); the first restore takes those values if the checkpoint
has not moved since. A broker that came back empty is refilled from the ledger after
`C` only (services/common/checkpoints.py).

With several workers no single one can vouch for `C` (the rep tables take credits from every deals partition),
so none takes a checkpoint; the changelog on Apache Kafka is durable and restores stay Faust's own, starting from
the last checkpoint a single worker took, if any (docs/decisions.md, "Checkpointed restart").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition

from services.common import checkpoints, db
from services.common.bulk import long_lived
from services.common.db import Sessions
from services.common.kafka import KeptConsumer, log_ends
from services.common.models import relay_cursor
from services.common.settings import Settings
from services.scoring.tables import StateTable

log = logging.getLogger("salespulse.scoring.checkpoint")

__all__ = ["Checkpointer"]

CAUGHT_UP_WITHIN = 30.0
"""How long a checkpoint waits for the agents to fold up to the ends it read before it gives up (and tries
again at the next interval)."""


class Checkpointer:
    def __init__(
        self,
        settings: Settings,
        *,
        deal_table: StateTable,
        rep_tables: Sequence[StateTable],
        event_topics: tuple[str, str],
        credits_topic: str,
        folded: Callable[[], Mapping[tuple[str, int], int]],
        sole_owner: Callable[[], int | None],
        on_taken: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self._settings = settings
        self._deal_table = deal_table
        self._rep_tables = tuple(rep_tables)
        """The rep table and the tables whose values it implies, in the order they are written (those first)."""
        self._event_topics = event_topics
        self._credits_topic = credits_topic
        self._folded = folded
        self._sole_owner = sole_owner
        """The group generation in which this worker serves every source partition alone (None: it does not)."""
        self._on_taken = on_taken
        self._sessions: Sessions | None = None
        self._ends = KeptConsumer(settings, fetch_max_wait_ms=20)  # log_ends probes with a fetch
        self._prefetching: asyncio.Future[None] | None = None
        self._restoring = False
        self._prefetched: dict[str, tuple[checkpoints.CheckpointMark, dict[int, dict[str, Any]]]] = {}
        """Per table, the checkpoint read ahead at start-up: its mark and its decoded values by partition."""
        for table in (deal_table, *self._rep_tables):
            table.table.restore_base = self._restorer(table)

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            self._sessions = db.sessionmaker(db.create_engine(self._settings.db_url))
        return self._sessions

    # --- restoring ---------------------------------------------------------------------------------------------

    def _restorer(self, table: StateTable) -> Callable[[set[int]], Any]:
        async def restore(partitions: set[int]) -> dict[int, int]:
            return await self.restore(table, partitions)

        return restore

    def start_prefetch(self) -> None:
        """Begin reading and decoding the whole checkpoint now (at start-up, while the worker joins its group),
        for the first restore of each table to take instead of reading it then (unless one has begun)."""
        if self._prefetching is None and not self._restoring:
            self._prefetching = asyncio.ensure_future(self._prefetch())

    async def _prefetch(self) -> None:
        started = time.perf_counter()
        try:
            mark = await self._usable_mark()
            if mark is None:
                return
            for table in (self._deal_table, *self._rep_tables):
                rows = await checkpoints.load_values(self.sessions, table.name, range(mark.partitions))
                self._prefetched[table.name] = (mark, await _decoded(table, rows))
        except Exception as exc:  # noqa: BLE001  (the restore reads the checkpoint itself)
            log.warning("checkpoint not read ahead (%s: %s); the restore reads it", type(exc).__name__, exc)
            self._prefetched.clear()
            return
        log.info("checkpoint read ahead in %.2f s", time.perf_counter() - started)

    async def _usable_mark(self) -> checkpoints.CheckpointMark | None:
        """The checkpoint's mark, unless there is none or it was taken for another partition count."""
        mark = await checkpoints.read_mark(self.sessions)
        return mark if mark is not None and mark.partitions == self._settings.partitions else None

    async def restore(self, table: StateTable, partitions: set[int]) -> dict[int, int]:
        """Load `table`'s checkpointed values of `partitions` into its store; per partition, the last changelog
        offset the checkpoint covers (none: the restore reads the changelog from the beginning)."""
        started = time.perf_counter()
        self._restoring = True
        if self._prefetching is not None:
            await self._prefetching
        mark = await self._usable_mark()
        ahead = self._prefetched.pop(table.name, None)  # good for the first restore only
        if mark is None:
            return {}
        if ahead is not None and ahead[0] == mark:
            how = "read ahead"
            values = {p: ahead[1][p] for p in partitions if p in ahead[1]}
        else:  # none yet, or a newer checkpoint since
            how = "read now"
            values = await _decoded(table, await checkpoints.load_values(self.sessions, table.name, partitions))
        loaded = table.load(values)
        offsets = (mark.offsets or {}).get(table.name, {})
        log.info("%s: %d of %d checkpointed values restored for partitions %s in %.2f s (%s; ledger seq %d); "
                 "changelog read from %s", table.name, loaded, sum(map(len, values.values())), sorted(partitions),
                 time.perf_counter() - started, how, mark.seq,
                 "the checkpoint's offsets" if offsets else "the beginning (a new broker)")
        return {p: offsets[p] for p in partitions if p in offsets}

    # --- taking one --------------------------------------------------------------------------------------------

    async def run(self, interval: float, serving: Callable[[], bool]) -> None:
        """Take a checkpoint every `interval` seconds while the worker serves every partition."""
        told = False
        while True:
            await asyncio.sleep(interval)
            if not serving():
                continue
            if self._sole_owner() is None:
                if not told:
                    log.info("not every partition is assigned here: no checkpoint (another worker shares them)")
                    told = True
                continue
            told = False
            try:
                await self.take()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (the next interval tries again; nothing depends on this one)
                log.warning("checkpoint not taken (%s: %s); trying again in %.0f s", type(exc).__name__, exc, interval)

    async def take(self) -> bool:
        """One checkpoint (the steps in the module docstring); False when the agents did not catch up in time."""
        started = time.perf_counter()
        generation = self._sole_owner()
        if generation is None:
            return False
        count = self._settings.partitions
        consumer = await self._ends.get()
        seq = await self._relay_cursor()
        events = [TopicPartition(t, p) for t in self._event_topics for p in range(count)]
        if not await self._folded_up_to(await log_ends(consumer, events)):
            return False
        deals = self._changelog_tps(self._deal_table)
        deal_offsets = await log_ends(consumer, deals)
        if not self._still_sole_owner(generation):
            return False
        deal_values = dict(self._deal_table.dirty)  # no await since the check: the values the offsets cover
        credits = [TopicPartition(self._credits_topic, p) for p in range(count)]
        if not await self._folded_up_to(await log_ends(consumer, credits)):
            return False
        rep_tps = [self._changelog_tps(table) for table in self._rep_tables]
        rep_offsets = await log_ends(consumer, [tp for tps in rep_tps for tp in tps])  # one request for all
        if not self._still_sole_owner(generation):
            return False
        rep_values = [dict(table.dirty) for table in self._rep_tables]  # no await in between: one instant
        copied = [*zip(self._rep_tables, rep_values, strict=True), (self._deal_table, deal_values)]
        written = await checkpoints.write_checkpoint(
            self.sessions,
            # days, then reps, then deals: a value in SQL must never imply work missing from a table before it
            [(table.name, [(k, table.partition_of(k), v) for k, v in values.items()]) for table, values in copied],
            seq=seq,
            partitions=count,
            offsets={  # the last offset each changelog partition held (Faust's `persisted_offset`): -1 for none
                self._deal_table.name: {tp.partition: deal_offsets[tp] - 1 for tp in deals},
                **{
                    table.name: {tp.partition: rep_offsets[tp] - 1 for tp in tps}
                    for table, tps in zip(self._rep_tables, rep_tps, strict=True)
                },
            },
            taken_ms=int(time.time() * 1000),
        )
        for table, values in copied:
            dirty = table.dirty
            for key, value in values.items():
                if dirty.get(key) is value:  # not written again since the copy
                    del dirty[key]
        took = time.perf_counter() - started
        if self._on_taken is not None:
            self._on_taken(seq, written, took)
        log.info("checkpoint at ledger seq %d: %d changed values in %.2f s", seq, written, took)
        return True

    def _still_sole_owner(self, generation: int) -> bool:
        """Whether this worker has served every partition alone since the checkpoint began (the same generation of
        the group). A rebalance in between may have let another worker write changelog records that the offsets
        read count as covered but that this worker's values lack: a restore would then skip them for good."""
        if self._sole_owner() == generation:
            return True
        log.info("checkpoint abandoned: the group rebalanced while it was taken")
        return False

    async def close(self) -> None:
        await self._ends.close()

    async def _relay_cursor(self) -> int:
        async with self.sessions() as session:
            return await relay_cursor(session)

    async def _folded_up_to(self, ends: Mapping[TopicPartition, int]) -> bool:
        """Wait until the agents' completed batches reach `ends` on every partition."""
        deadline = time.monotonic() + CAUGHT_UP_WITHIN
        while True:
            folded = self._folded()
            if all(folded.get((tp.topic, tp.partition), 0) >= end for tp, end in ends.items()):
                return True
            if time.monotonic() > deadline:
                log.info("checkpoint skipped: the agents did not fold up to the topics' ends within %.0f s",
                         CAUGHT_UP_WITHIN)
                return False
            await asyncio.sleep(0.05)

    def _changelog_tps(self, table: StateTable) -> list[TopicPartition]:
        return [TopicPartition(table.changelog_topic, p) for p in range(self._settings.partitions)]


DECODE_CHUNK = 5_000
"""Checkpointed values decoded between two turns of the event loop."""


async def _decoded(table: StateTable, rows: Sequence[tuple[str, int, bytes]]) -> dict[int, dict[str, Any]]:
    """Checkpoint rows `(key, partition, value)` decoded, by partition; the event loop gets a turn every
    DECODE_CHUNK rows (a read-ahead runs while the worker joins its group)."""
    decode = table.decode
    by_partition: dict[int, dict[str, Any]] = {}
    for start in range(0, len(rows), DECODE_CHUNK):
        # Every value decoded is kept (services/common/bulk.py). A chunk at a time, so the collector is never
        # paused while other tasks run (garbage they made would be frozen with the values).
        with long_lived():
            for key, partition, raw in rows[start : start + DECODE_CHUNK]:
                by_partition.setdefault(partition, {})[key] = decode(raw)
        await asyncio.sleep(0)
    return by_partition
