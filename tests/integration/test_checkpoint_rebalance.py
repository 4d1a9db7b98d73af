"""A checkpoint is taken only by a worker that serves every partition alone from its first step to its copies.

A checkpoint reads the changelogs' ends, then copies the values written since the last one, and its mark says a
restore may skip every changelog record up to those ends. A rebalance in between (a second worker joining while a
lone worker's checkpoint waits for its agents) can let the other worker write records the ends count as covered
but the copied values lack: a later restore would skip them for good. So a checkpoint whose group generation
changed before a copy is given up, and nothing of it is written.

Real broker (Tansu) and real SQL (SQLite and PostgreSQL, migrated); the tables are stand-ins holding encoded
values as the agents leave them in `StateTable.dirty`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common import checkpoints, db
from services.common.settings import Settings
from services.scoring.checkpoint import Checkpointer

pytestmark = pytest.mark.integration

PARTITIONS = 2


class Table:
    """The parts of services.scoring.tables.StateTable a checkpoint reads: name, changelog topic, dirty values."""

    def __init__(self, prefix: str, name: str) -> None:
        self.name = name
        self.changelog_topic = f"{prefix}{name}-changelog"
        self.table = type("FaustTable", (), {})()  # the checkpointer sets its restore_base
        self.dirty: dict[str, bytes | None] = {f"{name}-{n}": orjson.dumps({"v": n}) for n in range(4)}

    def partition_of(self, key: str) -> int:
        return int(key.rsplit("-", 1)[1]) % PARTITIONS


def generations(*values: int) -> Callable[[], int | None]:
    """The group generation as the checkpoint sees it at each look (the last one repeated)."""
    seen: Iterator[int] = iter(values)
    last = values[-1]

    def look() -> int | None:
        return next(seen, last)

    return look


async def make_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:  # a few records in every partition: the ends are asked of the broker, not all zero
        for name in names:
            for partition in range(PARTITIONS):
                for n in range(3):
                    await producer.send_and_wait(name, b"x", key=str(n).encode(), partition=partition)
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("looks", "taken"),
    [
        ((7,), True),  # one generation throughout: taken
        ((7, 8), False),  # rebalanced before the deal table's values are copied
        ((7, 7, 8), False),  # rebalanced before the rep tables' values are copied
    ],
)
def test_a_checkpoint_is_given_up_when_the_group_rebalances_while_it_is_taken(
    broker: str, database_url: str, looks: tuple[int, ...], taken: bool
) -> None:
    db.migrate(database_url)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    settings = Settings(database_url=database_url, partitions=PARTITIONS, kafka_bootstrap=broker)
    deals, days, reps = (Table(prefix, name) for name in ("deal-state", "rep-minutes", "rep-state"))
    sources = [f"{prefix}deals", f"{prefix}activities", f"{prefix}credits"]

    async def scenario() -> None:
        await make_topics(broker, [*sources, deals.changelog_topic, days.changelog_topic, reps.changelog_topic])
        checkpointer = Checkpointer(
            settings,
            deal_table=deals,  # type: ignore[arg-type]
            rep_tables=(days, reps),  # type: ignore[arg-type]
            event_topics=(sources[0], sources[1]),
            credits_topic=sources[2],
            folded=lambda: {(topic, p): 10**9 for topic in sources for p in range(PARTITIONS)},
            sole_owner=generations(*looks),
        )
        keys = sorted(reps.dirty)
        try:
            assert await checkpointer.take() is taken
        finally:
            await checkpointer.close()
        sessions = db.sessionmaker(db.create_engine(database_url))
        mark = await checkpoints.read_mark(sessions)
        stored = await checkpoints.load_values(sessions, reps.name, range(PARTITIONS))
        if taken:
            assert mark is not None
            assert mark.offsets is not None and mark.offsets[reps.name] == {0: 2, 1: 2}  # three records each
            assert sorted(key for key, _, _ in stored) == keys
            assert reps.dirty == {}  # written: nothing left for the next checkpoint
        else:
            assert mark is None
            assert stored == []
            assert len(deals.dirty) == len(reps.dirty) == 4  # still to be written by the next checkpoint

    asyncio.run(scenario())
