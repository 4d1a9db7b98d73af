"""The mapping language (docs/import.md): a YAML mapping parsed and checked into an `ImportMapping` of
templates, value specs, timestamp formats and skip/reject rules, which turns one CSV row into an event dict."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from datetime import time as dt_time
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel

from schemas.events import ActivityEvent, DealEvent
from schemas.suggestions import did_you_mean
from services.common.mapping_errors import MappingError
from services.common.naming import slug

__all__ = [
    "EVENT_TYPES",
    "TRANSFORMS",
    "EventType",
    "ImportMapping",
    "MappedRow",
    "MappingError",
    "load_mapping",
    "parse_mapping",
]

EventType = Literal["deal", "activity"]
EVENT_TYPES: Final[tuple[EventType, ...]] = ("deal", "activity")

_MODELS: Final[dict[str, type[BaseModel]]] = {"deal": DealEvent, "activity": ActivityEvent}
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
        return replace(self, type=cast(EventType, event_type))

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
        for field_rule in self.fields:
            notes: list[str] = []
            try:
                value = field_rule.value(row, notes)
            except _RowProblem as problem:
                problems.append(str(problem))
                continue
            if value is None:
                if notes:
                    why_empty[field_rule.name] = "; ".join(notes)
                continue
            event[field_rule.name] = value
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
                key_text = _yaml_scalar_text(key, f"{where}.map", problems)
                if key_text == "":
                    problems.append(f"{where}.map: an empty key never matches; use default: for empty values")
                elif key_text is not None:
                    value_map[key_text] = value
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
