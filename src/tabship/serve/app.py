"""The FastAPI app: routes translate HTTP to one Predictor.predict call, nothing more."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tabship import __version__
from tabship.artifact import REPORT_FILE
from tabship.config import ServeSettings
from tabship.errors import (
    BodyTooLargeError,
    RecordError,
    RequestTimeoutError,
    TabshipError,
)
from tabship.predictor import Prediction, Predictor
from tabship.serve import contract, form
from tabship.serve.api import JsonApi, error_payload, model_info
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
        app: ASGIApp,
        state: ServerState,
        metrics: Metrics,
        settings: ServeSettings,
        api: JsonApi,
    ) -> None:
        self.app = app
        self.state = state
        self.metrics = metrics
        self.settings = settings
        self.api = api
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="tabship-batch")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
                    else:
                        await self.app(scope, _limited(receive, limit), send_and_record)
                finally:
                    if not probe:
                        self.state.in_flight -= 1
                        self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        self.metrics.observe(route, scope["method"], status, elapsed)
        line = {
            "ts": round(time.time(), 3),
            "method": scope["method"],
            "route": route,
            "status": status,
            "ms": round(elapsed * 1000, 3),
            "rows": scope.get("state", {}).get("rows", 0),
        }
        sys.stdout.write(json.dumps(line) + "\n")

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
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw_headers = [
        (b"content-type", b"application/json"),
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


def error_response(exc: TabshipError) -> JSONResponse:
    """FastAPI's side of the one error mapping in api.error_payload."""
    status, payload = error_payload(exc)
    return JSONResponse(payload, status_code=status)


def create_app(
    predictor: Predictor, settings: ServeSettings | None = None, state: ServerState | None = None
) -> Any:
    """The ASGI app for one loaded model: routes, error mapping, probes and limits."""
    settings = settings or ServeSettings()
    state = state or ServerState()
    metrics = Metrics()
    schema = predictor.schema
    warm_record = contract.example_record(schema)
    has_report = REPORT_FILE in predictor.metadata.get("files", {})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        predictor.predict([warm_record])  # the first run allocates; keep that off a user's request
        state.ready = True
        yield
        state.ready = False

    app = FastAPI(
        title=f"tabship: {predictor.metadata.get('target_label') or predictor.target}",
        version=__version__,
        description="Predictions from a model trained by tabship. Every field is required and no others are allowed.",
        lifespan=lifespan,
        redoc_url=None,
    )
    static_dir = resources.files("tabship.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    @app.exception_handler(TabshipError)
    async def on_tabship_error(_: Request, exc: TabshipError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n")
        return JSONResponse(
            {"detail": "internal error; the server log has the details"}, status_code=500
        )

    api = JsonApi(predictor, settings, metrics)

    def _respond(request: Request, answered: tuple[int, bytes, int]) -> Response:
        status, body, rows = answered
        request.state.rows = rows
        return Response(body, status_code=status, media_type="application/json")

    async def predict_records(request: Request, records: Any) -> Prediction:
        prediction = predictor.predict(records)
        request.state.rows = len(records)
        metrics.predictions.inc(len(records))
        return prediction

    record_body = contract.json_body(contract.record_schema(schema))
    batch_body = contract.json_body(contract.batch_schema(schema, settings.max_batch))
    responses: dict[int | str, dict[str, Any]] = {
        413: {"description": "Body or batch over the limit"},
        415: {"description": "Body is not application/json"},
        422: {"description": "Invalid input; every bad field is named"},
    }

    @app.post(
        "/predict_api",
        openapi_extra={"requestBody": record_body},
        responses=responses,
        summary="Predict one record; answers the bare value",
    )
    async def predict_api(request: Request) -> Response:
        return _respond(
            request,
            api.answer("/predict_api", request.headers.get("content-type"), await request.body()),
        )

    @app.post(
        "/v1/predict",
        openapi_extra={"requestBody": batch_body},
        responses=responses,
        summary="Predict a batch of records",
    )
    async def predict_batch(request: Request) -> Response:
        return _respond(
            request,
            api.answer("/v1/predict", request.headers.get("content-type"), await request.body()),
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(
            form.render_page(predictor, form.fields_for(predictor), report=has_report)
        )

    if has_report:
        # Read (and sha256-checked) once at start; a self-contained file, so one response.
        report_html = predictor.artifact.read(REPORT_FILE)

        @app.get("/report", response_class=HTMLResponse, include_in_schema=False)
        async def training_report() -> Response:
            return Response(report_html, media_type="text/html; charset=utf-8")

    @app.post("/predict", response_class=HTMLResponse, include_in_schema=False)
    async def predict_form(request: Request) -> HTMLResponse:
        submitted, record, problems = form.parse_form(
            await request.body(), request.headers.get("content-type"), schema.features
        )
        prediction = None
        if not problems:
            try:
                prediction = await predict_records(request, [record])
            except RecordError as exc:
                problems = exc.problems
        fields = form.fields_for(predictor, submitted, problems)
        html = form.render_page(predictor, fields, prediction, report=has_report)
        return HTMLResponse(html, status_code=422 if problems else 200)

    @app.get("/v1/model", summary="The model's metadata: schema, metrics, engine, versions")
    async def model_metadata() -> JSONResponse:
        meta = predictor.metadata
        keys = (
            "task",
            "target",
            "target_label",
            "unit",
            "classes",
            "schema",
            "model",
            "onnx",
            "leaderboard",
            "sort_by",
            "training",
            "versions",
            "created",
            "format_version",
        )
        return JSONResponse(
            {
                **{k: meta.get(k) for k in keys},
                **model_info(predictor),
                "max_batch": settings.max_batch,
            }
        )

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get(
        "/startupz", summary="Startup: model loaded and warmed up (draining does not change it)"
    )
    async def startupz() -> JSONResponse:
        if not state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "started"})

    @app.get("/readyz", summary="Readiness: model loaded and warmed up, not draining")
    async def readyz() -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text format",
            }
        },
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Guard(app, state, metrics, settings, api)
