"""Sending mapped rows to ingest: NDJSON batches, what each answer (202, 409, 413, 422, 401/403) means for the
rows, and retries with backoff while ingest is unreachable; the `Tally` counts what became of every row."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson

from services.common.backoff import Backoff
from services.common.http_retry import HttpRetries, OutOfRetries
from services.ingest.importer.exit_codes import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from services.ingest.importer.mapper import ImportRow

__all__ = [
    "RETRY_FIRST_DELAY_S",
    "RETRY_GIVE_UP_S",
    "RETRY_MAX_DELAY_S",
    "RETRY_NOTE_EVERY_S",
    "FatalImportError",
    "IngestSender",
    "IngestUnreachable",
    "Tally",
]


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
        retries = HttpRetries(Backoff(first=RETRY_FIRST_DELAY_S, most=RETRY_MAX_DELAY_S), self.give_up_after,
                              note_every=RETRY_NOTE_EVERY_S)
        while True:
            try:
                outcome: httpx.Response | httpx.TransportError = self.client.post(
                    self.url, content=body, headers=self.headers
                )
            except httpx.TransportError as exc:
                outcome = exc
            try:
                retry = retries.after(outcome)
            except OutOfRetries as exc:
                raise IngestUnreachable(
                    f"no answer from {self.url} after {self.give_up_after:.0f} s ({exc.reason})"
                ) from None
            if retry is None:
                assert isinstance(outcome, httpx.Response)
                return outcome
            if retry.note:
                self.note(f"{self.url}: {retry.reason}; retrying for up to {self.give_up_after:.0f} s")
            self.sleep(retry.wait)


class IngestUnreachable(Exception):
    """Ingest did not take a batch within the retry budget."""
