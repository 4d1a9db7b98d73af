"""The scoring checkpoint in SQL: each scoring table's values as of the last checkpoint, and the mark that says
what they reflect (every ledger event up to `seq`; per table, the changelog offsets they cover).

Scoring writes and restores it (services/scoring/checkpoint.py); whoever brings up an empty broker
(`salespulse up`, its supervisor, `salespulse replay`) replays only the ledger after the mark's `seq` and
voids its changelog offsets, which referred to the broker that is gone. So a restart costs what changed since
the last checkpoint, not the whole history (docs/decisions.md, "Checkpointed restart").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.common import db
from services.common.db import Sessions
from services.common.models import ScoringCheckpoint, ScoringCheckpointMark
from services.common.settings import Settings

__all__ = [
    "CheckpointMark",
    "load_values",
    "read_mark",
    "replay_start_for_empty_broker",
    "write_checkpoint",
]

MARK = "scoring"
CHUNK = 500


@dataclass(frozen=True)
class CheckpointMark:
    seq: int
    """Every ledger event with a sequence number up to this one is folded into the checkpoint."""
    partitions: int
    offsets: dict[str, dict[int, int]] | None
    """Per table, per changelog partition: the last offset whose value the checkpoint covers (-1: none; a
    restore reads the changelog after it); None when those offsets referred to a broker that is gone."""
    taken_ms: int


async def read_mark(sessions: Sessions) -> CheckpointMark | None:
    async with sessions() as session:
        row = await session.get(ScoringCheckpointMark, MARK)
    if row is None:
        return None
    offsets = None
    if row.offsets is not None:
        offsets = {table: {int(p): int(o) for p, o in parts.items()}
                   for table, parts in orjson.loads(row.offsets).items()}
    return CheckpointMark(row.seq, row.partitions, offsets, row.taken_ms)


async def replay_start_for_empty_broker(settings: Settings) -> int:
    """The ledger sequence after which events must be replayed into a broker that came back empty: the
    checkpoint's, whose changelog offsets are voided here (the changelogs they point into are gone, so a
    restore reads the new broker's whole changelog on top of the checkpoint). 0 (replay everything) without a
    checkpoint, or with one taken for another partition count."""
    engine = db.create_engine(settings.db_url)
    try:
        sessions = db.sessionmaker(engine)
        mark = await read_mark(sessions)
        if mark is None:
            return 0
        if mark.partitions != settings.partitions:
            async with sessions() as session, session.begin():
                await session.execute(delete(ScoringCheckpoint))
                await session.execute(delete(ScoringCheckpointMark))
            return 0
        async with sessions() as session, session.begin():
            await session.execute(
                update(ScoringCheckpointMark).where(ScoringCheckpointMark.name == MARK).values(offsets=None)
            )
        return mark.seq
    finally:
        await engine.dispose()


async def load_values(sessions: Sessions, table: str, partitions: Iterable[int]) -> list[tuple[str, int, bytes]]:
    """The checkpointed values of `table`'s keys in `partitions`: `(key, partition, value)`."""
    wanted = sorted(partitions)
    async with sessions() as session:
        rows = await session.execute(
            select(ScoringCheckpoint.key, ScoringCheckpoint.partition, ScoringCheckpoint.value).where(
                ScoringCheckpoint.table_name == table, ScoringCheckpoint.partition.in_(wanted)
            )
        )
        return [(key, partition, bytes(value)) for key, partition, value in rows]


async def write_checkpoint(
    sessions: Sessions,
    values: Sequence[tuple[str, Iterable[tuple[str, int, bytes | None]]]],
    *,
    seq: int,
    partitions: int,
    offsets: Mapping[str, Mapping[int, int]],
    taken_ms: int,
) -> int:
    """Upsert each table's changed values `(key, partition, value)` (a None value deletes the key's row), table
    by table in the order given, then move the mark. Returns the rows written or deleted.

    Values go in short transactions of CHUNK rows, so a big checkpoint never holds the database's write lock
    for long (on SQLite ingest's ledger commits wait for it). That is safe because the mark moves last and
    each value is newer than the one it replaces: a crash in between leaves newer values under the old mark,
    and replaying from the old mark re-applies events those values already hold, which their own sequence
    marks recognise — provided a table whose values imply work in another (a deal value implies that its
    credits are in the rep values) comes after that other table in `values`."""
    written = 0
    for table, items in values:
        chunk: list[dict[str, object]] = []
        gone: list[str] = []
        for key, partition, value in items:
            if value is None:
                gone.append(key)
                continue
            chunk.append({"table_name": table, "key": key, "partition": partition, "value": value})
            if len(chunk) >= CHUNK:
                written += await _upsert(sessions, chunk)
                chunk = []
        if chunk:
            written += await _upsert(sessions, chunk)
        for start in range(0, len(gone), CHUNK):
            written += await _delete(sessions, table, gone[start : start + CHUNK])
    encoded = orjson.dumps({t: {str(p): o for p, o in parts.items()} for t, parts in offsets.items()}).decode()
    mark = {"seq": seq, "partitions": partitions, "offsets": encoded, "taken_ms": taken_ms}
    async with sessions() as session, session.begin():
        if db.rows_matched(await session.execute(
            update(ScoringCheckpointMark).where(ScoringCheckpointMark.name == MARK).values(**mark)
        )) == 0:
            session.add(ScoringCheckpointMark(name=MARK, **mark))
    return written


async def _delete(sessions: Sessions, table: str, keys: list[str]) -> int:
    async with sessions() as session, session.begin():
        await session.execute(
            delete(ScoringCheckpoint).where(ScoringCheckpoint.table_name == table, ScoringCheckpoint.key.in_(keys))
        )
    return len(keys)


async def _upsert(sessions: Sessions, rows: list[dict[str, object]]) -> int:
    async with sessions() as session, session.begin():
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(ScoringCheckpoint).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[ScoringCheckpoint.table_name, ScoringCheckpoint.key],
            set_={"value": statement.excluded.value, "partition": statement.excluded.partition},
        )
        await session.execute(statement)
    return len(rows)
