"""What clients of our own HTTP services (the CSV importer, the demo feeder) make of an attempt: an answer to
keep, or a reason to try again — a connection error, a rate limit (429) or a service starting or restarting
(502, 503, 504) — with the Retry-After it asked for. The waiting is services/common/backoff.py's."""

from __future__ import annotations

import httpx

from services.common.backoff import RETRY_STATUSES, retry_after_seconds

__all__ = ["problem_detail", "retry_reason"]


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
