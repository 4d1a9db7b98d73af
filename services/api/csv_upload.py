"""CSV files sent to the admin API (FX rates, a roster of reps): UTF-8 with or without a BOM, a header naming
the columns, blank lines skipped, and each row kept with its line so errors can say where to look."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import NamedTuple

from services.common import csv_cells
from services.common.problems import Problem

__all__ = ["CsvRow", "read_upload"]


class CsvRow(NamedTuple):
    number: int
    """The row's place among the data rows, from 0."""
    line: int
    """Where the row ends in the file (the header is line 1)."""
    cells: dict[str, str] | None
    """Stripped cells by column (a `'` that guarded a formula taken off); None when the row's width is wrong."""
    width: int


def read_upload(body: bytes, columns: Sequence[str], *, required: Sequence[str] | None = None,
                max_rows: int | None = None) -> list[CsvRow]:
    """The rows of a CSV upload whose header names `required` columns (default: all of `columns`) and no column
    outside `columns`, in any order; 400 when the bytes are not UTF-8, 422 for a header that does not fit, 413
    beyond `max_rows`."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem(400, f"The CSV is not UTF-8 (byte {exc.start}); save it as UTF-8 and send it again.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    needed = list(columns if required is None else required)
    missing = [c for c in needed if c not in header]
    unknown = [c for c in header if c not in columns]
    if missing or unknown or len(set(header)) != len(header):
        optional = [c for c in columns if c not in needed]
        want = ", ".join(needed) + (f" (and optionally {', '.join(optional)})" if optional else "")
        raise Problem(
            422,
            f"The CSV's first line must name the columns {want}, in any order, each once; it has "
            f"{', '.join(header) or 'nothing'}.",
            errors=[{"index": None, "field": "header", "message": f"columns {want}"}],
        )
    rows: list[CsvRow] = []
    for values in reader:
        if not any(value.strip() for value in values):
            continue
        if max_rows is not None and len(rows) >= max_rows:
            raise Problem(413, f"The CSV has more than {max_rows:,} rows; split it.")
        cells = ({name: csv_cells.restore(value.strip()) for name, value in zip(header, values, strict=True)}
                 if len(values) == len(header) else None)
        rows.append(CsvRow(len(rows), reader.line_num, cells, len(values)))
    return rows
