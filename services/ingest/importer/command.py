"""`salespulse import` itself: reads the CSV in batches through the mapper and the sender, writes the rejects
file, draws the progress line and prints the summary; `run_import` returns the exit code."""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import httpx

from services.common.csv_cells import neutralise
from services.ingest.importer.exit_codes import EXIT_REJECTED, EXIT_USAGE
from services.ingest.importer.mapper import CsvMapper, ImportRow, read_csv
from services.ingest.importer.mapping import EventType, MappingError, load_mapping
from services.ingest.importer.sender import FatalImportError, IngestSender, IngestUnreachable, Tally

__all__ = ["MAX_BATCH", "ImportOptions", "ImportProgress", "default_rejects_path", "run_import"]

MAX_BATCH: Final = 10_000
"""The most events ingest takes in one request (CONTRACT §6)."""


class ImportProgress:
    """A one-line progress bar on a terminal; an occasional plain line otherwise (logs, CI)."""

    def __init__(
        self, total: int | None, stream: IO[str], *, label: str, interactive: bool | None = None, unit: str = "rows"
    ) -> None:
        self.total = total
        """None: not known (a CRM that does not say how many records there are)."""
        self.unit = unit
        self.stream = stream
        self.label = label
        self.interactive = stream.isatty() if interactive is None else interactive
        self.began = time.monotonic()
        self.done = 0
        self._last = self.began if not self.interactive else 0.0

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self._last >= (0.1 if self.interactive else 5.0):
            self._last = now
            self._show()

    def note(self, message: str) -> None:
        """A message on its own line; on a terminal the bar is redrawn below it."""
        self.stream.write(("\r\x1b[K" if self.interactive else "") + message + "\n")
        if self.interactive and self.done:
            self.stream.write(self.line())
        self.stream.flush()

    def finish(self) -> None:
        self._show()
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.began, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            return f"{self.label} {self.done:,} {self.unit} · {rate:,.0f} {self.unit}/s"
        share = self.done / self.total if self.total else 1.0
        left = max(0, self.total - self.done) / rate if rate > 0 else None
        width = 24
        filled = round(width * min(share, 1.0))
        eta = "--:--" if left is None else _duration(left)
        return (
            f"{self.label} [{'#' * filled}{'-' * (width - filled)}] {self.done:,}/{self.total:,} {self.unit} "
            f"{min(share, 1.0):4.0%} · {rate:,.0f} {self.unit}/s · ETA {eta}"
        )

    def _show(self) -> None:
        if self.interactive:
            self.stream.write("\r\x1b[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


@dataclass(frozen=True)
class ImportOptions:
    """The arguments of `salespulse import`."""

    file: Path
    type: EventType
    mapping: Path
    ingest_url: str | None = None
    """Default: http://127.0.0.1:$SALESPULSE_INGEST_PORT (8001)."""
    key: str | None = None
    """Default: $SALESPULSE_API_KEY, $SALESPULSE_ADMIN_KEY, or admin.key in $SALESPULSE_DATA_DIR."""
    rejects: Path | None = None
    """Default: FILE with .csv replaced by .rejects.csv."""
    batch: int = 1_000
    dry_run: bool = False


def default_rejects_path(file: Path) -> Path:
    """sales.csv -> sales.rejects.csv, next to the input."""
    if file.suffix.lower() == ".csv":
        return file.with_name(file.stem + ".rejects.csv")
    return file.with_name(file.name + ".rejects.csv")


def api_key(explicit: str | None, data_dir: Path) -> str | None:
    """The key a CLI command sends: --key, $SALESPULSE_API_KEY, $SALESPULSE_ADMIN_KEY, or the data dir's admin.key."""
    for key in (explicit, os.environ.get("SALESPULSE_API_KEY"), os.environ.get("SALESPULSE_ADMIN_KEY")):
        if key:
            return key
    path = data_dir / "admin.key"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _unique_name(name: str, taken: list[str]) -> str:
    while name in taken:
        name = "_" + name
    return name


class _RejectsFile:
    """The original columns plus `line` and `reason`, so a fixed file can be imported again as it is."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.stream = path.open("w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.stream)
        columns = [*header, _unique_name("line", header), _unique_name("reason", header)]
        self.writer.writerow([neutralise(name) for name in columns])
        self.width = len(header)
        self.rows = 0

    def write(self, row: ImportRow) -> None:
        # A short or long record keeps its values in the original columns, padded or cut to fit.
        values = (row.values + [""] * self.width)[: self.width]
        self.writer.writerow([neutralise(cell) for cell in (*values, str(row.line), "; ".join(row.reasons))])
        self.rows += 1

    def close(self) -> None:
        self.stream.close()


def run_import(
    options: ImportOptions,
    *,
    ingest_port: int = 8001,
    data_dir: Path = Path(".salespulse"),
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Run one import; returns the exit code (EXIT_OK, EXIT_REJECTED or EXIT_USAGE)."""
    out = out or sys.stdout
    err = err or sys.stderr

    def fail(message: str) -> int:
        err.write(f"error: {message}\n")
        return EXIT_USAGE

    if not 1 <= options.batch <= MAX_BATCH:
        return fail(f"--batch must be between 1 and {MAX_BATCH:,}, not {options.batch}")
    try:
        mapping = load_mapping(options.mapping).for_type(options.type)
    except MappingError as exc:
        err.write(exc.report() + "\n")
        return EXIT_USAGE
    except OSError as exc:
        return fail(f"cannot read the mapping {options.mapping}: {exc.strerror or exc}")

    rejects_path = options.rejects or default_rejects_path(options.file)
    if rejects_path.resolve() == options.file.resolve():
        return fail("--rejects must not be the file being imported")
    key = None
    if not options.dry_run:
        key = api_key(options.key, data_dir)
        if key is None:
            return fail(
                "no API key: pass --key, or set SALESPULSE_API_KEY or SALESPULSE_ADMIN_KEY "
                f"(or keep one in {data_dir / 'admin.key'})"
            )
    url = options.ingest_url or f"http://127.0.0.1:{ingest_port}"

    try:
        total = _count_records(options.file, mapping.delimiter)
        stream = options.file.open(encoding="utf-8-sig", newline="")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return fail(f"cannot read {options.file}: {exc}")
    with stream:
        try:
            header, records = read_csv(stream, delimiter=mapping.delimiter)
            mapper = CsvMapper(mapping, header)
        except MappingError as exc:
            err.write(exc.report() + "\n")
            return EXIT_USAGE
        except (ValueError, csv.Error) as exc:
            return fail(f"cannot read {options.file}: {exc}")
        rejects = _RejectsFile(rejects_path, header)
        try:
            return _import_rows(options, mapper, records, total, rejects, url, key, out, err, transport)
        finally:
            rejects.close()


def _count_records(path: Path, delimiter: str) -> int:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return sum(1 for values in csv.reader(stream, delimiter=delimiter) if any(v.strip() for v in values)) - 1


def _import_rows(
    options: ImportOptions,
    mapper: CsvMapper,
    records: Iterator[tuple[int, list[str]]],
    total: int,
    rejects: _RejectsFile,
    url: str,
    key: str | None,
    out: IO[str],
    err: IO[str],
    transport: httpx.BaseTransport | None,
) -> int:
    tally = Tally()
    progress = ImportProgress(max(total, 0), err, label=options.file.name)
    # Under `salespulse`, logging is at INFO: httpx would log every request on top of the progress line.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    client = httpx.Client(transport=transport, timeout=60.0)
    sender = IngestSender(client, url, key or "", tally=tally, reject=rejects.write, note=progress.note)
    fatal: str | None = None
    exit_code: int | None = None
    try:
        while True:
            chunk = list(_take(records, options.batch))
            if not chunk:
                break
            rows = mapper.map_batch(chunk)
            tally.read += len(rows)
            to_send: list[ImportRow] = []
            for row in rows:
                if row.skipped is not None:
                    tally.skipped[row.skipped] += 1
                elif row.rejected:
                    tally.rejected += 1
                    rejects.write(row)
                elif row.duplicate_of is not None:
                    tally.duplicates += 1
                else:
                    to_send.append(row)
            tally.to_send += len(to_send)
            if to_send and not options.dry_run:
                try:
                    sender.send(to_send)
                except IngestUnreachable as exc:
                    fatal = f"{exc}; stopped. Run the same command again: rows already accepted count as duplicates."
                    tally.unsent = _unsent(to_send) + max(total - tally.read, 0)
                    break
                except FatalImportError as exc:
                    fatal = str(exc)
                    exit_code = exc.exit_code
                    tally.unsent = _unsent(to_send) + max(total - tally.read, 0)
                    break
            progress.advance(len(rows))
    except csv.Error as exc:
        fatal = f"cannot read {options.file} past row {tally.read}: {exc}"
        tally.unsent = max(total - tally.read, 0)
    finally:
        client.close()
        progress.finish()
    elapsed = time.monotonic() - progress.began
    out.write(_summary(options, tally, elapsed, rejects, sender.conflicting))
    out.flush()
    if fatal:
        err.write(f"error: {fatal}\n")
    return exit_code if exit_code is not None else (EXIT_REJECTED if fatal else tally.exit_code)


def _unsent(rows: list[ImportRow]) -> int:
    return sum(1 for row in rows if row.event is not None and not row.sent)


def _take(records: Iterator[tuple[int, list[str]]], count: int) -> Iterator[tuple[int, list[str]]]:
    for _, record in zip(range(count), records, strict=False):
        yield record


def _summary(
    options: ImportOptions, tally: Tally, elapsed: float, rejects: _RejectsFile, conflicting: list[tuple[str, int]]
) -> str:
    rate = tally.read / elapsed if elapsed > 0 else 0.0
    lines = [f"{options.file}: {tally.read:,} rows read in {elapsed:.1f} s ({rate:,.0f} rows/s)"]
    if options.dry_run:
        lines.append(f"  dry run: nothing sent; {tally.to_send:,} rows would be sent")
    else:
        lines.append(f"  accepted    {tally.accepted:>8,}")
    lines.append(f"  duplicates  {tally.duplicates:>8,}")
    lines.append(f"  skipped     {sum(tally.skipped.values()):>8,}")
    for reason, count in tally.skipped.most_common():
        lines.append(f"    {count:>8,}  {reason}")
    lines.append(f"  rejected    {tally.rejected:>8,}" + (f"  -> {rejects.path}" if tally.rejected else ""))
    if tally.conflicts:
        shown = ", ".join(f"{event_id} (line {line})" for event_id, line in conflicting[:5])
        lines.append(
            f"    {tally.conflicts:>8,}  of them reuse an event_id already accepted with different data (409): "
            f"{shown}{', ...' if len(conflicting) > 5 else ''}"
        )
    if tally.unsent:
        lines.append(f"  not sent    {tally.unsent:>8,}")
    return "\n".join(lines) + "\n"
