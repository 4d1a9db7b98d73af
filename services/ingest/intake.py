"""Reading and validating a `POST /v1/events` body in bounded time and size.

- The body is read to at most `MAX_BODY` bytes (413 beyond); its pace is the HTTP protocol's business
  (services/common/http_protocol.py: a body must arrive within SALESPULSE_HTTP_BODY_TIMEOUT of its headers).
- The items are counted before any is validated: more than `MAX_EVENTS` is a 413 at once, whatever they hold.
- Validation runs `CHUNK` items at a time and hands the event loop back between chunks, so one large body
  never holds the process (its health check, other clients) for more than a few milliseconds at a time.
- A 422 lists at most the first `MAX_ERRORS` problems, with `error_count` saying how many there are in all.

Each chunk is validated exactly as a whole body would be: with orjson's parse re-encoded (its numbers are the
same finite doubles the JSON path would read), or, when the body holds a number of 16 or more digits, from the
exact parse with every number a Decimal — the two paths `validate_events` itself takes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.events import (
    AcceptWindow,
    ActivityEvent,
    DealEvent,
    ValidationProblem,
    needs_exact_parse,
    parse_exactly,
    utf8_problem,
    validate_events,
)
from services.common.bodies import MAX_BODY, read_limited
from services.common.problems import Problem

MAX_EVENTS = 10_000
MAX_ERRORS = 100
CHUNK = 250

__all__ = ["MAX_BODY", "MAX_ERRORS", "MAX_EVENTS", "Checked", "check_events", "read_limited"]


@dataclass
class Checked:
    """The valid events of a body, or its problems: the first MAX_ERRORS of `problem_count` in all."""

    events: list[DealEvent | ActivityEvent] = field(default_factory=list)
    problems: list[ValidationProblem] = field(default_factory=list)
    problem_count: int = 0
    invalid_items: int = 0

    def add(self, problems: list[ValidationProblem], offset: int) -> None:
        room = MAX_ERRORS - len(self.problems)
        if room > 0:
            self.problems += [ValidationProblem(p.index + offset, p.field, p.message) for p in problems[:room]]
        self.problem_count += len(problems)
        self.invalid_items += len({p.index for p in problems})

    def problem(self) -> Problem:
        """The 422 for these problems."""
        if all(p.index == -1 for p in self.problems):
            detail = f"The body could not be read as events ({self.problems[0].message}); nothing was accepted."
        else:
            listed = (
                f" ({self.problem_count:,} problems; the first {len(self.problems)} are listed)"
                if self.problem_count > len(self.problems)
                else ""
            )
            detail = f"{self.invalid_items:,} of the events are invalid{listed}; nothing was accepted."
        return Problem(
            422,
            detail,
            errors=[{"index": p.index, "field": p.field, "message": p.message} for p in self.problems],
            error_count=self.problem_count,
        )


async def check_events(body: bytes, *, ndjson: bool, window: AcceptWindow) -> Checked:
    """Validate a body of one event, a JSON array or NDJSON: its events, or its (first) problems."""
    payload = _as_json_array(body, ndjson=ndjson)
    checked = Checked()
    items = _items(payload)
    if items is None:  # not a readable array: the whole-body path says why, in one short call
        events, problems = validate_events(payload, window=window)
        if ndjson and any(p.index == -1 for p in problems):
            problems = _ndjson_line_problems(body) or problems
        elif any(p.index == -1 for p in problems):
            problems = [utf8_problem(body) or p for p in problems]  # offsets as sent, before any wrapping
        checked.events = events
        checked.add(problems, 0)
        return checked
    parsed, exact = items
    if len(parsed) > MAX_EVENTS:
        raise Problem(413, f"A request holds at most {MAX_EVENTS:,} events; this one has {len(parsed):,}. Split it.")
    for start in range(0, len(parsed), CHUNK):
        chunk = parsed[start : start + CHUNK]
        events, problems = validate_events(chunk if exact else orjson.dumps(chunk), window=window)
        if problems:
            checked.add(problems, start)
            checked.events = []
        elif not checked.problem_count:
            checked.events += events
        if start + CHUNK < len(parsed):
            await asyncio.sleep(0)  # let the health check and other clients in between chunks
    return checked


def _items(payload: bytes) -> tuple[list[Any], bool] | None:
    """The body's items and whether they were parsed exactly (Decimals), or None when it is not a JSON array
    that parses."""
    if needs_exact_parse(payload):
        parsed, unreadable = parse_exactly(payload)
        exact = True
    else:
        try:
            parsed, unreadable, exact = orjson.loads(payload), [], False
        except orjson.JSONDecodeError:
            return None
    if unreadable or not isinstance(parsed, list):
        return None
    return parsed, exact


def _ndjson_line_problems(body: bytes) -> list[ValidationProblem]:
    """Name each NDJSON line that is not JSON, by its index among the non-empty lines."""
    problems = []
    lines = [line for line in body.strip().split(b"\n") if line.strip()]
    for index, line in enumerate(lines):
        try:
            json.loads(line)
        except ValueError as exc:
            not_utf8 = utf8_problem(line)
            why = not_utf8.message.removeprefix("body is ") if not_utf8 else f"not valid JSON: {exc}"
            problems.append(ValidationProblem(index, "", f"line {index + 1} is {why}"))
    return problems


def _as_json_array(body: bytes, *, ndjson: bool) -> bytes:
    """Turn one event, a JSON array or NDJSON into a JSON array, keeping bad lines indexed."""
    stripped = body.strip()
    if not stripped:
        raise Problem(422, "The body is empty; send one event, a JSON array of events, or NDJSON.", errors=[])
    if ndjson:
        lines = [line for line in stripped.split(b"\n") if line.strip()]
        if len(lines) > MAX_EVENTS:
            raise Problem(413, f"A request holds at most {MAX_EVENTS:,} events; this one has {len(lines):,}. Split it.")
        return b"[" + b",".join(lines) + b"]"
    if stripped[:1] == b"{":
        return b"[" + stripped + b"]"
    if stripped[:1] == b"[":
        return stripped
    raise Problem(422, "The body must be a JSON object, a JSON array, or NDJSON (application/x-ndjson).", errors=[])
