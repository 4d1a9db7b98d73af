"""The ingest event contract (CONTRACT §1) as pydantic models, plus batch validation with user-facing
problems and the canonical encoding that tells a duplicate event from a conflicting one."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, NamedTuple

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, core_schema

from schemas.currencies import is_currency_code
from schemas.kpis import ACTIVITY_KIND_REGEX, OVERLAY, PRIMARY, CreditRole
from schemas.suggestions import did_you_mean

__all__ = [
    "AMOUNT_LIMIT",
    "VERSION_LIMIT",
    "EVENTS_ADAPTER",
    "EVENT_ADAPTER",
    "AcceptWindow",
    "ActivityEvent",
    "DealEvent",
    "Event",
    "Split",
    "ValidationProblem",
    "body_hash",
    "canonical_json",
    "event_from_canonical",
    "utf8_problem",
    "validate_events",
]

AMOUNT_LIMIT: Final = Decimal(10**15)
# A CRM revision fits a signed 64-bit integer (BIGINT, a Java long); orjson and Kafka tooling stop there too.
VERSION_LIMIT: Final = 2**63 - 1
SHARE_TOLERANCE: Final = Decimal("1e-9")

TIMESTAMP_EXAMPLE: Final = "2026-11-29T10:00:00Z"

# Identifiers end up in URLs, logs, CSV exports and dashboards; control characters (C0, DEL, C1) in
# them are always a bug upstream, never a real id.
_NO_CONTROL_CHARS: Final = r"^[^\x00-\x1F\x7F-\x9F]*$"
_CURRENCY_CODE: Final = r"^[A-Z]{3}$"

# The shape of an RFC 3339 date-time; pydantic's own parser would also take unix timestamps ("1764410400")
# and bare dates. The offset is optional here so that a naive timestamp gets the specific offset hint.
_RFC3339: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?$"
_RFC3339_SHAPE: Final = re.compile(_RFC3339)
# Keeps every accepted instant convertible to UTC (year 1 or 9999 plus an offset overflows) and catches
# typos like 0226.
_EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(3000, 1, 1, tzinfo=UTC)
# A plain decimal numeral; Python's Decimal() would also take " 1_000 ", "NaN" and "Infinity".
_DECIMAL: Final = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DECIMAL_SHAPE: Final = re.compile(_DECIMAL)
# A run of 16+ digits (and dots) may be a JSON number with more significant digits than a binary float
# holds; pydantic-core parses JSON numbers through f64 (pydantic-core#1688), so such bodies take the exact
# path. Up to 15 significant digits, float -> shortest repr gives back exactly the digits that were sent.
# Digits inside strings (long numeric ids) only cost the slower path, never correctness. bytes.translate
# plus a substring search scans a 1,000-event body ~10x faster than a regex.
MAX_SPLITS: Final = 50
"""Splits one deal may carry: a real deal has a handful; thousands would only buy work."""

_DIGIT_MAP: Final = bytes(ord("d") if chr(byte) in "0123456789." else ord("x") for byte in range(256))
_LONG_DIGIT_RUN: Final = b"d" * 16


def _timestamp_object(value: Any) -> Any:
    """Python input: let through datetimes and RFC 3339-shaped strings, as the JSON path does."""
    if isinstance(value, datetime) or (type(value) is str and _RFC3339_SHAPE.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "timestamp_format",
        "must be an RFC 3339 timestamp with a UTC offset, e.g. {example}",
        {"example": TIMESTAMP_EXAMPLE},
    )


class _RFC3339Timestamp:
    """Core schema of an aware timestamp: from JSON, only RFC 3339 text, checked without Python calls."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        moment = core_schema.datetime_schema(tz_constraint="aware", ge=_EARLIEST, lt=_LATEST)
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([core_schema.str_schema(strict=True, pattern=_RFC3339), moment]),
            python_schema=core_schema.no_info_before_validator_function(_timestamp_object, moment),
        )


def _decimal_object(value: Any) -> Any:
    """Python input: let through what the JSON path takes, numbers and plain decimal strings."""
    if type(value) in (int, float, Decimal) or (type(value) is str and _DECIMAL_SHAPE.fullmatch(value)):
        return value
    raise PydanticCustomError("decimal_format", "must be a decimal number, e.g. 1250.00", {})


@dataclass(frozen=True)
class _ExactDecimal:
    """Core schema of a decimal sent as a JSON number or a plain decimal string, checked in pydantic-core.

    Python's Decimal() parses more than JSON users mean ("1_000", " 5 ", "NaN"); only numerals pass here.
    """

    ge: Decimal | None = None
    gt: Decimal | None = None
    le: Decimal | None = None
    lt: Decimal | None = None
    decimal_places: int | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        value = core_schema.decimal_schema(
            allow_inf_nan=False,
            ge=self.ge,
            gt=self.gt,
            le=self.le,
            lt=self.lt,
            decimal_places=self.decimal_places,
        )
        number_or_numeral = core_schema.union_schema(
            [
                core_schema.int_schema(strict=True),
                core_schema.float_schema(strict=True),
                core_schema.str_schema(strict=True, pattern=_DECIMAL),
            ],
            custom_error_type="decimal_format",
            custom_error_message="must be a decimal number, e.g. 1250.00",
        )
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([number_or_numeral, value]),
            python_schema=core_schema.no_info_before_validator_function(_decimal_object, value),
        )

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        number: dict[str, Any] = {"type": "number"}
        bounds = {
            "minimum": self.ge,
            "exclusiveMinimum": self.gt,
            "maximum": self.le,
            "exclusiveMaximum": self.lt,
        }
        number.update({key: int(bound) for key, bound in bounds.items() if bound is not None})
        return {"anyOf": [number, {"type": "string", "pattern": _DECIMAL}]}


class AcceptWindow(NamedTuple):
    """The instants ingest accepts in a timestamp, fixed per request (see docs/decisions.md).

    Outside it a timestamp is a typo or a wrong clock: a year 2999 credit would sit in a period no board
    shows and push the rep's contest minutes out of their 35-day horizon."""

    not_before: datetime
    not_after: datetime
    ahead: timedelta
    """How far past now `not_after` lies; only for the message."""

    @classmethod
    def around(cls, now: datetime, *, not_before: datetime, ahead: timedelta) -> AcceptWindow:
        return cls(not_before, now + ahead, ahead)

    def too_early(self, field: str) -> str:
        return f"{field} must not be before {_iso_z(self.not_before)}; check the date"

    def too_late(self, field: str) -> str:
        days = self.ahead / timedelta(days=1)
        return (
            f"{field} must not be after {_iso_z(self.not_after)} ({days:g} days from now); "
            "check the date and the sender's clock"
        )


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _within_window(value: datetime | None, info: ValidationInfo) -> datetime | None:
    """A timestamp inside the context's AcceptWindow; no window in the context (stored events) checks nothing."""
    window = info.context.get("window") if value is not None and isinstance(info.context, dict) else None
    if window is None or value is None:
        return value
    field = info.field_name or "timestamp"
    if value < window.not_before:
        raise PydanticCustomError("timestamp_too_early", window.too_early(field))
    if value > window.not_after:
        raise PydanticCustomError("timestamp_too_late", window.too_late(field))
    return value


Identifier = Annotated[str, Field(strict=True, min_length=1, max_length=128, pattern=_NO_CONTROL_CHARS)]
SourceName = Annotated[str, Field(strict=True, max_length=64, pattern=_NO_CONTROL_CHARS)]
Timestamp = Annotated[datetime, _RFC3339Timestamp, WithJsonSchema({"type": "string", "format": "date-time"})]
Money = Annotated[Decimal, _ExactDecimal(ge=Decimal(0), lt=AMOUNT_LIMIT, decimal_places=2)]
Share = Annotated[Decimal, _ExactDecimal(gt=Decimal(0), le=Decimal(1))]
CurrencyCode = Annotated[str, Field(strict=True, pattern=_CURRENCY_CODE)]
ActivityKind = Annotated[str, Field(strict=True, pattern=ACTIVITY_KIND_REGEX)]

_MODEL_CONFIG: Final = ConfigDict(extra="forbid", frozen=True)


class Split(BaseModel):
    """One rep's share of a deal's credit: primary (the deal's split) or overlay (on top of it)."""

    model_config = _MODEL_CONFIG

    rep_id: Identifier
    share: Share = Field(
        description="Fraction of the deal credited to the rep, in (0, 1]; the primary shares sum to 1."
    )
    role: CreditRole = Field(
        default=PRIMARY,
        description="primary: a part of the deal's credit; overlay: credit on top, which no primary loses.",
    )


class DealEvent(BaseModel):
    """A snapshot of an opportunity's current state, as the CRM sees it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="DealEvent",
        json_schema_extra={
            "if": {"properties": {"stage": {"enum": ["won", "lost"]}}, "required": ["stage"]},
            "then": {
                "required": ["closed_at"],
                "properties": {"closed_at": {"type": "string", "format": "date-time"}},
            },
        },
    )

    event_id: Identifier = Field(description="Unique per event; the idempotency key.")
    type: Literal["deal"]
    occurred_at: Timestamp = Field(description="RFC 3339 with offset.")
    source: SourceName | None = Field(default=None, description='e.g. "salesforce", "csv".')
    deal_id: Identifier
    version: Annotated[int, Field(strict=True, ge=0, le=VERSION_LIMIT)] | None = Field(
        default=None, description="CRM revision; orders a deal's snapshots before occurred_at."
    )
    owner_id: Identifier = Field(description="The rep who owns the deal.")
    stage: Literal["open", "won", "lost"]
    amount: Money = Field(description="Exact decimal >= 0 with at most 2 decimal places, number or string.")
    currency: CurrencyCode | None = Field(
        default=None,
        description="ISO 4217 code; absent: the reporting currency. Others are converted by the FX table.",
    )
    closed_at: Timestamp | None = Field(
        default=None, validate_default=True, description="Required when stage is won or lost."
    )
    splits: tuple[Split, ...] | None = Field(
        default=None,
        max_length=MAX_SPLITS,
        description=(
            f"Credit splits (at most {MAX_SPLITS}); the primary shares sum to 1, overlays come on top. No primary"
            " split: the owner gets 100 %."
        ),
    )
    kind: Literal["new", "renewal", "expansion"] = "new"
    customer_id: Identifier | None = None

    @field_validator("currency")
    @classmethod
    def _currency_is_iso_4217(cls, value: str | None) -> str | None:
        if value is not None and not is_currency_code(value):
            raise PydanticCustomError(
                "unknown_currency", "currency {currency} is not an ISO 4217 currency code, e.g. USD or EUR",
                {"currency": value},
            )
        return value

    _timestamps_within_window = field_validator("occurred_at", "closed_at")(_within_window)

    @field_validator("closed_at")
    @classmethod
    def _closed_deals_have_a_close_date(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            stage = info.data.get("stage")
            if stage == "won" or stage == "lost":
                raise PydanticCustomError(
                    "closed_at_required", "closed_at is required when stage is {stage}", {"stage": stage}
                )
        return value

    @field_validator("splits")
    @classmethod
    def _splits_cover_the_whole_deal_once(
        cls, value: tuple[Split, ...] | None, info: ValidationInfo
    ) -> tuple[Split, ...] | None:
        if value is None:
            return value
        if not value:
            raise PydanticCustomError(
                "splits_empty", "splits must not be empty; leave it out to credit the owner 100 %", {}
            )
        # A rep may hold both roles on one deal (a primary share and an overlay on top), each once.
        entries = [(split.rep_id, split.role) for split in value]
        if len(set(entries)) < len(entries):
            position = next(i for i, entry in enumerate(entries) if entry in entries[:i])
            rep_id, role = entries[position]
            raise PydanticCustomError(
                "split_rep_repeated",
                "rep {rep_id} appears more than once in splits{as_role}",
                {"rep_id": rep_id, "position": position, "as_role": " as an overlay" if role == OVERLAY else ""},
            )
        primary = [split for split in value if split.role == PRIMARY]
        if not primary:  # overlays only: the owner is the primary at 100 %
            return value
        total: Decimal = sum((split.share for split in primary), Decimal(0))
        if abs(total - 1) > SHARE_TOLERANCE:
            raise PydanticCustomError(
                "split_shares_sum",
                "split shares must add up to 1, not {total}{overlays}",
                {
                    "total": f"{Decimal(total).normalize():f}",
                    "overlays": " (the primary ones: overlays come on top)" if len(primary) < len(value) else "",
                },
            )
        return value

    def credited_splits(self) -> tuple[tuple[str, Decimal], ...]:
        """(rep_id, share) pairs of this snapshot's primary credit: the primary splits, or the owner at 100 %."""
        primary = tuple((split.rep_id, split.share) for split in self.splits or () if split.role == PRIMARY)
        return primary or ((self.owner_id, Decimal(1)),)

    def rep_ids(self) -> set[str]:
        """Every rep the event names: the owner and the split reps."""
        reps = {self.owner_id}
        if self.splits is not None:
            reps.update(split.rep_id for split in self.splits)
        return reps


class ActivityEvent(BaseModel):
    """An immutable fact about a rep's work: a call, an email, a meeting, a demo."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="ActivityEvent")

    event_id: Identifier = Field(description="Unique per event; the idempotency key.")
    type: Literal["activity"]
    occurred_at: Timestamp = Field(description="RFC 3339 with offset.")
    source: SourceName | None = Field(default=None, description='e.g. "salesforce", "csv".')
    rep_id: Identifier
    kind: ActivityKind = Field(description="Lowercase token, e.g. call, email, meeting, demo.")
    deal_id: Identifier | None = None
    customer_id: Identifier | None = None

    _timestamps_within_window = field_validator("occurred_at")(_within_window)

    def rep_ids(self) -> set[str]:
        """Every rep the event names: the one who did the activity."""
        return {self.rep_id}


Event = Annotated[DealEvent | ActivityEvent, Field(discriminator="type")]

# For request bodies use validate_events: these adapters' validate_json reads JSON numbers through a float,
# so an amount with more than 15 significant digits could be rounded before it is checked.
EVENTS_ADAPTER: Final[TypeAdapter[list[DealEvent | ActivityEvent]]] = TypeAdapter(list[Event])
EVENT_ADAPTER: Final[TypeAdapter[DealEvent | ActivityEvent]] = TypeAdapter(Event)


# --- batch validation -------------------------------------------------------------------------------


class ValidationProblem(NamedTuple):
    """One thing wrong with one event of a batch, worded for the person who sent it."""

    index: int  # type: ignore[assignment]  # the contract's name (CONTRACT §6); shadows tuple.index
    """Position of the event in the batch; -1 when the body as a whole is unusable."""
    field: str
    """Dotted path of the offending field, e.g. ``splits.1.share``; ``""`` for the whole event."""
    message: str
    """What is wrong and how to fix it."""


_EVENT_TYPES: Final = ("deal", "activity")
_FIELD_NAMES: Final = {
    "deal": tuple(DealEvent.model_fields),
    "activity": tuple(ActivityEvent.model_fields),
    "split": tuple(Split.model_fields),
}
_TIMESTAMP_FIELDS: Final = frozenset({"occurred_at", "closed_at"})
_BAD_TIMESTAMP: Final = f"must be an RFC 3339 timestamp with a UTC offset, e.g. {TIMESTAMP_EXAMPLE}"
_PATTERN_MESSAGES: Final = {
    _NO_CONTROL_CHARS: "must not contain control characters",
    _CURRENCY_CODE: "must be a 3-letter ISO 4217 code in capitals, e.g. USD",
    ACTIVITY_KIND_REGEX: (
        "must be a lowercase token: a letter, then up to 31 letters, digits or _, e.g. call or demo_booked"
    ),
}
# Our own errors (PydanticCustomError) already read as whole sentences.
_SENTENCE_ERRORS: Final = frozenset(
    {
        "closed_at_required",
        "unknown_currency",
        "splits_empty",
        "split_rep_repeated",
        "split_shares_sum",
        "timestamp_too_early",
        "timestamp_too_late",
    }
)
# pydantic error types -> what follows the field name; {placeholders} come from the error's ctx.
_PREDICATES: Final = {
    "missing": "is required",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_long": "must hold at most {max_length} items",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "decimal_format": "must be a decimal number, e.g. 1250.00",
    "decimal_type": "must be a decimal number, e.g. 1250.00",
    "decimal_parsing": "must be a decimal number, e.g. 1250.00",
    "finite_number": "must be a finite decimal number",
    "decimal_max_places": "must have at most {decimal_places} decimal places",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


def _format_limit(value: Any) -> str:
    """1000000000000000 -> 1,000,000,000,000,000 so limits read at a glance."""
    if isinstance(value, Decimal | int) and value == int(value):
        return f"{int(value):,}"
    return str(value)


def _unknown_field_message(name: str, known: tuple[str, ...]) -> str:
    """Name the unknown field and, for a likely typo, the field that was probably meant."""
    return f"unknown field {name}{did_you_mean(name, known, cutoff=0.75)}"


def _body_problem(error: ErrorDetails) -> ValidationProblem:
    """A problem with the batch as a whole rather than with one of its events."""
    if error["type"] == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", error["msg"])
        if detail.startswith("recursion limit exceeded"):  # the parser stops at 200 levels
            where = detail.removeprefix("recursion limit exceeded ")
            return ValidationProblem(-1, "", f"body nests arrays or objects too deeply ({where}); events are flat")
        return ValidationProblem(-1, "", f"body is not valid JSON: {detail}")
    if error["type"] == "list_type":
        return ValidationProblem(-1, "", "body must be a JSON array of events")
    return ValidationProblem(-1, "", error["msg"])


def _event_problem(error: ErrorDetails) -> ValidationProblem:
    """Turn one pydantic error about one event into an index, a dotted path and a plain message."""
    index = error["loc"][0]
    assert isinstance(index, int)
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    path = [str(part) for part in error["loc"][1:]]
    # A discriminated union puts the tag into the location: (3, "deal", "amount").
    event_type = path.pop(0) if path and path[0] in _EVENT_TYPES else None
    if kind == "split_rep_repeated":
        path += [str(ctx["position"]), "rep_id"]
    field = ".".join(path)

    if not path:
        if kind == "union_tag_not_found":
            return ValidationProblem(index, "type", "type is required: one of deal, activity")
        if kind == "union_tag_invalid":
            return ValidationProblem(index, "type", f"type must be one of deal, activity, not {ctx['tag']!r}")
        return ValidationProblem(index, "", "each event must be a JSON object")
    if kind == "extra_forbidden":
        known = _FIELD_NAMES["split" if len(path) > 1 else event_type or "deal"]
        return ValidationProblem(index, field, _unknown_field_message(path[-1], known))
    if kind in _SENTENCE_ERRORS:
        return ValidationProblem(index, field, error["msg"])
    return ValidationProblem(index, field, f"{field} {_predicate(field, kind, ctx)}")


def _predicate(field: str, kind: str, ctx: dict[str, Any]) -> str:
    """What is wrong with the field, worded to follow its name."""
    if field in _TIMESTAMP_FIELDS and kind != "missing":
        if kind == "timezone_aware":
            return f"must include a UTC offset, e.g. {TIMESTAMP_EXAMPLE}"
        if kind in ("greater_than_equal", "less_than"):
            return f"must be between the years {_EARLIEST.year} and {_LATEST.year - 1}"
        return _BAD_TIMESTAMP
    if kind == "literal_error":
        return "must be one of " + str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
    if kind == "string_pattern_mismatch":
        return _PATTERN_MESSAGES.get(str(ctx["pattern"]), "has an invalid format")
    if field == "amount":
        # A JSON number too big for a float arrives as inf.
        if kind == "less_than" or (kind == "finite_number" and ctx.get("input") == "inf"):
            return f"must be less than {_format_limit(AMOUNT_LIMIT)}"
        if kind == "greater_than_equal" or (kind == "finite_number" and ctx.get("input") == "-inf"):
            return "must not be negative"
    template = _PREDICATES.get(kind)
    if template is None:
        return f"is invalid: {ctx.get('message', kind)}"
    return template.format(**{key: _format_limit(value) for key, value in ctx.items()})


def _outside_window(details: ErrorDetails, window: AcceptWindow | None) -> ValidationProblem | None:
    """A timestamp outside the years any timestamp may have, worded as the window that applies at ingest."""
    index, field = details["loc"][0], str(details["loc"][-1])
    if window is None or field not in _TIMESTAMP_FIELDS or not isinstance(index, int):
        return None
    if details["type"] == "greater_than_equal":
        return ValidationProblem(index, field, window.too_early(field))
    if details["type"] == "less_than":
        return ValidationProblem(index, field, window.too_late(field))
    return None


def _problems(error: ValidationError, window: AcceptWindow | None) -> list[ValidationProblem]:
    problems = []
    for details in error.errors(include_url=False):
        if not details["loc"] or not isinstance(details["loc"][0], int):
            problems.append(_body_problem(details))
            continue
        outside = _outside_window(details, window)
        if outside is not None:
            problems.append(outside)
            continue
        if details["type"] == "int_type" and isinstance(details["input"], Decimal):
            # A whole number too long for int() (see _parse_int): say the bound it is beyond.
            beyond_top = details["input"] > 0
            details["type"] = "less_than_equal" if beyond_top else "greater_than_equal"
            details["ctx"] = {"le": VERSION_LIMIT} if beyond_top else {"ge": 0}
        if details["type"] == "finite_number":
            value = details["input"]
            details["ctx"] = {"input": "nan" if value != value else ("-inf" if value < 0 else "inf")}
        elif details["type"] not in _SENTENCE_ERRORS and details["type"] not in _PREDICATES:
            details["ctx"] = {**details.get("ctx", {}), "message": details["msg"]}
        problems.append(_event_problem(details))
    return problems


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Python refuses int() of more than 4,300 digits; such a number becomes a Decimal, so the field holding it
# gets its own error ("amount must be less than ...") instead of the whole body being unreadable.
_INT_DIGITS: Final = 4000


def _parse_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _INT_DIGITS else Decimal(text)


def utf8_problem(body: bytes) -> ValidationProblem | None:
    """The body-level problem of a body that is not UTF-8 (CONTRACT §1), else None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ValidationProblem(
            -1,
            "",
            f"body is not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start} is invalid; "
            "send JSON encoded as UTF-8",
        )
    return None


def needs_exact_parse(body: bytes) -> bool:
    """Whether `body` holds a run of 16 or more digits, which a double cannot carry exactly."""
    return _LONG_DIGIT_RUN in body.translate(_DIGIT_MAP)


def parse_exactly(body: bytes) -> tuple[Any, list[ValidationProblem]]:
    """Parse with every number exact (Decimal); the body-level problem when it cannot be parsed."""
    try:
        return json.loads(body, parse_float=Decimal, parse_int=_parse_int, parse_constant=_reject_constant), []
    except RecursionError:
        return None, [ValidationProblem(-1, "", "body nests arrays or objects too deeply; events are flat")]
    except ValueError as exc:
        return None, [utf8_problem(body) or ValidationProblem(-1, "", f"body is not valid JSON: {exc}")]


def validate_events(
    items: bytes | list[Any], *, window: AcceptWindow | None = None
) -> tuple[list[DealEvent | ActivityEvent], list[ValidationProblem]]:
    """Validate a batch: a JSON array body (bytes) or already-parsed objects (list).

    Returns the events and every problem of every item; when there are problems, the events are [].
    Pass bytes to keep amounts exact: in a list, floats have already lost whatever a float cannot hold.
    With a `window`, timestamps outside it are problems too (ingest passes one; stored events are not
    checked again).
    """
    if window is not None:
        # The window is checked in one pass over the valid events: as a field validator it cost a Python call per
        # timestamp from pydantic-core, and a comparison of two time zones' instants. A problem, or an instant
        # outside the window, validates again with the window in the context, which words every problem in
        # pydantic's order.
        events, problems = _validated(items, None)
        if not problems and _all_within(events, window):
            return events, problems
    return _validated(items, window)


# pydantic-core gives every UTC instant it parses this one tzinfo; bounds in it compare field by field, where a
# comparison across two tzinfo objects asks each for its offset (some 15 times slower).
_PARSED_UTC: Final = TypeAdapter(datetime).validate_json('"2000-01-01T00:00:00Z"').tzinfo


def _all_within(events: list[DealEvent | ActivityEvent], window: AcceptWindow) -> bool:
    """Whether every event's timestamps lie in the window (what `_within_window` checks one at a time)."""
    low, high = window.not_before.astimezone(_PARSED_UTC), window.not_after.astimezone(_PARSED_UTC)
    for event in events:
        if not low <= event.occurred_at <= high:
            return False
        if type(event) is DealEvent and event.closed_at is not None and not low <= event.closed_at <= high:
            return False
    return True


def _validated(
    items: bytes | list[Any], window: AcceptWindow | None
) -> tuple[list[DealEvent | ActivityEvent], list[ValidationProblem]]:
    context = {"window": window}
    try:
        if isinstance(items, list):
            return EVENTS_ADAPTER.validate_python(items, context=context), []
        body = bytes(items)
        if not needs_exact_parse(body):
            return EVENTS_ADAPTER.validate_json(body, context=context), []
        parsed, unreadable = parse_exactly(body)
        if unreadable:
            return [], unreadable
        return EVENTS_ADAPTER.validate_python(parsed, context=context), []
    except ValidationError as exc:
        problems = _problems(exc, window)
        if isinstance(items, bytes | bytearray) and any(p.index == -1 for p in problems):
            problems = [utf8_problem(bytes(items)) or p if p.index == -1 else p for p in problems]
        return [], problems


# --- canonical encoding -----------------------------------------------------------------------------

_CENT: Final = Decimal("0.01")
# Timestamps go in as UTC datetimes: orjson writes 2026-11-29T09:00:00Z, with .ffffff only when non-zero.
_CANONICAL_OPTIONS: Final = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z


def _money_text(amount: Decimal) -> str:
    return f"{amount.quantize(_CENT).copy_abs():f}"


def _share_text(share: Decimal) -> str:
    return f"{share.normalize():f}"


def _in_utc(moment: datetime) -> datetime:
    """`moment` with a UTC offset of zero, which orjson writes with Z (as it was parsed when it was sent so)."""
    return moment if moment.tzinfo is _PARSED_UTC else moment.astimezone(UTC)


def _canonical_dict(event: DealEvent | ActivityEvent) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "occurred_at": _in_utc(event.occurred_at),
    }
    if event.source is not None:
        body["source"] = event.source
    if isinstance(event, ActivityEvent):
        body["rep_id"] = event.rep_id
        body["kind"] = event.kind
        if event.deal_id is not None:
            body["deal_id"] = event.deal_id
        if event.customer_id is not None:
            body["customer_id"] = event.customer_id
        return body
    body["deal_id"] = event.deal_id
    if event.version is not None:
        body["version"] = event.version
    body["owner_id"] = event.owner_id
    body["stage"] = event.stage
    body["amount"] = _money_text(event.amount)
    if event.currency is not None:
        body["currency"] = event.currency
    if event.closed_at is not None:
        body["closed_at"] = _in_utc(event.closed_at)
    if event.splits is not None:
        # Split order carries no meaning, so it must not make two equal snapshots differ. The primary role is
        # left out, so a split written before roles existed keeps its body hash (and its retries stay duplicates).
        body["splits"] = [
            {"rep_id": split.rep_id, "share": _share_text(split.share)}
            | ({"role": split.role} if split.role != PRIMARY else {})
            for split in sorted(event.splits, key=lambda split: split.rep_id)
        ]
    body["kind"] = event.kind
    if event.customer_id is not None:
        body["customer_id"] = event.customer_id
    return body


def canonical_json(event: DealEvent | ActivityEvent) -> bytes:
    """Deterministic encoding: equal for equivalent bodies, different for any real difference.

    Sorted keys; amounts as strings with two decimals, shares normalised; timestamps as UTC instants;
    defaults included, absent (None) fields left out; splits ordered by rep.
    """
    return orjson.dumps(_canonical_dict(event), option=_CANONICAL_OPTIONS)


def body_hash(event: DealEvent | ActivityEvent) -> str:
    """sha256 hex digest of the canonical encoding."""
    return hashlib.sha256(canonical_json(event)).hexdigest()


_NO_CURRENCY_CHECK: Final = {"currency": None}


def event_from_canonical(data: bytes) -> DealEvent | ActivityEvent:
    """Read back an event stored as canonical JSON.

    The reporting-currency check is skipped: the event passed it when it was accepted.
    """
    return EVENT_ADAPTER.validate_json(data, context=_NO_CURRENCY_CHECK)
