"""uvicorn's HTTP protocol with a deadline on request headers, against slow-loris clients.

uvicorn arms its only timer (keep-alive) after a response: a client that opens a connection and sends
nothing, or sends its headers a byte at a time, holds a socket and a file descriptor for as long as it
likes, and enough of them starve the process of descriptors. Here every request's headers must be
complete within `header_timeout` seconds of the connection opening (or of the request's first byte on a
kept-alive connection); otherwise the client gets a 408 that says so and the connection is closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["header_deadline_protocol"]


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # a new request on a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        message = (
            f"The request headers did not arrive within {self.header_timeout:g} s; send the whole request at once."
        ).encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
        )
        self.transport.close()


def header_deadline_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class to pass as uvicorn's `http=`, with request headers due within `header_timeout` s."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout": header_timeout})
