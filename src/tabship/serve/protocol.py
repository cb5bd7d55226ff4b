"""uvicorn's httptools protocol with two limits the ASGI app cannot set: header size and time.

The app first sees a request once its headers are complete, so a client that never ends
its headers (slowly, or with one endless header) must be stopped here: 431 past the header
byte cap, 408 when the headers have not arrived within the read timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tabship.config import ServeSettings
from tabship.errors import HeadersTooLargeError, ReadTimeoutError, RequestError
from tabship.serve.http import READ_LATE, error_payload

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _raw_answer(error: RequestError) -> bytes:
    """A whole HTTP/1.1 answer, in the body shape every other error has."""
    import json

    status, payload = error_payload(error)
    body = json.dumps(payload).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-content-type-options: nosniff\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a header size cap and one read deadline per request.

    The deadline runs from a request's first byte (or the connection's opening) to the end of
    its body. Late headers are answered here with 408; a late body is flagged in the request's
    state and the app woken, so the limits layer answers the 408 and it is logged and counted.
    One timer per request, in the protocol: the app's hot path waits on nothing extra.
    """

    header_cap = 16 * 1024
    read_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._in_headers = True
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counting = self._in_headers
        super().data_received(data)
        if counting and self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.header_cap:
                self._refuse(
                    HeadersTooLargeError(f"headers: over the {self.header_cap}-byte limit")
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request on this connection starts with the keep-alive timer; its
        # headers get their own deadline from its first byte.
        self._in_headers = True
        self._header_bytes = 0

    def send_400_response(self, msg: str) -> None:
        # httptools refused the request line or headers: answer in our shape, not text.
        self._refuse(RequestError("request: not valid HTTP/1.1 (request line or headers)"))

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.read_timeout, self._late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._refuse(ReadTimeoutError("headers: did not arrive within the read timeout"))
        elif self.cycle is not None and self.cycle.more_body:
            self.cycle.scope["state"][READ_LATE] = True
            self.cycle.message_event.set()

    def _refuse(self, error: RequestError) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_raw_answer(error))
            self.transport.close()


def guarded_protocol(settings: ServeSettings) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` setting, with these settings' limits."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {"header_cap": settings.max_header_bytes, "read_timeout": settings.read_timeout},
    )
