"""RFC 9457 problem details: every error a client can cause, with what to change."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    503: "Service unavailable",
}


class ProblemDetail(BaseModel):
    """application/problem+json (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = Field(None, description="for validation problems: [{index, field, message}]")
    error_count: int | None = Field(
        None, description="how many problems there are in all, when `errors` lists only the first of them"
    )


# What each status means when a route declares it; a route can word its own (see `problem_responses`).
_MEANINGS: dict[int, str] = {
    400: "the request is not what this route takes",
    401: "missing, unknown or revoked API key",
    403: "the key's role may not do this",
    404: "not found",
    409: "conflicts with what was accepted before",
    413: "the body is over the size limit",
    422: "invalid input; `detail` and `errors` say what to change",
    429: "too many requests; retry after `Retry-After` seconds",
    503: "a dependency is unavailable; retry after `Retry-After` seconds",
}
# Every route that needs a key can answer these (503: the key lookup needs the database).
KEYED: tuple[int, ...] = (401, 403, 422, 429, 503)
_PROBLEM_SCHEMA: dict[str, Any] = ProblemDetail.model_json_schema()


def problem_responses(*statuses: int, **wording: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring each status as application/problem+json.

    The schema is inlined rather than a model, so FastAPI does not also claim application/json for errors.
    `wording` overrides a meaning per status, keyed like `s409="..."`.
    """
    return {  # string keys: openapi_extra merges these raw into FastAPI's own "422"
        str(status): {
            "description": wording.get(f"s{status}", _MEANINGS[status]),
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in dict.fromkeys(statuses)
    }


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        type_: str | None = None,
        error_count: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.type_ = type_
        self.error_count = error_count


def problem_response(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    type_: str | None = None,
    error_count: int | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_ or f"https://salespulse.dev/problems/{status}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if error_count is not None:
        body["error_count"] = error_count
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_path(loc: tuple[Any, ...]) -> tuple[int | None, str]:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return None, ".".join(str(p) for p in parts)


def unreadable_body(cause: BaseException | None) -> str | None:
    """Why a JSON body could not be read, worded for its sender; None when `cause` is about something else.

    FastAPI answers both cases with a bare 400 "There was an error parsing the body"."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"body is not UTF-8: byte 0x{cause.object[cause.start]:02x} at offset {cause.start} is invalid; "
            "send JSON encoded as UTF-8"
        )
    if isinstance(cause, RecursionError):
        return "body nests arrays or objects too deeply to parse; send plain JSON a few levels deep"
    return None


def _validation_error(err: Any) -> dict[str, Any]:
    if err.get("type") == "json_invalid":  # FastAPI puts the character offset where the field would be
        why = (err.get("ctx") or {}).get("error", "invalid")
        return {"index": None, "field": "", "message": f"body is not valid JSON: {why} (at character {err['loc'][-1]})"}
    index, field = _field_path(tuple(err.get("loc", ())))
    return {"index": index, "field": field, "message": err.get("msg", "invalid")}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, errors=exc.errors, headers=exc.headers, type_=exc.type_, error_count=exc.error_count
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        why = unreadable_body(exc.__cause__) if exc.status_code == 400 else None
        if why is not None:
            return problem_response(422, f"The {why}.", errors=[{"index": None, "field": "", "message": why}])
        if isinstance(exc.__cause__, BodyTooLarge):  # a chunked body grew past install_body_limit's limit
            return problem_response(413, exc.__cause__.detail)
        return problem_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_validation_error(err) for err in exc.errors()]
        return problem_response(422, "The request is not valid; see errors.", errors=errors)

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(ConnectionError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is down, out of connections or its pool is exhausted: a clear, retryable answer
        # instead of a dropped connection; nothing was written by the failed request.
        _log.warning("database unavailable for %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(
            503,
            "The database is unavailable or out of connections; retry after the Retry-After seconds.",
            headers={"Retry-After": "2"},
        )


class BodyTooLarge(Exception):
    """Raised by the body limit's receive when a request body grows past the limit."""

    def __init__(self, limit: int) -> None:
        self.detail = f"The body is over the {limit:,}-byte limit; send less."
        super().__init__(self.detail)


class _BodyLimit:
    """Pure ASGI: a request body over `limit` bytes gets a 413 problem. A Content-Length over it is answered
    before a byte is read; a chunked body that grows past it fails the route's body parsing, which the
    HTTPException handler above turns into the same 413 (Starlette's own limit answers in plain text)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await problem_response(413, BodyTooLarge(self.limit).detail)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


def install_body_limit(app: FastAPI, limit: int) -> None:
    """Refuse request bodies over `limit` bytes with a 413 problem (services whose bodies are small)."""
    app.add_middleware(_BodyLimit, limit=limit)
