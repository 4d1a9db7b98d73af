"""Faust tables whose writes an agent waits for.

An agent writes a whole batch with `await table.write(values)`: the values go into the in-memory store and,
as ordinary Faust changelog records (same key and value bytes Faust itself would send), to the changelog
topic; `write` returns once the broker holds them. The agents acknowledge their events only after that, so
a committed offset never runs ahead of the table state it produced. (Faust's own path buffers changelog
records and its pre-commit flush gives up after 0.1 s without progress, so under load an offset could be
committed while the state behind it was still in the buffer; a crash then lost the state for good.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import faust
from faust.serializers import codecs

from services.common.topics import partition_for
from services.scoring.faust_internals import CodecTable, key_partitions, memory_store
from services.scoring.publisher import Publisher

__all__ = ["StateTable", "state_table"]


class StateTable:
    """A str-keyed Faust table kept in memory, its values domain objects, encoded by `encode` on the changelog."""

    def __init__(
        self,
        table: Any,
        encode: Callable[[Any], bytes],
        publisher: Publisher,
        *,
        decode: Callable[[bytes], Any],
        progress: Callable[[Any], int],
        partitions: int,
        partition_key: Callable[[str], str] | None = None,
    ) -> None:
        self.table = table
        self.partitions = partitions
        self._partition_key = partition_key
        self._record_key: Callable[[bytes], bytes] | None = (
            None if partition_key is None else lambda key: partition_key(key.decode()).encode()
        )
        """What the publisher chooses a changelog record's partition by (None: its key)."""
        self.name: str = table.name
        self._store = memory_store(table)
        self._encode = encode
        self.decode = decode
        self.progress = progress
        self._publisher = publisher
        self.changelog_topic: str = table.changelog_topic.get_topic_name()
        self.dirty: dict[str, bytes | None] = {}
        """Every key written, deleted (None) or restored from the changelog since the last checkpoint, with its
        encoded value."""
        table.on_restored = self._restored

    def _restored(self, events: list[Any]) -> None:
        dirty = self.dirty
        for event in events:
            dirty[event.key] = event.message.value

    def partition_of(self, key: str) -> int:
        """The changelog partition of `key`: its source partition (the rep's, for a key that names a rep)."""
        return partition_for(key if self._partition_key is None else self._partition_key(key), self.partitions)

    def load(self, partitions: Mapping[int, Mapping[str, Any]]) -> int:
        """Put checkpointed values (by changelog partition) into the store where they are ahead of what it
        holds; returns how many."""
        store, progress = self._store, self.progress
        keys = key_partitions(self.table)
        loaded = 0
        for partition, values in partitions.items():
            for key, value in values.items():
                held = store.get(key)
                if held is None or progress(value) > progress(held):
                    store[key] = value
                    keys[key] = partition
                    loaded += 1
        return loaded

    def get(self, key: str) -> Any:
        return self._store.get(key)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._store.items())

    def __len__(self) -> int:
        return len(self._store)

    async def write(self, values: Mapping[str, Any], encoded: Mapping[str, bytes] | None = None) -> None:
        """Store `values` and wait until their changelog records are acknowledged.

        `encoded` may hold values already encoded by the caller (the same bytes `encode` would give)."""
        if not values:
            return
        encode, dirty = self._encode, self.dirty
        records = []
        for key, value in values.items():
            raw = encoded.get(key) if encoded is not None else None
            if raw is None:
                raw = encode(value)
            records.append((key.encode(), raw))
            dirty[key] = raw
        self._store.update(values)
        await self._publisher.publish(self.changelog_topic, records, partition_key=self._record_key)

    async def delete(self, keys: Iterable[str]) -> None:
        """Remove `keys` and wait until their tombstones are acknowledged."""
        records: list[tuple[bytes, bytes | None]] = []
        store, dirty = self._store, self.dirty
        for key in keys:
            store.pop(key, None)
            dirty[key] = None
            records.append((key.encode(), None))
        if records:
            await self._publisher.publish(self.changelog_topic, records, partition_key=self._record_key)


def state_table(
    app: faust.App,
    name: str,
    codec: str,
    partitions: int,
    publisher: Publisher,
    progress: Callable[[Any], int],
    partition_key: Callable[[str], str] | None = None,
) -> StateTable:
    """A Faust table `name` (memory store, changelog co-partitioned with the source topics by key) wrapped
    for batched, acknowledged writes; `codec` is a registered Faust codec for its values, and `progress(value)`
    grows with every change of a key's value (a restore never moves a key back).

    A key's changelog partition is Kafka's default partition for the key (or for `partition_key(key)`), the
    same as its source topic's, so restores put each key on the worker that owns its source partition (the
    agents write the changelog themselves; `use_partitioner` says the same to Faust)."""
    table = app.tables.add(
        CodecTable(
            app,
            codec=codec,
            progress=progress,
            name=name,
            default=None,
            key_type=str,
            use_partitioner=True,
            partitions=partitions,
            beacon=app.tables.beacon,
        )
    )
    topic: Any = table.changelog_topic
    if (topic.key_serializer, topic.value_serializer) != ("raw", codec):
        raise RuntimeError(
            f"changelog of table {name} would decode with {topic.key_serializer}/{topic.value_serializer}"
        )
    encoder = codecs.get_codec(codec)
    return StateTable(
        table,
        encoder.dumps,
        publisher,
        decode=encoder.loads,
        progress=progress,
        partitions=partitions,
        partition_key=partition_key,
    )
