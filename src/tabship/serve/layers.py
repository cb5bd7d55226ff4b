"""The ASGI layers every request passes, outermost first: accounting, limits, dispatch.

Accounting is outermost so every answer, a limit's refusal included, gets its metric and its
log line, written in a `finally` even when something below fails. Limits read the whole body
before a concurrency slot is taken, so a client that stalls can hold a socket but never a
slot; the read deadline itself is kept by the protocol (serve/protocol.py), which flags a
late body in the request's state. Dispatch finds the route in the one table and maps errors
once.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tabship.config import ServeSettings
from tabship.errors import (
    BadHostError,
    BodyTooLargeError,
    BusyError,
    InternalError,
    ReadTimeoutError,
    RequestError,
    TabshipError,
)
from tabship.serve.auth import Gate
from tabship.serve.http import (
    READ_LATE,
    ASGIApp,
    Message,
    Receive,
    Request,
    Scope,
    Send,
    error_answer,
    send_answer,
)
from tabship.serve.prometheus import Metrics
from tabship.serve.routes import RouteTable

if TYPE_CHECKING:
    from tabship.monitor.writer import LogWriter

# Statuses of requests that ended without an answer: nginx's "client closed request".
CLIENT_CLOSED = 499
KNOWN_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
# A body over the limit is read and thrown away up to this many times the limit, so simple
# clients that send everything before reading see the 413 instead of a reset connection.
DISCARD_FACTOR = 16
LATE_BODY = "request: the body did not arrive within the read timeout; send it at once"


class ClientGone(Exception):
    """The client disconnected before its request was answered."""


@dataclass
class ServerState:
    """What the probes report: warmed up and ready, or draining before exit."""

    ready: bool = False
    draining: bool = False
    # Plain counters, read by the metrics' gauges at scrape time: nothing to lock per request.
    in_flight: int = 0
    open: int = 0


def method_label(method: str) -> str:
    """The method as a metric label: clients invent methods, the label set must stay small."""
    return method if method in KNOWN_METHODS else "other"


class Accounting:
    """Metrics and one JSON log line per request, whatever happens below."""

    def __init__(
        self,
        app: ASGIApp,
        table: RouteTable,
        metrics: Metrics,
        state: ServerState,
        log: LogWriter | None = None,
    ) -> None:
        self.app = app
        self.table = table
        self.metrics = metrics
        self.state = state
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        counted = not self.table.is_probe(scope["method"], scope["path"])
        if counted:
            self.state.open += 1
        try:
            await self.app(scope, receive, recorded)
        except ClientGone:
            status = status or CLIENT_CLOSED
        except Exception as exc:  # the last net: count it, log it, answer 500 if still possible
            sys.stderr.write(f"internal error: {''.join(traceback.format_exception(exc))}")
            if status == 0:
                internal = error_answer(
                    InternalError("internal error"), self.table.style(scope["path"])
                )
                await send_answer(recorded, internal, close=True)
            status = status or 500
        finally:
            if counted:
                self.state.open -= 1
            self._account(scope, status or CLIENT_CLOSED, time.perf_counter() - started)

    def _account(self, scope: Scope, status: int, elapsed: float) -> None:
        route = self.table.label(scope["path"])
        method = scope["method"]
        shown = method if method in KNOWN_METHODS else json.dumps(method[:32])[1:-1]
        state = scope.get("state", {})
        rows = state.get("rows", 0)
        self._write(route, method_label(method), shown, status, elapsed, rows)
        logged = state.get("logged")
        if logged is not None and self.log is not None:
            # Only a queue append here: the writer thread does the JSON and the database.
            self.log.submit(logged, route, _request_id(scope), elapsed)

    def refused(self, status: int, elapsed: float) -> None:
        """Account for a request the protocol refused before the app saw it (400, 408, 431)."""
        self._write("other", "other", "other", status, elapsed, 0)

    def _write(
        self, route: str, label: str, shown: str, status: int, elapsed: float, rows: int
    ) -> None:
        self.metrics.observe(route, label, status, elapsed)
        sys.stdout.write(
            f'{{"ts": {time.time():.3f}, "method": "{shown}", "route": "{route}", '
            f'"status": {status}, "ms": {elapsed * 1000:.3f}, "rows": {rows}}}\n'
        )


def _request_id(scope: Scope) -> str:
    """The client's X-Request-Id (bounded, printable), or '' to use the prediction id."""
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            text = bytes(value[:64]).decode("latin-1")
            return text if text.isprintable() else ""
    return ""


class Limits:
    """Host check, body size and read deadline, then the concurrency cap."""

    def __init__(
        self,
        app: ASGIApp,
        table: RouteTable,
        state: ServerState,
        settings: ServeSettings,
        metrics: Metrics,
        gate: Gate | None = None,
    ) -> None:
        self.app = app
        self.table = table
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self.gate = gate
        self.hosts = frozenset(host_name(host) for host in settings.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        probe = self.table.is_probe(scope["method"], scope["path"])
        try:
            if not probe:  # the kubelet asks by pod IP: probes answer whatever the Host
                self._check_host(scope["headers"])
            body = await self._read_body(scope, receive)
        except _TooLarge as exc:
            if exc.unread:
                await self._discard(scope, receive)
            style = self.table.style(scope["path"])
            await send_answer(send, error_answer(exc.error, style), close=True)
            return
        except TabshipError as exc:
            await send_answer(send, error_answer(exc, self.table.style(scope["path"])), close=True)
            return
        # Before the slot: a flood without a key never takes one. No keys file: no work here.
        refused = self.gate(scope) if self.gate is not None else None
        if refused is not None:
            await send_answer(send, refused)
            return
        replay = _replay(body, receive)
        if probe:
            await self.app(scope, replay, send)
            return
        if self.state.in_flight >= self.settings.max_concurrency:
            self.metrics.rejected.inc()
            busy = BusyError("server busy; retry shortly")
            await send_answer(send, error_answer(busy, self.table.style(scope["path"])))
            return
        self.state.in_flight += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.state.in_flight -= 1

    def _check_host(self, headers: list[tuple[bytes, bytes]]) -> None:
        hosts = [value for key, value in headers if key == b"host"]
        if len(hosts) > 1:  # RFC 9112 3.2: a request with two Host fields is refused
            raise BadHostError("host: the request has more than one Host header")
        if not self.hosts:
            return
        host = (hosts[0] if hosts else b"").decode("latin-1")
        if host_name(host) not in self.hosts:
            raise BadHostError(f"host {host[:100]!r} is not served here; see --allowed-hosts")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # A client waiting for "100 Continue" has sent nothing: answer before it does.
            waiting = any(k == b"expect" for k, _ in scope["headers"])
            raise _TooLarge(
                BodyTooLargeError(f"body: {declared} bytes is over the {limit}-byte limit"),
                unread=not waiting,
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await _receive(scope, receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > limit:
                raise _TooLarge(BodyTooLargeError(f"body: over the {limit}-byte limit"), more)
            chunks.append(chunk)
            if not more:
                return chunk if len(chunks) == 1 else b"".join(chunks)

    async def _discard(self, scope: Scope, receive: Receive) -> None:
        """Read and drop what the client is still sending, up to a bound and the deadline."""
        budget = self.settings.max_body_bytes * DISCARD_FACTOR
        try:
            while budget > 0:
                message = await _receive(scope, receive)
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
        except ReadTimeoutError:
            return


class _TooLarge(Exception):
    """A body over the limit, and whether some of it is still to be read from the client."""

    def __init__(self, error: BodyTooLargeError, unread: bool) -> None:
        self.error = error
        self.unread = unread


def host_name(host: str) -> str:
    """The name in a Host value or an --allowed-hosts entry: no port, IPv6 without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        inner, closed, _ = host[1:].partition("]")
        # Brackets hold an IPv6 address only; '[localhost]' names nothing.
        return inner if closed and ":" in inner else "\x00invalid"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _receive(scope: Scope, receive: Receive) -> Message:
    """The next body message; ClientGone if the client left, 408 once the body is late."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    if message.get("more_body") and (scope.get("state") or {}).get(READ_LATE):
        raise ReadTimeoutError(LATE_BODY)
    return message


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read, then passes on (for disconnects)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Dispatch:
    """Find the route, hand the handler the request, send its answer; errors map once."""

    def __init__(self, table: RouteTable, generic_errors: bool = False) -> None:
        self.table = table
        self.generic_errors = generic_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        request = Request(
            method=scope["method"],
            path=scope["path"],
            headers=scope["headers"],
            body=message.get("body", b""),
            query=scope.get("query_string", b""),
        )
        try:
            route, request.params = self.table.match(request.method, request.path)
            answer = await route.handler(request)
        except TabshipError as exc:
            answer = error_answer(exc, self.table.style(request.path), generic=self.generic_errors)
            if answer.status >= 500 and not isinstance(exc, RequestError):
                sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n")
        state = scope.setdefault("state", {})
        state["rows"] = request.rows
        if request.logged is not None and answer.status < 400:
            state["logged"] = request.logged
        await send_answer(send, answer, head=request.method == "HEAD")
