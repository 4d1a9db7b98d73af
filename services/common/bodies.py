"""Reading a request body to a size limit (413 beyond), for every route that takes one."""

from __future__ import annotations

from starlette.requests import Request

from services.common.problems import Problem

__all__ = ["MAX_BODY", "read_limited"]

MAX_BODY = 10 * 1024 * 1024


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body, or 413 as soon as it is declared or found to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    mib = f"{limit / (1024 * 1024):g} MiB"
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"The body is {int(declared):,} bytes; the limit is {mib}. Send smaller batches.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"The body is over the {mib} limit. Send smaller batches.")
        chunks.append(chunk)
    return b"".join(chunks)
