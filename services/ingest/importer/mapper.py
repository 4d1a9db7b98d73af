"""Reading a CSV and mapping and validating its rows with one mapping: no I/O beyond the CSV, so tests call
`CsvMapper` directly."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from schemas.events import validate_events
from services.common.csv_cells import restore
from services.ingest.importer.mapping import ImportMapping, MappedRow, MappingError

__all__ = ["CsvMapper", "ImportRow", "read_csv"]


@dataclass
class ImportRow:
    """One CSV record and what became of it."""

    line: int
    """Line of the CSV where the record starts (the header is line 1)."""
    values: list[str]
    """The record as read, for the rejects file."""
    event: dict[str, Any] | None = None
    skipped: str | None = None
    reasons: list[str] = field(default_factory=list)
    """Why the row was rejected; empty for events and skips."""
    duplicate_of: int | None = None
    """Line of an earlier row of the file that produced the same event."""
    sent: bool = False
    """Ingest answered 202 for the batch that held the row's event."""

    @property
    def rejected(self) -> bool:
        return bool(self.reasons)


def read_csv(stream: IO[str], *, delimiter: str = ",") -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (start line, values); blank lines are left out. A cell a spreadsheet would
    run as a formula, written with a leading `'` (services/common/csv_cells.py), is read without it."""
    reader = csv.reader(stream, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise ValueError("the file is empty; a CSV import needs a header line naming the columns")
    header = [restore(name.strip()) for name in header]

    def records() -> Iterator[tuple[int, list[str]]]:
        line = reader.line_num + 1
        for values in reader:
            if any(value.strip() for value in values):
                yield line, [restore(value) for value in values]
            line = reader.line_num + 1

    return header, records()


class CsvMapper:
    """Maps and validates the rows of one CSV with one mapping; pure except for what callers pass in."""

    def __init__(self, mapping: ImportMapping, header: list[str]) -> None:
        if mapping.type is None:
            raise ValueError("the mapping has no type; call for_type() first")
        mapping.check_columns(header)
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise MappingError(mapping.origin, [f"the CSV names the columns {', '.join(duplicated)} more than once"])
        self.mapping = mapping
        self.header = header
        self._seen: dict[str, tuple[int, bytes]] = {}

    def map_batch(self, records: Iterable[tuple[int, list[str]]]) -> list[ImportRow]:
        """Map and validate records; events that repeat an earlier row's event are marked duplicate_of."""
        rows = [ImportRow(line, values) for line, values in records]
        pending: list[tuple[ImportRow, MappedRow]] = []
        for row in rows:
            if len(row.values) != len(self.header):
                row.reasons.append(
                    f"line {row.line} has {len(row.values)} values but the header names {len(self.header)} columns"
                )
                continue
            mapped = self.mapping.map_row(dict(zip(self.header, (value.strip() for value in row.values), strict=True)))
            if mapped.skipped is not None:
                row.skipped = mapped.skipped
            elif mapped.problems:
                row.reasons.extend(mapped.problems)
            else:
                assert mapped.event is not None
                row.event = mapped.event
                pending.append((row, mapped))
        self._validate(pending)
        self._mark_repeats(row for row, _ in pending)
        return rows

    def _validate(self, pending: list[tuple[ImportRow, MappedRow]]) -> None:
        _, problems = validate_events([row.event for row, _ in pending])
        for problem in problems:
            if problem.index < 0:  # cannot happen for a list of dicts; keep the row rather than lose it
                continue
            row, mapped = pending[problem.index]
            message = problem.message
            note = mapped.why_empty.get(problem.field)
            if note and "is required" in message:
                message += f" ({note})"
            row.reasons.append(message)
        for row, _ in pending:
            if row.reasons:
                row.event = None

    def _mark_repeats(self, rows: Iterable[ImportRow]) -> None:
        for row in rows:
            if row.event is None:
                continue
            event_id = str(row.event["event_id"])
            body = orjson.dumps(row.event, option=orjson.OPT_SORT_KEYS)
            earlier = self._seen.get(event_id)
            if earlier is None:
                self._seen[event_id] = (row.line, body)
            elif earlier[1] == body:
                row.duplicate_of = earlier[0]
            else:
                row.event = None
                row.reasons.append(
                    f"event_id {event_id} was already produced by line {earlier[0]} with different data; "
                    "make the event_id template tell these rows apart"
                )
