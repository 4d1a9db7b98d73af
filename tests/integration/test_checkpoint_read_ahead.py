"""A scoring worker reads its checkpoint ahead while it joins its group; its first restore loads those values
only if no newer checkpoint was taken meanwhile (a worker starting during another's last checkpoint must not
come back with the older state), and a later restore reads the checkpoint as it is then.

Real SQL (SQLite and PostgreSQL, migrated); the tables are stand-ins holding what a restore puts into them."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from services.common import checkpoints, db
from services.common.settings import Settings
from services.scoring.checkpoint import Checkpointer

pytestmark = pytest.mark.integration

PARTITIONS = 4


class Table:
    """The parts of services.scoring.tables.StateTable a restore uses: name, decode, load."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.table = SimpleNamespace()  # the Faust table: the checkpointer sets its restore_base
        self.store: dict[str, Any] = {}
        self.partitions: dict[str, int] = {}

    decode = staticmethod(orjson.loads)

    def load(self, partitions: dict[int, dict[str, Any]]) -> int:
        for partition, values in partitions.items():
            self.store.update(values)
            self.partitions.update(dict.fromkeys(values, partition))
        return sum(map(len, partitions.values()))


async def take(settings: Settings, tables: list[Table], version: int, seq: int) -> None:
    """A checkpoint in which every key of every table holds `{"v": version}`."""
    sessions = db.sessionmaker(db.create_engine(settings.db_url))
    await checkpoints.write_checkpoint(
        sessions,
        [(t.name, [(f"{t.name}-{n}", n % PARTITIONS, orjson.dumps({"v": version})) for n in range(12)])
         for t in tables],
        seq=seq,
        partitions=PARTITIONS,
        offsets={t.name: dict.fromkeys(range(PARTITIONS), seq) for t in tables},
        taken_ms=seq,
    )


def worker(settings: Settings) -> tuple[Checkpointer, list[Table]]:
    tables = [Table("deal-state"), Table("rep-minutes"), Table("rep-state")]
    checkpointer = Checkpointer(
        settings,
        deal_table=tables[0],  # type: ignore[arg-type]
        rep_tables=tables[1:],  # type: ignore[arg-type]
        event_topics=("deals", "activities"),
        credits_topic="credits",
        folded=dict,
        sole_owner=lambda: 1,
    )
    return checkpointer, tables


def restored_how(caplog: pytest.LogCaptureFixture) -> list[str]:
    """How each restore logged so far got its values ("read ahead" or "read now")."""
    return [how for r in caplog.records for how in ("read ahead", "read now") if f"({how};" in r.getMessage()]


def test_the_first_restore_takes_the_read_ahead_unless_a_newer_checkpoint_came_since(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="salespulse.scoring.checkpoint")
    db.migrate(database_url)
    settings = Settings(database_url=database_url, partitions=PARTITIONS)

    async def scenario() -> None:
        checkpointer, tables = worker(settings)
        await take(settings, tables, version=1, seq=10)
        checkpointer.start_prefetch()
        deals, days, reps = tables
        # Partitions 0 and 1 of the rep table: exactly their keys, with their partitions, from the read-ahead.
        offsets = await checkpointer.restore(reps, {0, 1})
        assert offsets == {0: 10, 1: 10}
        assert reps.partitions == {f"rep-state-{n}": n % PARTITIONS for n in range(12) if n % PARTITIONS < 2}
        assert {value["v"] for value in reps.store.values()} == {1}
        assert restored_how(caplog) == ["read ahead"]

        # A newer checkpoint before the day table's restore: that restore reads it, not the read-ahead.
        await take(settings, tables, version=2, seq=20)
        assert await checkpointer.restore(days, {2}) == {2: 20}
        assert days.store == {f"rep-minutes-{n}": {"v": 2} for n in range(12) if n % PARTITIONS == 2}
        assert restored_how(caplog) == ["read ahead", "read now"]

        # A later restore of the rep table (new partitions after a rebalance) reads the checkpoint as it is now.
        assert await checkpointer.restore(reps, {3}) == {3: 20}
        assert {k: v["v"] for k, v in reps.store.items() if reps.partitions[k] == 3} == {
            f"rep-state-{n}": 2 for n in range(12) if n % PARTITIONS == 3
        }
        assert restored_how(caplog) == ["read ahead", "read now", "read now"]
        await checkpointer.close()

    asyncio.run(scenario())


def test_without_a_checkpoint_nothing_is_restored(database_url: str) -> None:
    db.migrate(database_url)
    settings = Settings(database_url=database_url, partitions=PARTITIONS)

    async def scenario() -> None:
        checkpointer, (deals, _, _) = worker(settings)
        checkpointer.start_prefetch()
        assert await checkpointer.restore(deals, {0, 1, 2, 3}) == {}
        assert deals.store == {}

    asyncio.run(scenario())
