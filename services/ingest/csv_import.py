"""`salespulse import`: turn a CSV export into deal or activity events with a YAML mapping and post them.

The mapping language (docs/import.md) is parsed into an `ImportMapping`; `CsvMapper` maps and validates rows
without any I/O beyond the CSV, so tests call it directly. `run_import` adds the rejects file, the progress
line and the NDJSON batches to ingest.
"""

from __future__ import annotations

import csv
import enum
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from datetime import time as dt_time
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import orjson
import yaml

from schemas.events import DEFAULT_CURRENCY, ActivityEvent, DealEvent, validate_events
from schemas.suggestions import did_you_mean
from services.common.backoff import RETRY_STATUSES, Backoff, retry_after_seconds
from services.common.naming import slug

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

EXIT_OK: Final = 0
"""Every row was accepted, a duplicate, or skipped by a rule of the mapping."""
EXIT_REJECTED: Final = 1
"""Some rows were rejected (see the rejects file) or could not be sent."""
EXIT_USAGE: Final = 2
"""Bad arguments, an unreadable CSV, an invalid mapping, or a key ingest refuses."""

EventType = Literal["deal", "activity"]
EVENT_TYPES: Final[tuple[EventType, ...]] = ("deal", "activity")
MAX_BATCH: Final = 10_000
"""The most events ingest takes in one request (CONTRACT §6)."""

_MODELS: Final = {"deal": DealEvent, "activity": ActivityEvent}
_TIMESTAMP_FIELDS: Final = frozenset({"occurred_at", "closed_at"})
_INTEGER_FIELDS: Final = frozenset({"version"})
_NOT_MAPPABLE: Final = {
    "type": "type is not a field: it comes from the mapping's top-level type (or --type)",
    "splits": "splits cannot be mapped from a CSV; each deal is credited 100 % to owner_id",
}
_TOP_LEVEL_KEYS: Final = (
    "description",
    "type",
    "delimiter",
    "timezone",
    "date_format",
    "time_of_day",
    "skip",
    "reject",
    "fields",
)
_SOURCE_KEYS: Final = ("value", "column", "template", "first")
_SPEC_KEYS: Final = (*_SOURCE_KEYS, "transform", "map", "otherwise", "default")
_TIMESTAMP_KEYS: Final = ("format", "timezone", "time_of_day")
_RULE_KEYS: Final = ("when", "reason")
_TEST_KEYS: Final = ("empty", "in", "not_in", "matches")

TRANSFORMS: Final[dict[str, Callable[[str], str]]] = {
    "lower": str.lower,
    "upper": str.upper,
    "slug": slug,
    "rep_id": slug,  # the demo roster's rep id rule (services/demo/roster.py rep_id_for) is the slug of the name
}
"""Transforms usable as `{column|name}` in templates and as `transform:` on a value."""

# strptime directives that carry a time of day; a format without any of them reads a date only.
_TIME_DIRECTIVES: Final = ("%H", "%I", "%M", "%S", "%f", "%X", "%c", "%T", "%R", "%p")
_ISO_DATE: Final = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")
_TEMPLATE_TOKEN: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING: Final = _Missing.MISSING


class MappingError(Exception):
    """The mapping file (or the CSV header it is checked against) cannot be used; `problems` says why."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        super().__init__(f"{origin}: " + "; ".join(problems))
        self.origin = origin
        self.problems = problems

    def report(self) -> str:
        """One line per problem, for a terminal."""
        lines = [f"error: the mapping {self.origin} cannot be used:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class _RowProblem(Exception):
    """A row the mapping cannot turn into an event, e.g. a date that does not parse."""


def _yaml_scalar_text(value: Any, where: str, problems: list[str]) -> str | None:
    """A YAML scalar compared with CSV text; YAML 1.1 reads yes/no/on/off as booleans, which never match."""
    if isinstance(value, bool):
        problems.append(f"{where}: {value!r} is a YAML boolean; quote it (e.g. 'Yes') to compare with CSV text")
        return None
    if isinstance(value, str | int | float):
        return str(value).strip()
    problems.append(f"{where}: expected a text or a number, got {type(value).__name__}")
    return None


# --- templates and values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRef:
    """`{column|transform|...}` inside a template."""

    column: str
    """The CSV column whose value is used."""
    transforms: tuple[str, ...] = ()
    """Names from TRANSFORMS applied in order."""


@dataclass(frozen=True)
class Template:
    """Text with `{column}` references; `{{` and `}}` are literal braces."""

    parts: tuple[str | ColumnRef, ...]
    columns: tuple[str, ...] = field(init=False)
    """The columns the template names, in order."""

    def __post_init__(self) -> None:
        columns = tuple(part.column for part in self.parts if isinstance(part, ColumnRef))
        object.__setattr__(self, "columns", columns)

    def render(self, row: dict[str, str], why_empty: list[str]) -> str | None:
        """The text for one row; None (and the reason in `why_empty`) when a referenced column is empty."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = row.get(part.column, "")
            for name in part.transforms:
                value = TRANSFORMS[name](value)
            if not value:
                why_empty.append(f"column {part.column} is empty")
                return None
            out.append(value)
        return "".join(out)


def _parse_template(text: str, where: str, problems: list[str]) -> Template:
    parts: list[str | ColumnRef] = []
    position = 0
    for match in _TEMPLATE_TOKEN.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif match.group(1) is None:
            problems.append(f"{where}: unbalanced {token!r} in {text!r}; write {token * 2} for a literal brace")
        else:
            name, *transforms = (piece.strip() for piece in match.group(1).split("|"))
            if not name:
                problems.append(f"{where}: empty {{}} in {text!r}; name a column, e.g. {{opportunity_id}}")
                continue
            for transform in transforms:
                if transform not in TRANSFORMS:
                    problems.append(
                        f"{where}: unknown transform {transform!r}{did_you_mean(transform, TRANSFORMS)}; "
                        f"known: {', '.join(TRANSFORMS)}"
                    )
            parts.append(ColumnRef(name, tuple(transforms)))
    if position < len(text):
        parts.append(text[position:])
    merged: list[str | ColumnRef] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return Template(tuple(merged))


@dataclass(frozen=True)
class Constant:
    """A value written in the mapping; used as it is."""

    value: Any


@dataclass(frozen=True)
class First:
    """The first of several values that is not empty (`first: [close_date, engage_date]`)."""

    options: tuple[ValueSpec, ...]


@dataclass(frozen=True)
class ValueSpec:
    """How one value is computed from a row: a source, then transforms, a value map and a default."""

    source: Constant | Template | First
    transforms: tuple[str, ...] = ()
    value_map: dict[str, Any] | None = None
    """CSV text -> event value; values the map does not list take `otherwise` or reject the row."""
    otherwise: Any = MISSING
    default: Any = MISSING
    """Used when the source is empty; without it an empty value leaves the field out."""

    def evaluate(self, row: dict[str, str], why_empty: list[str]) -> tuple[Any, bool]:
        """(value, from_csv): value None when empty; from_csv when it is CSV text still to be converted."""
        source = self.source
        value: Any
        if isinstance(source, Constant):
            value, from_csv = source.value, False
        elif isinstance(source, Template):
            value, from_csv = source.render(row, why_empty), bool(source.columns)
        else:
            value, from_csv = None, False
            for option in source.options:
                value, from_csv = option.evaluate(row, why_empty)
                if value is not None:
                    break
        if value is None or value == "":
            return (None, False) if self.default is MISSING else (self.default, False)
        if isinstance(value, str):
            for name in self.transforms:
                value = TRANSFORMS[name](value)
        if self.value_map is None:
            return value, from_csv
        key = str(value).strip()
        if key in self.value_map:
            return self.value_map[key], False
        if self.otherwise is not MISSING:
            return self.otherwise, False
        known = ", ".join(self.value_map)
        raise _RowProblem(f"{value!r} is not in the value map (known: {known})")


@dataclass(frozen=True)
class TimestampFormat:
    """How CSV text becomes an RFC 3339 timestamp with an offset."""

    formats: tuple[str, ...] = ("iso",)
    """`iso` (ISO 8601 date or date-time), `unix` (epoch seconds), or strptime formats, tried in order."""
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    """The zone of naive values."""
    time_of_day: dt_time = dt_time(0, 0)
    """The time given to date-only values."""

    def parse(self, text: str) -> str:
        """The RFC 3339 text for CSV text; exports repeat dates a lot, so answers are cached."""
        return _parse_timestamp(text, self)


@lru_cache(maxsize=65_536)
def _parse_timestamp(text: str, how: TimestampFormat) -> str:
    moment: datetime | None = None
    date_only = False
    for fmt in how.formats:
        try:
            if fmt == "iso":
                moment = datetime.fromisoformat(text)
                date_only = bool(_ISO_DATE.match(text))
            elif fmt == "unix":
                moment = datetime.fromtimestamp(float(text), UTC)
            else:
                moment = datetime.strptime(text, fmt)
                date_only = not any(directive in fmt for directive in _TIME_DIRECTIVES)
        except (ValueError, OverflowError, OSError):
            continue
        break
    if moment is None:
        expected = " or ".join(_format_name(fmt) for fmt in how.formats)
        raise _RowProblem(f"{text!r} is not a date/time in the format {expected}")
    if date_only:
        moment = datetime.combine(moment.date(), how.time_of_day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=how.zone)
    return moment.isoformat()


def _format_name(fmt: str) -> str:
    return {"iso": "ISO 8601 (2017-03-01 or 2017-03-01T09:30:00+01:00)", "unix": "unix seconds"}.get(fmt, fmt)


@dataclass(frozen=True)
class FieldRule:
    """One event field: its value spec and, for timestamps and integers, the conversion of CSV text."""

    name: str
    spec: ValueSpec
    timestamp: TimestampFormat | None = None

    def value(self, row: dict[str, str], why_empty: list[str]) -> Any:
        try:
            value, from_csv = self.spec.evaluate(row, why_empty)
            if value is None or not from_csv:
                return value
            if self.timestamp is not None:
                return self.timestamp.parse(value)
            if self.name in _INTEGER_FIELDS:
                try:
                    return int(value)
                except ValueError:
                    raise _RowProblem(f"{value!r} is not a whole number") from None
            return value
        except _RowProblem as problem:
            raise _RowProblem(f"{self.name}: {problem}") from None


# --- row rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One column test of a `when:` condition."""

    column: str
    kind: Literal["in", "not_in", "empty", "matches"]
    values: tuple[str, ...] = ()
    empty: bool = True
    pattern: re.Pattern[str] | None = None

    def holds(self, row: dict[str, str]) -> bool:
        value = row.get(self.column, "")
        if self.kind == "in":
            return value in self.values
        if self.kind == "not_in":
            return value not in self.values
        if self.kind == "empty":
            return (value == "") == self.empty
        assert self.pattern is not None
        return self.pattern.search(value) is not None

    def describe(self) -> str:
        if self.kind == "empty":
            return f"{self.column} is {'empty' if self.empty else 'not empty'}"
        if self.kind == "matches":
            assert self.pattern is not None
            return f"{self.column} matches {self.pattern.pattern!r}"
        shown = " or ".join(repr(value) if value else "empty" for value in self.values)
        return f"{self.column} is {'not ' if self.kind == 'not_in' else ''}{shown}"


@dataclass(frozen=True)
class RowRule:
    """`skip:` or `reject:` entry: rows for which every test holds are skipped or rejected with `reason`."""

    tests: tuple[Condition, ...]
    reason: str

    def applies(self, row: dict[str, str]) -> bool:
        return all(test.holds(row) for test in self.tests)


# --- the mapping ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedRow:
    """What the mapping makes of one row, before the event contract is checked."""

    event: dict[str, Any] | None = None
    skipped: str | None = None
    """The reason of the skip rule that matched."""
    problems: tuple[str, ...] = ()
    """Why the row cannot become an event (a reject rule, an unparseable date, an unmapped value)."""
    why_empty: dict[str, str] = field(default_factory=dict)
    """Field -> why the mapping left it out, to explain a "... is required" from validation."""


@dataclass(frozen=True)
class ImportMapping:
    """A parsed, checked mapping file."""

    origin: str
    type: EventType | None
    fields: tuple[FieldRule, ...]
    skip: tuple[RowRule, ...] = ()
    reject: tuple[RowRule, ...] = ()
    delimiter: str = ","
    references: tuple[tuple[str, str], ...] = ()
    """(column, where in the mapping) for every column the mapping names."""
    constants: tuple[tuple[str, str], ...] = ()
    """(text, where) of constant texts, to catch `owner_id: sales_agent` meant as a column."""

    def check_columns(self, header: list[str]) -> None:
        """Raise MappingError naming every column the mapping uses that the CSV does not have."""
        columns = set(header)
        problems = [
            f"{where}: column {column!r} is not in the CSV{did_you_mean(column, header)}"
            for column, where in self.references
            if column not in columns
        ]
        problems += [
            f"{where}: {text!r} is a constant text but also a column name; write '{{{text}}}' for the "
            f"column's value, or {{value: {text}}} to keep the text"
            for text, where in self.constants
            if text in columns
        ]
        if any("is not in the CSV" in problem for problem in problems):
            problems.append("the CSV's columns are: " + ", ".join(header))
        if problems:
            raise MappingError(self.origin, problems)

    def for_type(self, event_type: str) -> ImportMapping:
        """This mapping for --type `event_type`; MappingError when it does not fit events of that type."""
        if self.type is not None and self.type != event_type:
            raise MappingError(
                self.origin, [f"the mapping is for {self.type} events, but --type asks for {event_type} events"]
            )
        if self.type is not None:
            return self
        problems = _field_problems(event_type, [rule.name for rule in self.fields])
        if problems:
            raise MappingError(self.origin, problems)
        return replace(self, type=event_type)

    def map_row(self, row: dict[str, str]) -> MappedRow:
        """The event dict for one row (values keyed by column), or why it is skipped or rejected."""
        if self.type is None:
            raise ValueError("the mapping has no type; call for_type() first")
        for rule in self.skip:
            if rule.applies(row):
                return MappedRow(skipped=rule.reason)
        problems = [rule.reason for rule in self.reject if rule.applies(row)]
        if problems:
            return MappedRow(problems=tuple(problems))
        event: dict[str, Any] = {"type": self.type}
        why_empty: dict[str, str] = {}
        for rule in self.fields:
            notes: list[str] = []
            try:
                value = rule.value(row, notes)
            except _RowProblem as problem:
                problems.append(str(problem))
                continue
            if value is None:
                if notes:
                    why_empty[rule.name] = "; ".join(notes)
                continue
            event[rule.name] = value
        if problems:
            return MappedRow(problems=tuple(problems))
        return MappedRow(event=event, why_empty=why_empty)


def load_mapping(path: str | Path) -> ImportMapping:
    """Read and check a mapping file; MappingError says what is wrong, OSError if it cannot be read."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(path.name, [f"not valid YAML: {exc}"]) from exc
    return parse_mapping(document, origin=path.name)


def parse_mapping(document: Any, *, origin: str = "mapping") -> ImportMapping:
    """Check a mapping document (the YAML, already loaded) and build the mapping; MappingError if invalid."""
    problems: list[str] = []
    if not isinstance(document, dict):
        raise MappingError(origin, ["the mapping must be a YAML mapping with at least a fields: section"])
    for key in document:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(
                f"unknown key {key!r}{did_you_mean(str(key), _TOP_LEVEL_KEYS)}; known: {', '.join(_TOP_LEVEL_KEYS)}"
            )

    event_type = document.get("type")
    if event_type is not None and event_type not in EVENT_TYPES:
        problems.append(f"type: must be deal or activity, not {event_type!r}")
        event_type = None

    delimiter = document.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        problems.append(f"delimiter: must be one character, e.g. ',' or ';', not {delimiter!r}")
        delimiter = ","

    defaults = TimestampFormat(
        formats=_formats(document.get("date_format", "iso"), "date_format", problems),
        zone=_zone(document.get("timezone", "UTC"), "timezone", problems),
        time_of_day=_time_of_day(document.get("time_of_day", "00:00"), "time_of_day", problems),
    )

    references: list[tuple[str, str]] = []
    constants: list[tuple[str, str]] = []
    rules: list[FieldRule] = []
    fields_doc = document.get("fields")
    if not isinstance(fields_doc, dict) or not fields_doc:
        problems.append("fields: required, a mapping of event field -> value, e.g. deal_id: '{opportunity_id}'")
        fields_doc = {}
    names = [str(name) for name in fields_doc]
    problems += _field_problems(event_type, names)
    for name, raw in fields_doc.items():
        where = f"fields.{name}"
        spec = _value_spec(raw, where, problems, references, constants, allow=_TIMESTAMP_KEYS)
        timestamp = None
        if isinstance(raw, dict):
            extra = [key for key in _TIMESTAMP_KEYS if key in raw]
            if name in _TIMESTAMP_FIELDS:
                timestamp = TimestampFormat(
                    formats=_formats(raw["format"], f"{where}.format", problems)
                    if "format" in raw
                    else defaults.formats,
                    zone=_zone(raw["timezone"], f"{where}.timezone", problems) if "timezone" in raw else defaults.zone,
                    time_of_day=(
                        _time_of_day(raw["time_of_day"], f"{where}.time_of_day", problems)
                        if "time_of_day" in raw
                        else defaults.time_of_day
                    ),
                )
            elif extra:
                problems.append(f"{where}: {', '.join(extra)} only apply to occurred_at and closed_at")
        elif name in _TIMESTAMP_FIELDS:
            timestamp = defaults
        if name in _INTEGER_FIELDS:
            _check_integer_constants(spec, where, problems)
        if spec is not None:
            rules.append(FieldRule(str(name), spec, timestamp))

    skip = _row_rules(document.get("skip"), "skip", problems, references)
    reject = _row_rules(document.get("reject"), "reject", problems, references)
    if problems:
        raise MappingError(origin, problems)
    return ImportMapping(
        origin=origin,
        type=event_type,
        fields=tuple(rules),
        skip=skip,
        reject=reject,
        delimiter=delimiter,
        references=tuple(references),
        constants=tuple(constants),
    )


def _field_problems(event_type: str | None, names: list[str]) -> list[str]:
    """Unknown or unmappable field names, and, for a known type, the required fields left out."""
    models = [_MODELS[event_type]] if event_type else list(_MODELS.values())
    known = list(dict.fromkeys(name for model in models for name in model.model_fields if name != "type"))
    problems = []
    for name in names:
        if name in _NOT_MAPPABLE:
            problems.append(f"fields.{name}: {_NOT_MAPPABLE[name]}")
        elif name not in known:
            what = {"deal": "a deal event", "activity": "an activity event"}.get(event_type or "", "an event")
            hint = did_you_mean(name, known, cutoff=0.75)
            problems.append(f"fields.{name}: {what} has no field {name!r}{hint}; known: {', '.join(known)}")
    if event_type is not None:
        model = _MODELS[event_type]
        required = [name for name, info in model.model_fields.items() if info.is_required() and name != "type"]
        missing = [name for name in required if name not in names]
        if missing:
            problems.append(f"fields: {', '.join(missing)} missing; every {event_type} event needs them")
    return problems


def _check_integer_constants(spec: ValueSpec | None, where: str, problems: list[str]) -> None:
    if spec is None:
        return
    written: list[Any] = []
    if isinstance(spec.source, Constant):
        written.append(spec.source.value)
    written += list((spec.value_map or {}).values())
    written += [value for value in (spec.otherwise, spec.default) if value is not MISSING]
    for value in written:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: {value!r} is not a whole number")


def _value_spec(
    raw: Any,
    where: str,
    problems: list[str],
    references: list[tuple[str, str]],
    constants: list[tuple[str, str]],
    *,
    allow: tuple[str, ...] = (),
    column_shorthand: bool = False,
) -> ValueSpec | None:
    """A field's value: `"text {column}"`, a constant, or a mapping with one source key and modifiers."""
    if isinstance(raw, str):
        if column_shorthand:
            references.append((raw, where))
            return ValueSpec(Template((ColumnRef(raw),)))
        template = _parse_template(raw, where, problems)
        references.extend((column, where) for column in template.columns)
        if not template.columns:
            text = "".join(part for part in template.parts if isinstance(part, str))
            constants.append((text, where))
            return ValueSpec(Constant(text))
        return ValueSpec(template)
    if isinstance(raw, bool | int | float):
        return ValueSpec(Constant(raw))
    if raw is None:
        problems.append(f"{where}: empty; give a value, or remove the field to leave it out")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a text, a number or a mapping, got a {type(raw).__name__}")
        return None

    for key in raw:
        if key not in _SPEC_KEYS and key not in allow:
            problems.append(
                f"{where}: unknown key {key!r}{did_you_mean(str(key), _SPEC_KEYS + allow)}; "
                f"known: {', '.join(_SPEC_KEYS + allow)}"
            )
    sources = [key for key in _SOURCE_KEYS if key in raw]
    if len(sources) != 1:
        given = f"got {', '.join(sources)}" if sources else "got none"
        problems.append(f"{where}: give exactly one of {', '.join(_SOURCE_KEYS)} ({given})")
        return None
    kind = sources[0]
    source: Constant | Template | First
    if kind == "value":
        source = Constant(raw["value"])
    elif kind == "column":
        column = raw["column"]
        if not isinstance(column, str) or not column:
            problems.append(f"{where}.column: must name a CSV column")
            return None
        references.append((column, where))
        source = Template((ColumnRef(column),))
    elif kind == "template":
        if not isinstance(raw["template"], str):
            problems.append(f"{where}.template: must be a text with {{column}} references")
            return None
        source = _parse_template(raw["template"], f"{where}.template", problems)
        references.extend((column, f"{where}.template") for column in source.columns)
    else:
        options = raw["first"]
        if not isinstance(options, list) or not options:
            problems.append(
                f"{where}.first: must be a list of columns (or value specs), e.g. [close_date, engage_date]"
            )
            return None
        parsed = [
            _value_spec(option, f"{where}.first[{i}]", problems, references, constants, column_shorthand=True)
            for i, option in enumerate(options)
        ]
        source = First(tuple(option for option in parsed if option is not None))

    transforms = raw.get("transform", ())
    if isinstance(transforms, str):
        transforms = (transforms,)
    if not isinstance(transforms, list | tuple):
        problems.append(f"{where}.transform: a transform name or a list of them ({', '.join(TRANSFORMS)})")
        transforms = ()
    for name in transforms:
        if name not in TRANSFORMS:
            problems.append(
                f"{where}.transform: unknown transform {name!r}{did_you_mean(str(name), TRANSFORMS)}; "
                f"known: {', '.join(TRANSFORMS)}"
            )

    value_map: dict[str, Any] | None = None
    if "map" in raw:
        if not isinstance(raw["map"], dict) or not raw["map"]:
            problems.append(f"{where}.map: must map CSV values to event values, e.g. {{Won: won, Lost: lost}}")
        else:
            value_map = {}
            for key, value in raw["map"].items():
                text = _yaml_scalar_text(key, f"{where}.map", problems)
                if text == "":
                    problems.append(f"{where}.map: an empty key never matches; use default: for empty values")
                elif text is not None:
                    value_map[text] = value
    if "otherwise" in raw and value_map is None:
        problems.append(f"{where}.otherwise: only goes with map:")
    return ValueSpec(
        source=source,
        transforms=tuple(str(name) for name in transforms),
        value_map=value_map,
        otherwise=raw.get("otherwise", MISSING),
        default=raw.get("default", MISSING),
    )


def _row_rules(raw: Any, section: str, problems: list[str], references: list[tuple[str, str]]) -> tuple[RowRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"{section}: must be a list of {{when: {{column: test}}, reason: text}}")
        return ()
    rules = []
    for i, entry in enumerate(raw):
        where = f"{section}[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("when"), dict) or not entry["when"]:
            problems.append(f"{where}: must be {{when: {{column: test, ...}}, reason: text}}")
            continue
        for key in entry:
            if key not in _RULE_KEYS:
                problems.append(f"{where}: unknown key {key!r}; known: when, reason")
        tests = [
            _test(str(column), condition, f"{where}.when.{column}", problems)
            for column, condition in entry["when"].items()
        ]
        references.extend((str(column), f"{where}.when") for column in entry["when"])
        checked = tuple(test for test in tests if test is not None)
        reason = entry.get("reason")
        if reason is not None and not isinstance(reason, str):
            problems.append(f"{where}.reason: must be a text")
            reason = None
        rules.append(RowRule(checked, reason or " and ".join(test.describe() for test in checked)))
    return tuple(rules)


def _test(column: str, condition: Any, where: str, problems: list[str]) -> Condition | None:
    """`Won` (equals), `[Won, Lost]` (one of), `{empty: true}`, `{in: [...]}`, `{not_in: [...]}`, `{matches: re}`."""
    if condition is None:
        return Condition(column, "empty", empty=True)
    if isinstance(condition, list):
        values = [_yaml_scalar_text(value, where, problems) for value in condition]
        return Condition(column, "in", tuple(value for value in values if value is not None))
    if not isinstance(condition, dict):
        value = _yaml_scalar_text(condition, where, problems)
        return None if value is None else Condition(column, "in", (value,))
    if len(condition) != 1 or next(iter(condition)) not in _TEST_KEYS:
        problems.append(f"{where}: a test is a value, a list of values, or one of {', '.join(_TEST_KEYS)}: ...")
        return None
    kind, argument = next(iter(condition.items()))
    if kind == "empty":
        if not isinstance(argument, bool):
            problems.append(f"{where}.empty: must be true or false")
            return None
        return Condition(column, "empty", empty=argument)
    if kind == "matches":
        try:
            return Condition(column, "matches", pattern=re.compile(str(argument)))
        except re.error as exc:
            problems.append(f"{where}.matches: not a regular expression: {exc}")
            return None
    if not isinstance(argument, list):
        argument = [argument]
    values = [_yaml_scalar_text(value, f"{where}.{kind}", problems) for value in argument]
    return Condition(column, kind, tuple(value for value in values if value is not None))


def _formats(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    formats = [raw] if isinstance(raw, str) else raw
    if not isinstance(formats, list) or not formats or not all(isinstance(fmt, str) and fmt for fmt in formats):
        problems.append(f"{where}: iso, unix, a strptime format like '%d/%m/%Y %H:%M', or a list of them")
        return ("iso",)
    return tuple(formats)


def _zone(raw: Any, where: str, problems: list[str]) -> ZoneInfo:
    try:
        return ZoneInfo(str(raw))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}: unknown IANA time zone {raw!r}, e.g. UTC or America/New_York")
        return ZoneInfo("UTC")


def _time_of_day(raw: Any, where: str, problems: list[str]) -> dt_time:
    if isinstance(raw, int) and not isinstance(raw, bool):
        problems.append(f"{where}: quote the time, e.g. '12:00' (YAML reads 12:00 unquoted as the number {raw})")
        return dt_time(0, 0)
    try:
        moment = dt_time.fromisoformat(str(raw))
    except ValueError:
        problems.append(f"{where}: {raw!r} is not a time of day like '09:00' or '17:30:00'")
        return dt_time(0, 0)
    if moment.tzinfo is not None:
        problems.append(f"{where}: give the time without an offset; timezone: sets the zone")
    return moment


# --- reading, mapping and validating rows -----------------------------------------------------------


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
    """The header and an iterator of (start line, values); blank lines are left out."""
    reader = csv.reader(stream, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise ValueError("the file is empty; a CSV import needs a header line naming the columns")
    header = [name.strip() for name in header]

    def records() -> Iterator[tuple[int, list[str]]]:
        line = reader.line_num + 1
        for values in reader:
            if any(value.strip() for value in values):
                yield line, values
            line = reader.line_num + 1

    return header, records()


class CsvMapper:
    """Maps and validates the rows of one CSV with one mapping; pure except for what callers pass in."""

    def __init__(self, mapping: ImportMapping, header: list[str], *, currency: str = DEFAULT_CURRENCY) -> None:
        if mapping.type is None:
            raise ValueError("the mapping has no type; call for_type() first")
        mapping.check_columns(header)
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise MappingError(mapping.origin, [f"the CSV names the columns {', '.join(duplicated)} more than once"])
        self.mapping = mapping
        self.header = header
        self.currency = currency
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
        _, problems = validate_events([row.event for row, _ in pending], currency=self.currency)
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


# --- sending ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What happened to the rows of one import."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    conflicts: int = 0
    """Rejected rows whose event_id ingest already holds with a different body (409); part of rejected."""
    unsent: int = 0
    """Valid rows not sent because ingest could not be reached; running the import again sends them."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Skip reason -> rows."""
    to_send: int = 0
    """Rows that became valid events (what a dry run would send)."""

    @property
    def exit_code(self) -> int:
        return EXIT_REJECTED if self.rejected or self.unsent else EXIT_OK


class FatalImportError(Exception):
    """Something that stops the whole import (a key ingest refuses, an unexpected answer)."""

    def __init__(self, message: str, exit_code: int = EXIT_REJECTED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


RETRY_FIRST_DELAY_S: Final = 0.25
RETRY_MAX_DELAY_S: Final = 5.0
RETRY_GIVE_UP_S: Final = 120.0
RETRY_NOTE_EVERY_S: Final = 15.0
_CONFLICT_IDS: Final = re.compile(r"different body: (.*?)\. Send a new event_id", re.DOTALL)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:300]}
    return body if isinstance(body, dict) else {"detail": response.text[:300]}


class IngestSender:
    """Posts rows' events to ingest in NDJSON batches, sorting out 413, 422, 409 and retrying 503."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        key: str,
        *,
        tally: Tally,
        reject: Callable[[ImportRow], None],
        sleep: Callable[[float], None] = time.sleep,
        give_up_after: float = RETRY_GIVE_UP_S,
        note: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.client = client
        self.url = url.rstrip("/") + "/v1/events"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
        self.tally = tally
        self.reject = reject
        self.sleep = sleep
        self.give_up_after = give_up_after
        self.note = note
        self.conflicting: list[tuple[str, int]] = []
        """(event_id, line) of rows refused with 409."""

    def send(self, rows: list[ImportRow]) -> None:
        """Send every row (each has an event); accepted, duplicate or rejected rows end up in the tally."""
        pending = rows
        while pending:
            response = self._post(pending)
            status = response.status_code
            if status == 202:
                answer = response.json()
                self.tally.accepted += int(answer.get("accepted", 0))
                self.tally.duplicates += int(answer.get("duplicates", 0))
                for row in pending:
                    row.sent = True
                return
            problem = _problem(response)
            detail = str(problem.get("detail") or problem.get("title") or status)
            if status in (401, 403):
                raise FatalImportError(f"ingest refused the key ({status}): {detail}", EXIT_USAGE)
            if status == 413 and len(pending) > 1:
                middle = len(pending) // 2
                self.send(pending[:middle])
                self.send(pending[middle:])
                return
            if status == 422:
                pending = self._drop_invalid(pending, problem, detail)
            elif status == 409:
                remaining = self._drop_conflicts(pending, detail)
                if remaining is None:
                    middle = len(pending) // 2
                    self.send(pending[:middle])
                    self.send(pending[middle:])
                    return
                pending = remaining
            else:
                raise FatalImportError(f"ingest answered {status}: {detail}")

    def _drop_invalid(self, rows: list[ImportRow], problem: dict[str, Any], detail: str) -> list[ImportRow]:
        reasons: dict[int, list[str]] = {}
        for error in problem.get("errors") or []:
            index = error.get("index") if isinstance(error, dict) else None
            if isinstance(index, int) and 0 <= index < len(rows):
                reasons.setdefault(index, []).append(f"ingest: {error.get('message') or detail}")
        if not reasons:  # the batch as a whole was refused: none of it can go in
            reasons = {index: [f"ingest: {detail}"] for index in range(len(rows))}
        for index, messages in reasons.items():
            rows[index].reasons.extend(messages)
            self._rejected(rows[index])
        return [row for index, row in enumerate(rows) if index not in reasons]

    def _drop_conflicts(self, rows: list[ImportRow], detail: str) -> list[ImportRow] | None:
        """The rows minus those whose event_id the 409 names; None when it names none of them."""
        if len(rows) == 1:
            named = {0}
        else:
            match = _CONFLICT_IDS.search(detail)
            ids = set(match.group(1).split(", ")) if match else set()
            named = {index for index, row in enumerate(rows) if row.event and row.event["event_id"] in ids}
        if not named:
            return None
        for index in named:
            row = rows[index]
            assert row.event is not None
            event_id = str(row.event["event_id"])
            row.reasons.append(
                f"ingest: event_id {event_id} was already accepted with a different body (409); "
                "a new fact needs a new event_id"
            )
            self.tally.conflicts += 1
            self.conflicting.append((event_id, row.line))
            self._rejected(row)
        return [row for index, row in enumerate(rows) if index not in named]

    def _rejected(self, row: ImportRow) -> None:
        row.event = None
        self.tally.rejected += 1
        self.reject(row)

    def _post(self, rows: list[ImportRow]) -> httpx.Response:
        """POST the rows' events, retrying connection errors, 429 and 502/503/504 with backoff, waiting at
        least what Retry-After asks."""
        body = b"".join(orjson.dumps(row.event) + b"\n" for row in rows)
        began = time.monotonic()
        backoff = Backoff(first=RETRY_FIRST_DELAY_S, most=RETRY_MAX_DELAY_S)
        last_note: float | None = None
        while True:
            retry_after = 0.0
            try:
                response = self.client.post(self.url, content=body, headers=self.headers)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                reason = f"{response.status_code} {_problem(response).get('detail', '')}".strip()
                retry_after = retry_after_seconds(response.headers)
            waited = time.monotonic() - began
            if waited >= self.give_up_after:
                raise IngestUnreachable(f"no answer from {self.url} after {self.give_up_after:.0f} s ({reason})")
            if last_note is None or waited - last_note >= RETRY_NOTE_EVERY_S:
                self.note(f"{self.url}: {reason}; retrying for up to {self.give_up_after:.0f} s")
                last_note = waited
            self.sleep(backoff.next(at_least=retry_after))


class IngestUnreachable(Exception):
    """Ingest did not take a batch within the retry budget."""


# --- progress and the command -----------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal; an occasional plain line otherwise (logs, CI)."""

    def __init__(self, total: int, stream: IO[str], *, label: str, interactive: bool | None = None) -> None:
        self.total = total
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
        share = self.done / self.total if self.total else 1.0
        left = (self.total - self.done) / rate if rate > 0 else None
        width = 24
        filled = round(width * share)
        eta = "--:--" if left is None else _duration(left)
        return (
            f"{self.label} [{'#' * filled}{'-' * (width - filled)}] {self.done:,}/{self.total:,} rows "
            f"{share:4.0%} · {rate:,.0f} rows/s · ETA {eta}"
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


def _api_key(explicit: str | None, data_dir: Path) -> str | None:
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
        self.writer.writerow([*header, _unique_name("line", header), _unique_name("reason", header)])
        self.width = len(header)
        self.rows = 0

    def write(self, row: ImportRow) -> None:
        # A short or long record keeps its values in the original columns, padded or cut to fit.
        values = (row.values + [""] * self.width)[: self.width]
        self.writer.writerow([*values, row.line, "; ".join(row.reasons)])
        self.rows += 1

    def close(self) -> None:
        self.stream.close()


def run_import(
    options: ImportOptions,
    *,
    currency: str = DEFAULT_CURRENCY,
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
        key = _api_key(options.key, data_dir)
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
            mapper = CsvMapper(mapping, header, currency=currency)
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
    progress = Progress(max(total, 0), err, label=options.file.name)
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
