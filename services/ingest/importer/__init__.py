"""`salespulse import`: turn a CSV export into deal or activity events with a YAML mapping and post them.

The mapping language (docs/import.md) is parsed into an `ImportMapping` (`mapping`); `CsvMapper` maps and
validates rows without any I/O beyond the CSV, so tests call it directly (`mapper`); `IngestSender` posts the
events in NDJSON batches (`sender`); `run_import` adds the rejects file, the progress line and the summary
(`command`).
"""

from services.ingest.importer.command import ImportOptions, run_import
from services.ingest.importer.exit_codes import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from services.ingest.importer.mapper import CsvMapper, ImportRow, read_csv
from services.ingest.importer.mapping import ImportMapping, MappedRow, MappingError, load_mapping, parse_mapping
from services.ingest.importer.sender import Tally

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "CsvMapper",
    "ImportMapping",
    "ImportOptions",
    "ImportRow",
    "MappedRow",
    "MappingError",
    "Tally",
    "load_mapping",
    "parse_mapping",
    "read_csv",
    "run_import",
]
