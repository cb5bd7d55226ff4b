"""The outermost ASGI layer: lifespan, probes, limits, metrics, the log line and the JSON fast path.

It needs no web framework: the form, docs and metadata routes are a FastAPI app built on
first use (in a thread right after start-up), so a new pod is ready as soon as the model
has answered its warm-up prediction instead of after FastAPI's half-second import.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tabship.config import ServeSettings
from tabship.errors import BodyTooLargeError, RequestTimeoutError
from tabship.predictor import Predictor
from tabship.serve import contract
from tabship.serve.api import JsonApi, error_payload
from tabship.serve.metrics import CONTENT_TYPE, Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A single record is a few hundred bytes and predicts in microseconds: answer it inline.
INLINE_MAX_BYTES = 16 * 1024
PROBES = frozenset({"/healthz", "/readyz", "/startupz", "/metrics"})
ROUTES = frozenset(
    {"/", "/predict", "/predict_api", "/v1/predict", "/v1/model", "/docs", "/openapi.json", *PROBES}
)


_QUOTED_METHODS = {m: f'"{m}"' for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS")}


@dataclass
class ServerState:
    """What the probes report: warmed up and ready, or draining before exit."""

    ready: bool = False
    draining: bool = False
    in_flight: int = 0


def _route_label(path: str) -> str:
    if path in ROUTES:
        return path
    return "/static" if path.startswith("/static/") else "other"


class Guard:
    """Outermost layer: concurrency cap, body limit, metrics and one JSON log line per request."""

    def __init__(
        self,
        framework: Callable[[], ASGIApp],
        predictor: Predictor,
        state: ServerState,
        metrics: Metrics,
        settings: ServeSettings,
        api: JsonApi,
    ) -> None:
        self.make_framework = framework
        self.predictor = predictor
        self.state = state
        self.metrics = metrics
        self.settings = settings
        self.api = api
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="tabship-batch")
        self.app: ASGIApp | None = None
        self.building: asyncio.Future[ASGIApp] | None = None

    def start_building(self) -> asyncio.Future[ASGIApp]:
        """Build the FastAPI app once, in a thread, off the event loop."""
        if self.building is None:
            loop = asyncio.get_running_loop()
            self.building = loop.run_in_executor(self.pool, self.make_framework)
        return self.building

    async def framework(self) -> ASGIApp:
        """The FastAPI app for the other routes (waits for the build when it is still running)."""
        if self.app is None:
            self.app = await self.start_building()
        return self.app

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Warm up, then say ready; the framework is built in the background from then on."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The first run allocates; keep that off a user's request.
                self.predictor.predict([contract.example_record(self.predictor.schema)])
                self.state.ready = True
                self.start_building()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.ready = False
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def probe(self, path: str, send: Send) -> None:
        """Liveness, startup, readiness and metrics: answered here, never queued behind work."""
        if path == "/metrics":
            body = self.metrics.render()
            await _send_bytes(send, 200, body, content_type=CONTENT_TYPE)
            return
        status, payload = probe_answer(path, self.state)
        await _plain(send, status, payload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            await (await self.framework())(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        route = _route_label(path)
        status = 500
        probe = path in PROBES

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if not probe and self.state.in_flight >= self.settings.max_concurrency:
            self.metrics.rejected.inc()
            await _plain(
                send_and_record, 503, {"detail": "server busy; retry shortly"}, {"retry-after": "1"}
            )
        else:
            limit = self.settings.max_body_bytes
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _plain(
                    send_and_record,
                    413,
                    {"detail": f"body: {declared} bytes is over the {limit}-byte limit"},
                )
            else:
                if not probe:
                    self.state.in_flight += 1
                    self.metrics.in_flight.inc()
                try:
                    if scope["method"] == "POST" and path in self.api.routes:
                        # The hot path: the same JSON API without the framework's per-request layers.
                        rows = await self._answer_json(scope, receive, send_and_record, path, limit)
                        scope.setdefault("state", {})["rows"] = rows
                    elif probe and scope["method"] == "GET":
                        await self.probe(path, send_and_record)
                    else:
                        app = await self.framework()
                        await app(scope, _limited(receive, limit), send_and_record)
                finally:
                    if not probe:
                        self.state.in_flight -= 1
                        self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        self.metrics.observe(route, scope["method"], status, elapsed)
        # The line is JSON; only the method comes from the client, so only it is escaped.
        method = _QUOTED_METHODS.get(scope["method"]) or json.dumps(scope["method"])
        rows = scope.get("state", {}).get("rows", 0)
        sys.stdout.write(
            f'{{"ts": {time.time():.3f}, "method": {method}, "route": "{route}", '
            f'"status": {status}, "ms": {elapsed * 1000:.3f}, "rows": {rows}}}\n'
        )

    async def _answer_json(
        self, scope: Scope, receive: Receive, send: Send, path: str, limit: int
    ) -> int:
        try:
            body = await _read_body(receive, limit)
        except BodyTooLargeError as exc:
            status, payload = error_payload(exc)
            await _plain(send, status, payload)
            return 0
        if body is None:
            return 0  # the client went away; nobody to answer
        content_type = _header(scope, b"content-type")
        if len(body) <= INLINE_MAX_BYTES:
            status, data, rows = self.api.answer(path, content_type, body)
        else:
            # A big batch runs in a thread so the loop can answer 504 at the timeout and keep
            # serving; the thread finishes on its own and its result is dropped.
            work = asyncio.get_running_loop().run_in_executor(
                self.pool, self.api.answer, path, content_type, body
            )
            try:
                status, data, rows = await asyncio.wait_for(
                    work, timeout=self.settings.request_timeout
                )
            except TimeoutError:
                limit_s = self.settings.request_timeout
                status, payload = error_payload(
                    RequestTimeoutError(
                        f"request: took longer than the {limit_s:g} s request timeout; send smaller batches"
                    )
                )
                data, rows = json.dumps(payload).encode(), 0
        await _send_bytes(send, status, data)
        return rows


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, refusing more than `limit` bytes; None if the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body: over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    raw_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _limited(receive: Receive, limit: int) -> Receive:
    """A receive that stops a chunked body as soon as it passes the limit."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLargeError(f"body: over the {limit}-byte limit")
        return message

    return wrapped


async def _plain(
    send: Send, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    await _send_bytes(send, status, json.dumps(payload).encode(), headers)


def probe_answer(path: str, state: ServerState) -> tuple[int, dict[str, str]]:
    """Status and body of /healthz, /startupz or /readyz for the server's current state."""
    if path == "/healthz":
        return 200, {"status": "ok"}
    if path == "/startupz":
        return (200, {"status": "started"}) if state.ready else (503, {"status": "starting"})
    if state.draining:
        return 503, {"status": "draining"}
    return (200, {"status": "ready"}) if state.ready else (503, {"status": "starting"})
