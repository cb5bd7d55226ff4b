"""uvicorn's httptools protocol with the limits an ASGI app cannot set, and a lane of its own.

The app first sees a request once its headers are complete, so a client that never ends
its headers (slowly, or with one endless header) must be stopped here: 431 past the header
byte cap, 408 when the headers have not arrived within the read timeout.

The lane (serve/lane.py) answers most requests without uvicorn's ASGI cycle; the rest go
through uvicorn as before.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, NoReturn

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tabship.errors import (
    BodyTooLargeError,
    HeadersTooLargeError,
    MethodNotImplementedError,
    ReadTimeoutError,
    RequestError,
    VersionNotSupportedError,
)
from tabship.serve.http import (
    READ_LATE,
    error_payload,
    unmet_expectation,
)

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}
SPEAK_HTTP_1_1 = "send HTTP/1.1 (or HTTP/1.0)"
# What llhttp says of a request line whose version is not 1.x, or of HTTP/2's preface
# (`PRI * HTTP/2.0`, a client speaking HTTP/2 without asking to upgrade).
_VERSION_ERRORS = ("Invalid HTTP version", "Pause on PRI/Upgrade")


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


# A request line as RFC 9112 3 writes it: a method token, a target, an HTTP/1.x version.
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) [\x21-\x7e]+ HTTP/1\.[01]\r?\n")


class _Heedless:
    """Parser callbacks that take nothing: for `_unknown_method`'s second look."""


def _unknown_method(data: bytes) -> RequestError | None:
    """501 for a well-formed request line whose method the parser does not know (`FOO /
    HTTP/1.1`, a lower-case `get`: no route could take it), or None to refuse the bytes
    as malformed (400): `GARBAGE`, a method with a quote, or a line this chunk does not
    start with (pipelined behind requests read whole)."""
    line = _REQUEST_LINE.match(data)
    if line is None:
        return None
    try:  # the chunk's first line: is its own method the one the parser stopped at?
        httptools.HttpRequestParser(_Heedless()).feed_data(line.group(0))
    except httptools.HttpParserInvalidMethodError:
        method = line.group(1).decode("ascii")[:32]
        return MethodNotImplementedError(
            f"request: {method!r} is not a method this server implements; use GET, POST or "
            "HEAD (methods are case-sensitive)"
        )
    except httptools.HttpParserError:
        pass
    return None


class _BadHead(Exception):
    """Raised inside a parser callback to stop parsing a request head it refuses."""


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with size caps and one read deadline per request.

    The deadline runs from a request's first byte (or the connection's opening) to the end of
    its body. Late headers are answered here with 408; a late body is flagged in the request's
    state and the app woken, so the limits layer answers the 408 and it is logged and counted.
    One timer per request, in the protocol: the app's hot path waits on nothing extra.
    The head (request line, headers, and chunked trailers, which are dropped) is capped at
    `header_cap` bytes (431); a message's body bytes at `body_cap` (413, connection closed).
    """

    header_cap = 16 * 1024
    body_cap = 16 * 1024 * 1024
    read_timeout = 10.0
    # Told of each refusal made here (status, seconds), for the log line and the metrics.
    on_refusal: Callable[[int, float], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._body_bytes = 0
        self._in_headers = True
        # Heads parsed and messages begun on this connection: what a chunk spanned.
        self._heads_read = 0
        self._messages_begun = 0
        self._bad_head: RequestError | None = None
        self._started = time.perf_counter()
        self._timer: asyncio.TimerHandle | None = None
        # A request asked to upgrade the connection: it is parsed again without asking.
        self._upgrading = False
        # A refusal waiting for the answers to earlier requests on the connection.
        self._refusal: RequestError | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio's signature
        """The client has finished sending (a half-close, `shutdown(SHUT_WR)`): what it is
        owed is answered, then the connection closes. uvicorn closed it at once, and the
        answers then went nowhere, though counted and logged as given."""
        if self.cycle is None or not self._answering():
            return None
        self.cycle.keep_alive = False  # the newest request: the connection closes after it
        return True  # keep the transport open for writing

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self._in_headers:
            self._arm()  # any byte between requests starts the next one's deadline
        counting = self._in_headers
        marks = self._heads_read, self._messages_begun
        self._feed(data)
        if counting and self._in_headers and self._heads_read == marks[0]:
            # The parser is still inside the same head (a header arriving in pieces, which
            # `_count_head` sees only whole). A chunk in which a head ended holds other bytes
            # too (a body, pipelined requests): the head's were counted as it was parsed. Added
            # whole, such a chunk of a request answered at once (a 422 for a 17 KB body) put
            # the next request over the cap: an unasked 431 on a keep-alive connection.
            self._head_bytes += len(data)
            if self._head_bytes > self.header_cap:
                self._refuse(
                    HeadersTooLargeError(f"headers: over the {self.header_cap}-byte limit")
                )
        elif not counting and self._messages_begun == marks[1]:
            self._body_bytes += len(data)
            if self._body_bytes > self.body_cap and not self.transport.is_closing():
                self._refuse(BodyTooLargeError(f"body: over the {self.body_cap}-byte limit"))

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, but a request asking to upgrade the connection is parsed
        again without asking (see `_without_upgrade`)."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            self._bad_head = self._bad_head or _unknown_method(data)
            self.send_400_response("")
        except httptools.HttpParserError as exc:
            if self._bad_head is None and str(exc) in _VERSION_ERRORS:
                self._bad_head = VersionNotSupportedError(
                    f"request line: its HTTP version is not served here; {SPEAK_HTTP_1_1}"
                )
            self.send_400_response("")
        except httptools.HttpParserUpgrade as upgrade:
            self._without_upgrade(data[upgrade.args[0] :])

    def _without_upgrade(self, rest: bytes) -> None:
        """Parse the request that asked for an upgrade again, without `Upgrade` and the
        `Connection: upgrade` token, followed by the bytes after its head.

        The parser reads no body for such a request and hands the rest of the stream over as
        the new protocol; tabship speaks none (no WebSocket, no h2c), and RFC 9110 7.8 lets a
        server ignore the ask. Dropping the request's body instead would answer it without
        one, and bytes a client sent as body would be read as a request of their own (request
        smuggling): so the same bytes are read again as the plain HTTP/1.1 request they are.
        """
        self._upgrading = False
        method = self.parser.get_method()
        if method == b"CONNECT":
            self._refuse(RequestError("request: CONNECT is not served here"))
            return
        head = [method, b" ", self.url, b" HTTP/", self.parser.get_http_version().encode()]
        for name, value in self.headers:
            if name == b"connection":
                kept = [t.strip() for t in value.split(b",") if t.strip().lower() != b"upgrade"]
                value = b", ".join(kept)
            if name != b"upgrade" and value:
                head.append(b"\r\n" + name + b": " + value)
        head.append(b"\r\n\r\n")
        self.parser = httptools.HttpRequestParser(self)
        self._head_bytes = 0
        self._feed(b"".join(head) + rest)

    def on_message_begin(self) -> None:
        # uvicorn's ASGI scope is built once the head is in, and only for requests the lane
        # leaves to uvicorn (`_build_scope`).
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._in_headers = True
        self._messages_begun += 1
        self._head_bytes = self._body_bytes = 0
        if self._timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        if self._in_headers:
            super().on_header(name, value)
        # Chunked trailers arrive after the headers: counted, never added to them.

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._heads_read += 1
        self._check_head()
        if self.parser.should_upgrade():
            self._upgrading = True  # read again without the upgrade (`_feed`); not answered
            return
        self._use_target_authority()
        if not self._take_lane():
            self._build_scope()
            super().on_headers_complete()

    def _check_head(self) -> None:
        """Refuse a head this server cannot take: a request line without a version (HTTP/0.9:
        400) or of a version it does not speak (HTTP/2.0 in text: 505); an HTTP/1.1 request
        without Host (RFC 9112 3.2); an `Expect:` other than 100-continue (417); a transfer
        coding other than chunked, which the parser reads as chunked (`gzip, chunked`) and
        would hand on compressed as the body (400, not RFC 9112 6.1's 501: the client's
        mistake)."""
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            if version.startswith("0."):
                self._stop_head(
                    RequestError(f"request line: names no HTTP version; {SPEAK_HTTP_1_1}")
                )
            self._stop_head(
                VersionNotSupportedError(
                    f"request line: HTTP/{version} is not served here; {SPEAK_HTTP_1_1}"
                )
            )
        host = False
        for name, value in self.headers:
            if name == b"host":
                host = True
            elif name == b"expect":
                unmet = unmet_expectation([(name, value)])
                if unmet is not None:
                    self._stop_head(unmet)
            elif name == b"transfer-encoding":
                codings = {c.strip().lower() for c in value.split(b",")}
                if codings != {b"chunked"}:
                    self._stop_head(
                        RequestError(
                            "transfer-encoding: only chunked is accepted; compress a body with "
                            "Content-Encoding: gzip instead"
                        )
                    )
        if not host and version == "1.1":
            self._stop_head(RequestError("host: an HTTP/1.1 request must carry a Host header"))

    def _take_lane(self) -> bool:
        """Whether this request is answered without uvicorn's ASGI cycle (serve/lane.py)."""
        return False

    def _build_scope(self) -> None:
        """uvicorn's scope for this request, holding the head read so far."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.headers.extend(headers)
        self.url, self.expect_100_continue = url, expect

    def on_message_complete(self) -> None:
        if self._upgrading:  # the parser's end of a request it read no body for
            return
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None:
            if self._answering():
                self.transport.pause_reading()  # uvicorn resumed it for the next request
            else:
                self._send_refusal(self._refusal)
            return
        if self.cycle is None or self.cycle.response_complete:
            # Unless a pipelined request's head is already in: its body is not head bytes.
            self._in_headers = True
            self._head_bytes = self._body_bytes = 0

    def send_400_response(self, msg: str) -> None:
        # httptools refused the head, or a callback stopped it: answer in our shape, not text.
        self._refuse(
            self._bad_head or RequestError("request: not valid HTTP/1.1 (request line or headers)")
        )

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.header_cap:
            self._stop_head(HeadersTooLargeError(f"headers: over the {self.header_cap}-byte limit"))

    def _stop_head(self, error: RequestError) -> NoReturn:
        """Stop parsing this request; it is refused with `error` (see send_400_response)."""
        self._bad_head = error
        raise _BadHead

    def _use_target_authority(self) -> None:
        """An absolute-form target names the host itself (RFC 9112 3.2.2): it replaces Host."""
        if not self.url.lower().startswith((b"http://", b"https://")):
            return
        authority = self.url.split(b"/", 3)[2]
        self.headers[:] = [(k, v) for k, v in self.headers if k != b"host"]
        self.headers.append((b"host", authority))

    def _arm(self) -> None:
        self._started = time.perf_counter()
        self._timer = self.loop.call_later(self.read_timeout, self._late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._refuse(ReadTimeoutError("headers: did not arrive within the read timeout"))
        elif self.cycle is not None and self.cycle.more_body:
            self.cycle.scope["state"][READ_LATE] = True
            self.cycle.message_event.set()

    def _refuse(self, error: RequestError) -> None:
        self._disarm()
        if self.transport.is_closing() or self._refusal is not None:
            return
        if self._answering():
            # Answers go out in the order of the requests: an earlier request read whole is
            # answered first, then this refusal, then the close. Nothing more is read.
            self._refusal = error
            self.transport.pause_reading()
            return
        self._send_refusal(error)

    def _answering(self) -> bool:
        """Whether an earlier request, read whole, is still to be answered (the request being
        refused, its body still coming, is not waited for)."""
        cycles = [cycle for cycle, _ in self.pipeline]
        if self.cycle is not None:
            cycles.append(self.cycle)
        return any(not cycle.response_complete and not cycle.more_body for cycle in cycles)

    def _send_refusal(self, error: RequestError) -> None:
        self._refusal = None
        self.transport.write(_raw_answer(error))
        self.transport.close()
        if self.on_refusal is not None:
            self.on_refusal(error.status, time.perf_counter() - self._started)
