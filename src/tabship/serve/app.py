"""The routes behind the guard: form, report, metadata and docs, as a FastAPI app built on first use."""

import sys
from importlib import resources
from typing import Any

from tabship import __version__
from tabship.artifact import REPORT_FILE
from tabship.config import ServeSettings
from tabship.errors import RecordError, TabshipError
from tabship.predictor import Prediction, Predictor
from tabship.serve import contract, form
from tabship.serve.api import JsonApi, error_payload, model_info
from tabship.serve.guard import Guard, ServerState, probe_answer
from tabship.serve.metrics import CONTENT_TYPE, Metrics

__all__ = ["Guard", "ServerState", "build_framework", "create_app"]


def create_app(
    predictor: Predictor, settings: ServeSettings | None = None, state: ServerState | None = None
) -> Guard:
    """The ASGI app for one loaded model: routes, error mapping, probes and limits."""
    settings = settings or ServeSettings()
    state = state or ServerState()
    metrics = Metrics()
    api = JsonApi(predictor, settings, metrics)
    return Guard(
        lambda: build_framework(predictor, settings, state, metrics, api),
        predictor,
        state,
        metrics,
        settings,
        api,
    )


def build_framework(
    predictor: Predictor,
    settings: ServeSettings,
    state: ServerState,
    metrics: Metrics,
    api: JsonApi,
) -> Any:
    """The FastAPI app behind the guard: form, report, metadata, docs (and the documented routes)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    schema = predictor.schema
    has_report = REPORT_FILE in predictor.metadata.get("files", {})

    def error_response(exc: TabshipError) -> JSONResponse:
        status, payload = error_payload(exc)
        return JSONResponse(payload, status_code=status)

    app = FastAPI(
        title=f"tabship: {predictor.metadata.get('target_label') or predictor.target}",
        version=__version__,
        description="Predictions from a model trained by tabship. Every field is required and no others are allowed.",
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

    # The guard answers the probes and /metrics itself; these routes document them and give
    # the same answers if the framework is ever reached directly.
    def probe(path: str) -> JSONResponse:
        status, payload = probe_answer(path, state)
        return JSONResponse(payload, status_code=status)

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> JSONResponse:
        return probe("/healthz")

    @app.get(
        "/startupz", summary="Startup: model loaded and warmed up (draining does not change it)"
    )
    async def startupz() -> JSONResponse:
        return probe("/startupz")

    @app.get("/readyz", summary="Readiness: model loaded and warmed up, not draining")
    async def readyz() -> JSONResponse:
        return probe("/readyz")

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

    return app
