"""What clients of our own HTTP services (the CSV importer, the demo feeder) make of an attempt: an answer to
keep, or a reason to try again — a connection error, a rate limit (429) or a service starting or restarting
(502, 503, 504) — with the Retry-After it asked for. The waiting is services/common/backoff.py's."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from services.common.backoff import RETRY_STATUSES, Backoff, retry_after_seconds

__all__ = ["HttpRetries", "OutOfRetries", "Retry", "problem_detail", "retry_reason"]


def problem_detail(response: httpx.Response) -> str:
    """A problem document's detail and first field errors, or the start of the body."""
    try:
        problem = response.json()
    except ValueError:
        return response.text[:300]
    if not isinstance(problem, dict):
        return response.text[:300]
    text = str(problem.get("detail") or problem.get("title") or "")
    errors = problem.get("errors") or []
    if isinstance(errors, list) and errors:
        fields = [error for error in errors[:5] if isinstance(error, dict)]
        text += " " + "; ".join(f"{error.get('field') or '(body)'}: {error.get('message')}" for error in fields)
    return text.strip()


def retry_reason(outcome: httpx.Response | httpx.TransportError) -> tuple[str, float] | None:
    """None for an answer to keep; else why to try again, and the seconds Retry-After asked for (0 if none)."""
    if isinstance(outcome, httpx.TransportError):
        return f"{type(outcome).__name__}: {outcome}".rstrip(": "), 0.0
    if outcome.status_code not in RETRY_STATUSES:
        return None
    return f"{outcome.status_code} {problem_detail(outcome)}".strip(), retry_after_seconds(outcome.headers)


class OutOfRetries(Exception):
    """Nothing but reasons to try again for the whole budget; the message says the last one."""

    def __init__(self, waited: float, reason: str) -> None:
        super().__init__(f"no answer after {waited:.0f} s ({reason})")
        self.waited = waited
        self.reason = reason


@dataclass(frozen=True)
class Retry:
    """Try again after `wait` seconds, because of `reason`; `note` is True when it is time to tell the user."""

    wait: float
    reason: str
    note: bool


@dataclass
class HttpRetries:
    """The decisions of one request's tries, for a sync or an async client alike: keep the answer, or wait (the
    back-off, at least the Retry-After asked for) and try again, until `give_up_after` seconds (None: never).
    Notes are due on the first retry and then every `note_every` seconds."""

    backoff: Backoff
    give_up_after: float | None
    note_every: float = 15.0
    clock: Callable[[], float] = time.monotonic
    _began: float = field(init=False)
    _noted: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._began = self.clock()

    def after(self, outcome: httpx.Response | httpx.TransportError) -> Retry | None:
        """None when `outcome` is the answer to keep; else how long to wait. Raises OutOfRetries."""
        retry = retry_reason(outcome)
        if retry is None:
            return None
        reason, retry_after = retry
        now = self.clock()
        waited = now - self._began
        if self.give_up_after is not None and waited >= self.give_up_after:
            raise OutOfRetries(waited, reason)
        note = self._noted is None or now - self._noted >= self.note_every
        if note:
            self._noted = now
        return Retry(self.backoff.next(at_least=retry_after), reason, note)
