"""The ledger writer inserts into SQLite through the driver, formatting timestamps itself: they must be stored
as SQLAlchemy's SQLite `DateTime` stores them, or readers of the ledger would read other instants."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from services.common.models import LedgerEntry
from services.ingest.ledger import EventConflict, LedgerRow, _decide, _dedupe_within, _Submission, sqlite_stamp

MOMENTS = [
    datetime(2026, 12, 4, 19, 22, 20, 123456, tzinfo=UTC),
    datetime(2028, 2, 29, 0, 0, tzinfo=UTC),  # no microseconds: still written out
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))),  # an offset: wall-clock fields, as SQLAlchemy
    datetime(2026, 1, 1, 0, 0, 0, 1),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_stamp_is_what_sqlalchemy_stores(moment: datetime) -> None:
    for column in (LedgerEntry.__table__.c.occurred_at, LedgerEntry.__table__.c.accepted_at):
        process = column.type.dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
        assert process is not None
        assert sqlite_stamp(moment) == process(moment)


def _row(event_id: str, body_hash: str = "h") -> LedgerRow:
    return LedgerRow(event_id, "activity", "ana", "{}", body_hash, MOMENTS[0])


def test_a_group_commit_decides_each_submission_against_the_ledger_and_the_group_before_it() -> None:
    async def decide() -> None:
        fresh = _Submission([_row("a"), _row("b")])
        repeat = _Submission([_row("b"), _row("c")])  # b: a duplicate of the submission before it
        conflict = _Submission([_row("d"), _row("c", "other")])  # c with another body: the whole submission fails
        known_before = _Submission([_row("k"), _row("e")])  # k was in the ledger already
        to_insert, outcomes = _decide([fresh, repeat, conflict, known_before], {"k": "h"})
        assert [r.event_id for r in to_insert] == ["a", "b", "c", "e"]
        assert outcomes[0] == (fresh, ([_row("a"), _row("b")], 0))
        assert outcomes[1] == (repeat, ([_row("c")], 1))
        assert outcomes[2][0] is conflict and isinstance(outcomes[2][1], EventConflict)
        assert outcomes[2][1].event_ids == ["c"]
        assert outcomes[3] == (known_before, ([_row("e")], 1))

    asyncio.run(decide())


def test_repeats_inside_one_request_are_dropped_or_refused() -> None:
    assert _dedupe_within([_row("a"), _row("b")]) == [_row("a"), _row("b")]
    assert _dedupe_within([_row("a"), _row("b"), _row("a")]) == [_row("a"), _row("b")]
    with pytest.raises(EventConflict) as refused:
        _dedupe_within([_row("a"), _row("a", "other")])
    assert refused.value.event_ids == ["a"]
