"""The one route table: (method, path) -> handler, read by dispatch, metrics and OpenAPI.

Adding a route is one entry in `build_routes` plus its handler; the layers, the metric
labels and /openapi.json follow from the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tabship.errors import MethodNotAllowedError, NotFoundError
from tabship.serve.http import Answer, Request

if TYPE_CHECKING:
    from tabship.serve.app import Context

Handler = Callable[[Request], Awaitable[Answer]]


@dataclass(frozen=True)
class Route:
    """One entry of the table, with what OpenAPI says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    # Probes skip the concurrency cap: a busy pod must still say it is alive.
    probe: bool = False
    # OpenAPI: the request body (media type -> JSON Schema), the 200 answer and other statuses.
    body: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer: dict[str, Any] = field(default_factory=dict)
    media: str = "application/json"
    errors: tuple[int, ...] = ()


class RouteTable:
    """Routes by path and method; the only list of what the server answers."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._by_path: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            methods = self._by_path.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"route {route.method} {route.path} is declared twice")
            methods[route.method] = route

    def find(self, method: str, path: str) -> Route:
        """The route for a request, or the 404/405 error that answers it."""
        methods = self._by_path.get(path)
        if methods is None:
            raise NotFoundError(f"{path[:200]!r} is not a route of this server; see /docs")
        # HEAD is GET without the body (RFC 9110 9.3.2), wherever GET is answered.
        route = methods.get("GET" if method == "HEAD" else method)
        if route is None:
            allowed = tuple(sorted({*methods, *(("HEAD",) if "GET" in methods else ())}))
            raise MethodNotAllowedError(
                f"{method[:32]!r} is not allowed on {path}; use {' or '.join(allowed)}", allowed
            )
        return route

    def label(self, path: str) -> str:
        """The metric and log label of a path: the route's own, or 'other' for unknown paths."""
        return path if path in self._by_path else "other"

    def is_probe(self, method: str, path: str) -> bool:
        """Whether this request goes to a probe (never queued behind work)."""
        route = self._by_path.get(path, {}).get("GET" if method == "HEAD" else method)
        return route is not None and route.probe

    @property
    def paths(self) -> list[str]:
        """Every path, in table order."""
        return list(self._by_path)


def build_routes(context: Context) -> RouteTable:
    """Every route the server answers, with its handler."""
    from tabship.serve import contract, pages
    from tabship.serve.form import MEDIA_TYPE as FORM

    api, form, probes, docs = context.api, context.form, context.probes, context.docs
    schema, max_batch = context.predictor.schema, context.settings.max_batch
    strict = context.predictor.strict_categories
    record = {"application/json": contract.record_schema(schema, strict)}
    batch = {"application/json": contract.batch_schema(schema, max_batch, strict)}
    refused = (413, 415, 422)
    html, text = "text/html", "text/plain"
    status = {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    }
    routes = [
        Route("GET", "/", form.page, "The prediction form", media=html),
        Route(
            "POST",
            "/predict",
            form.submit,
            "Form submit; answers the page",
            media=html,
            body={FORM: contract.form_schema(schema, strict)},
            errors=(413, 415, 422),
        ),
        Route(
            "POST",
            "/predict_api",
            api.predict_one,
            "Predict one record; answers the bare value (its id in X-Prediction-Id)",
            body=record,
            answer={"type": ["number", "string"]},
            errors=refused,
        ),
        Route(
            "POST",
            "/v1/predict",
            api.predict_many,
            "Predict a batch of records",
            body=batch,
            answer=contract.batch_answer_schema(context.predictor),
            errors=(*refused, 504),
        ),
        Route(
            "GET",
            "/v1/model",
            api.model,
            "The model card: schema, metrics, engine, versions",
            answer={"type": "object"},
        ),
        Route(
            "GET",
            "/healthz",
            probes.healthz,
            "Liveness: the process answers",
            probe=True,
            answer=status,
        ),
        Route(
            "GET",
            "/startupz",
            probes.startupz,
            "Startup: model loaded and warmed up",
            probe=True,
            answer=status,
            errors=(503,),
        ),
        Route(
            "GET",
            "/readyz",
            probes.readyz,
            "Readiness: warmed up and not draining",
            probe=True,
            answer=status,
            errors=(503,),
        ),
        Route(
            "GET",
            "/metrics",
            probes.metrics,
            "Prometheus metrics (text format)",
            probe=True,
            answer={"type": "string"},
            media=text,
        ),
        Route("GET", "/openapi.json", docs.openapi, "This document"),
        Route("GET", "/docs", docs.page, "API documentation (Swagger UI)", media=html),
        *(
            Route("GET", path, handler, "A static file used by the pages", media=media)
            for path, handler, media in pages.static_routes()
        ),
    ]
    if context.report is not None:
        routes.append(
            Route("GET", "/report", context.report.page, "The training report", media=html)
        )
    if context.monitoring is not None:
        from tabship.monitor.routes import monitor_routes

        routes.extend(monitor_routes(context.monitoring))
    return RouteTable(routes)
