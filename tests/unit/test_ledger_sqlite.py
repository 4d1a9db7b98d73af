"""The ledger writer inserts into SQLite through the driver, formatting timestamps itself: they must be stored
as SQLAlchemy's SQLite `DateTime` stores them, or readers of the ledger would read other instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from services.common.models import LedgerEntry
from services.ingest.ledger import sqlite_stamp

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
