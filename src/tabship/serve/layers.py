"""What every request passes, as one chain over a read `Request`: limits, dispatch, accounting.

One implementation, two callers: the ASGI adapter (serve/asgi.py), which reads the body from
ASGI messages, and the protocol's lane (serve/lane.py), which answers requests whose
whole body came with their head without an ASGI cycle. Either way the order is the same:
the host is checked before the body is read; the body is read whole before a concurrency
slot is taken, so a client that stalls can hold a socket but never a slot; the key gate
runs before the slot; dispatch finds the route in the one table and maps errors once; and
every answer, a refusal or a crash included, gets its metric and its log line.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tabship.config import ServeSettings
from tabship.errors import BadHostError, BusyError, InternalError, RequestError, TabshipError
from tabship.serve.auth import Gate
from tabship.serve.http import Answer, Request, error_answer
from tabship.serve.prometheus import Metrics
from tabship.serve.routes import RouteTable

if TYPE_CHECKING:
    from tabship.monitor.writer import LogWriter

# How many Host values found good `Layers` remembers.
MAX_GOOD_HOSTS = 64
# Statuses of requests that ended without an answer: nginx's "client closed request".
CLIENT_CLOSED = 499
KNOWN_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
# A body over the limit is read and thrown away up to this many times the limit, so simple
# clients that send everything before reading see the 413 instead of a reset connection.
DISCARD_FACTOR = 16
LATE_BODY = "request: the body did not arrive within the read timeout; send it at once"
# POSIX: writes of at most this many bytes to a pipe are atomic (Linux: 4096). Lines are ASCII
# (methods outside the known ones are JSON-escaped), so characters are bytes here.
PIPE_BUF = 4096


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


class AccessLog:
    """The JSON access lines, written once per event-loop turn instead of once per request.

    Under load a turn answers several requests: their lines go out in one write. Nothing waits
    longer than the turn, and whatever is held is written at exit.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        if not self.lines:
            loop = asyncio._get_running_loop()
            if loop is None:  # outside a server (a script, a test): at once
                sys.stdout.write(line)
                return
            loop.call_soon(self.flush)
        self.lines.append(line)

    def flush(self) -> None:
        """Write the held lines in writes of whole lines, each at most PIPE_BUF bytes.

        Workers share one stdout pipe: a write up to PIPE_BUF is atomic, so lines of two
        processes never interleave mid-line (stdout is line-buffered: one write per call).
        """
        lines, self.lines = self.lines, []
        start = size = 0
        for end, line in enumerate(lines):
            if size + len(line) > PIPE_BUF and end > start:
                sys.stdout.write("".join(lines[start:end]))
                start, size = end, 0
            size += len(line)
        if start < len(lines):
            sys.stdout.write("".join(lines[start:]))


class Layers:
    """Limits, dispatch and accounting for one app: every request's path, whoever reads it."""

    def __init__(
        self,
        table: RouteTable,
        metrics: Metrics,
        state: ServerState,
        settings: ServeSettings,
        gate: Gate | None = None,
        log: LogWriter | None = None,
    ) -> None:
        self.table = table
        self.metrics = metrics
        self.state = state
        self.settings = settings
        self.gate = gate
        self.log = log
        # Exact names, and `.example.com` for the domain and its subdomains; `*` answers any
        # Host, as no list does.
        entries = () if "*" in settings.allowed_hosts else settings.allowed_hosts
        self.hosts = frozenset(host_name(host) for host in entries if not host.startswith("."))
        self.domains = tuple(host for host in entries if host.startswith("."))
        # Host values found good, as sent: the next request with one is not parsed again.
        self._good_hosts: set[bytes] = set()
        self.access_log = AccessLog()

    def begin(self, request: Request) -> None:
        """A request's head is in: count it as open (probes are not)."""
        request.probe = self.table.is_probe(request.method, request.path)
        if not request.probe:
            self.state.open += 1

    def check_host(self, request: Request) -> Answer | None:
        """The refusal for a bad Host (before the body is read), or None."""
        if request.probe:  # the kubelet asks by pod IP: probes answer whatever the Host
            return None
        try:
            self._check_host(request.headers)
        except BadHostError as exc:
            return self.refusal(request, exc)
        return None

    def check_key(self, request: Request) -> Answer | None:
        """The key gate's refusal from the head alone (the body unread: the connection then
        ends), or None; `answer` checks again, so a None here only saves an upload."""
        refused = None if self.gate is None else self.gate(request)
        if refused is not None:
            request.close = True
        return refused

    def refusal(self, request: Request, error: TabshipError) -> Answer:
        """The answer for a request refused before dispatch; it ends the connection."""
        request.close = True
        return error_answer(error, self.table.style(request.path))

    async def answer(self, request: Request) -> Answer:
        """The answer to a request whose body is in: key gate, concurrency cap, dispatch."""
        try:
            return await self._limited(request)
        except Exception as exc:  # the last net: log it, answer 500
            sys.stderr.write(f"internal error: {''.join(traceback.format_exception(exc))}")
            return self.refusal(request, InternalError("internal error"))

    async def _limited(self, request: Request) -> Answer:
        # Before the slot: a flood without a key never takes one. No keys file: no work here.
        if self.gate is not None:
            refused = self.gate(request)
            if refused is not None:
                return refused
        if request.probe:
            return await self._dispatch(request)
        if self.state.in_flight >= self.settings.max_concurrency:
            self.metrics.rejected.inc()
            busy = BusyError("server busy; retry shortly")
            return error_answer(busy, self.table.style(request.path))
        self.state.in_flight += 1
        try:
            answer = await self._dispatch(request)
            if request.rows > 1 and request.logged is not None and self.log is not None:
                # Backpressure: a batch answer waits (bounded) for a log that fell behind;
                # its slot stays taken, so a flood meets the concurrency cap meanwhile.
                await self.log.room()
            return answer
        finally:
            self.state.in_flight -= 1

    async def _dispatch(self, request: Request) -> Answer:
        """Find the route, run its handler; errors map once, in the route's style."""
        try:
            route, request.params = self.table.match(request.method, request.path)
            return await route.handler(request)
        except TabshipError as exc:
            style = self.table.style(request.path)
            answer = error_answer(exc, style, generic=self.settings.generic_errors)
            if answer.status >= 500 and not isinstance(exc, RequestError):
                sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n")
            return answer

    def done(self, request: Request, status: int, elapsed: float) -> None:
        """A request ended with `status` after `elapsed` seconds: its metric and its log line."""
        if not request.probe:
            self.state.open -= 1
        route = self.table.label(request.path)
        method = request.method
        shown = method if method in KNOWN_METHODS else json.dumps(method[:32])[1:-1]
        self._write(route, method_label(method), shown, status, elapsed, request.rows)
        if request.logged is not None and status < 400 and self.log is not None:
            # After the answer is written: a one-row request's row is made (about 1 µs) and
            # queued; the writer thread does the database.
            self.log.submit(request.logged, route, _request_id(request), elapsed)

    def refused(self, status: int, elapsed: float) -> None:
        """Account for a request the protocol refused before the app saw it (400, 408, 431)."""
        self._write("other", "other", "other", status, elapsed, 0)

    def _write(
        self, route: str, label: str, shown: str, status: int, elapsed: float, rows: int
    ) -> None:
        self.metrics.observe(route, label, status, elapsed)
        self.access_log.write(
            f'{{"ts": {time.time():.3f}, "method": "{shown}", "route": "{route}", '
            f'"status": {status}, "ms": {elapsed * 1000:.3f}, "rows": {rows}}}\n'
        )

    def _check_host(self, headers: list[tuple[bytes, bytes]]) -> None:
        hosts = [value for key, value in headers if key == b"host"]
        if len(hosts) > 1:  # RFC 9112 3.2: a request with two Host fields is refused
            raise BadHostError("host: the request has more than one Host header")
        listed = self.hosts or self.domains
        if not (listed or (hosts and b":" in hosts[0])):  # any Host, and no port to check
            return
        given = hosts[0] if hosts else b""
        if given in self._good_hosts:  # clients send the same Host again and again
            return
        host = given.decode("latin-1")
        name = host_name(host)
        if name == BAD_PORT:  # RFC 9112 3.2: a Host field with an invalid value is a 400
            raise BadHostError(
                f"host {host[:100]!r}: the port is not a number from 0 to 65535; "
                "give a valid port or none"
            )
        if listed and name not in self.hosts and not ("." + name).endswith(self.domains):
            raise BadHostError(f"host {host[:100]!r} is not served here; see --allowed-hosts")
        if len(self._good_hosts) < MAX_GOOD_HOSTS:  # bounded: clients may invent Hosts
            self._good_hosts.add(bytes(given))


def _request_id(request: Request) -> str:
    """The client's X-Request-Id (bounded, printable), or '' to use the prediction id."""
    for key, value in request.headers:
        if key == b"x-request-id":
            # A field value's trailing spaces and tabs are not part of it (RFC 9110 5.5);
            # the parser drops only the leading ones.
            text = bytes(value).rstrip(b" \t")[:64].decode("latin-1")
            return text if text.isprintable() else ""
    return ""


# What `host_name` gives for a Host value whose port is not a port (`localhost:abc`).
BAD_PORT = "\x00bad port"


def host_name(host: str) -> str:
    """The name in a Host value or an --allowed-hosts entry: no port, IPv6 without brackets,
    no trailing dot (`localhost.` is `localhost`, as DNS and Django read it); BAD_PORT when
    the port is not a number from 0 to 65535."""
    host = host.strip().lower()
    if host.startswith("["):
        inner, closed, port = host[1:].partition("]")
        # Brackets hold an IPv6 address only; '[localhost]' names nothing.
        if not (closed and ":" in inner):
            return "\x00invalid"
        good = not port or (port[0] == ":" and _is_port(port[1:]))
        return inner if good else BAD_PORT
    if host.count(":") == 1:
        host, _, port = host.partition(":")
        if not _is_port(port):
            return BAD_PORT
    return host[:-1] if host.endswith(".") else host


def _is_port(port: str) -> bool:
    """Whether the text after a host's colon is a port: digits up to 65535, or none (RFC 3986)."""
    return not port or (len(port) <= 5 and port.isascii() and port.isdigit() and int(port) <= 65535)
