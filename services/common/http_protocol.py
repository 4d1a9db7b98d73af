"""uvicorn's HTTP protocol with deadlines on request headers and bodies, against slow-loris clients.

uvicorn arms its only timer (keep-alive) after a response: a client that opens a connection and sends
nothing, or sends its headers a byte at a time, holds a socket and a file descriptor for as long as it
likes, and enough of them starve the process of descriptors. Here every request's headers must be
complete within `header_timeout` seconds of the connection opening (or of the request's first byte on a
kept-alive connection); otherwise the client gets a 408 that says so and the connection is closed. Likewise
a request's body must be complete within `body_timeout` seconds of its headers: a body trickled a few bytes at
a time would otherwise hold the request (and whatever the route holds while it reads) for ever.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["header_deadline_protocol"]


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    _header_deadline: asyncio.TimerHandle | None = None
    _body_deadline: asyncio.TimerHandle | None = None

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
        if not (self.parser.should_upgrade() and self._should_upgrade()):  # a WebSocket has no body to wait for
            self._body_deadline = self.loop.call_later(self.body_timeout, self._body_too_slow)

    def handle_websocket_upgrade(self) -> None:
        self._disarm_body_deadline()  # the connection belongs to the WebSocket protocol from here
        super().handle_websocket_upgrade()

    def on_message_complete(self) -> None:
        self._disarm_body_deadline()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        self._disarm_body_deadline()
        super().connection_lost(exc)

    def _disarm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        self._time_out(f"The request headers did not arrive within {self.header_timeout:g} s; "
                       "send the whole request at once.")

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        cycle = getattr(self, "cycle", None)
        if cycle is not None and cycle.response_started:  # the route answered already: just stop waiting
            self.transport.close()
            return
        self._time_out(f"The request body did not arrive within {self.body_timeout:g} s of its headers; "
                       "send the whole body at once (SALESPULSE_HTTP_BODY_TIMEOUT).")

    def _time_out(self, text: str) -> None:
        if self.transport.is_closing():
            return
        message = text.encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
        )
        self.transport.close()


def header_deadline_protocol(header_timeout: float, body_timeout: float = 30.0) -> type[HttpToolsProtocol]:
    """The protocol class to pass as uvicorn's `http=`: request headers due within `header_timeout` s of the
    request's start, its body within `body_timeout` s of its headers."""
    return type(
        "HeaderDeadlineProtocol",
        (_HeaderDeadlineProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )
