"""The one route table: (method, path) -> handler, read by dispatch, metrics and OpenAPI.

Adding a route is one entry in `build_routes` plus its handler; the layers, the metric
labels and /openapi.json follow from the table. A path may hold `{param}` segments (the Open
Inference Protocol's model names); the template, never the client's path, is the label.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tabship.errors import MethodNotAllowedError, NotFoundError
from tabship.serve.http import TABSHIP_ERRORS, Answer, Request

if TYPE_CHECKING:
    from tabship.serve.app import Context

Handler = Callable[[Request], Awaitable[Answer]]
# Templated paths remembered once matched (a server answers a few model paths).
MAX_REMEMBERED_PATHS = 256


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
    # The error body shape the route's protocol expects (serve/http.py error_payload).
    style: str = TABSHIP_ERRORS
    # OpenAPI: the JSON Schema of each `{param}` segment of the path.
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Who may call it when API keys are on (serve/auth.py): "key" by default, so a route
    # added anywhere is protected unless it says otherwise; "open" (probes, static files),
    # "page" (open with --public-pages), "metrics" (protected with --protect-metrics).
    access: str = "key"


# The monitoring routes' paths (monitor/routes.py): served with a prediction log only, and
# otherwise answered with how to turn them on rather than a bare 404.
FEEDBACK_PATH = "/v1/feedback"
MONITOR_PATH = "/monitor"
MONITORING_OFF = (
    "is served with a prediction log only; start the server with --log-db URL (or "
    "TABSHIP_LOG_DB), e.g. --log-db sqlite:///predictions.db"
)


class RouteTable:
    """Routes by path and method; the only list of what the server answers."""

    def __init__(self, routes: Iterable[Route], off: Mapping[str, str] | None = None) -> None:
        self.routes = tuple(routes)
        # Paths this server does not serve but another configuration would: why, for the 404.
        self.off = dict(off or {})
        self._by_path: dict[str, dict[str, Route]] = {}
        # Templated paths by segment count: a handful, tried only when no exact path matches.
        self._templates: dict[int, list[tuple[tuple[str, ...], str]]] = {}
        self._styles: dict[str, str] = {}
        self._matched: dict[str, tuple[str, dict[str, str]]] = {}
        for route in self.routes:
            methods = self._by_path.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"route {route.method} {route.path} is declared twice")
            methods[route.method] = route
            segments = tuple(route.path.split("/"))
            if "{" in route.path and len(methods) == 1:
                self._templates.setdefault(len(segments), []).append((segments, route.path))
            if route.style != TABSHIP_ERRORS:
                self._styles[segments[1]] = route.style

    def _lookup(self, path: str) -> tuple[str, dict[str, str]] | None:
        """The table path that answers `path`, and the values of its `{param}` segments.

        A templated path is matched once, then remembered: the layers ask three times per
        request. The memory is bounded, so clients inventing paths cannot grow it.
        """
        if path in self._by_path:
            return path, {}
        found = self._matched.get(path)
        if found is None:
            found = self._match_template(path)
            if found is not None and len(self._matched) < MAX_REMEMBERED_PATHS:
                self._matched[path] = found
        return found

    def _match_template(self, path: str) -> tuple[str, dict[str, str]] | None:
        segments = path.split("/")
        for template, template_path in self._templates.get(len(segments), ()):
            params: dict[str, str] = {}
            for want, got in zip(template, segments, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return template_path, params
        return None

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request with its path parameters, or the 404/405 error that answers it."""
        found = self._lookup(path)
        if found is None:
            if path in self.off:
                raise NotFoundError(f"{path} {self.off[path]}")
            raise NotFoundError(f"{path[:200]!r} is not a route of this server; see /docs")
        template, params = found
        methods = self._by_path[template]
        # HEAD is GET without the body (RFC 9110 9.3.2), wherever GET is answered.
        route = methods.get("GET" if method == "HEAD" else method)
        if route is None:
            allowed = tuple(sorted({*methods, *(("HEAD",) if "GET" in methods else ())}))
            raise MethodNotAllowedError(
                f"{method[:32]!r} is not allowed on {path[:200]}; use {' or '.join(allowed)}",
                allowed,
            )
        return route, params

    def find(self, method: str, path: str) -> Route:
        """The route for a request, or the 404/405 error that answers it."""
        return self.match(method, path)[0]

    def label(self, path: str) -> str:
        """The metric and log label of a path: its route's path or template, else 'other'."""
        if path in self._by_path:
            return path
        found = self._lookup(path)
        return "other" if found is None else found[0]

    def is_probe(self, method: str, path: str) -> bool:
        """Whether this request goes to a probe (never queued behind work)."""
        found = self._by_path.get(path)
        if found is None:
            lookup = self._lookup(path)
            found = {} if lookup is None else self._by_path[lookup[0]]
        route = found.get("GET" if method == "HEAD" else method)
        return route is not None and route.probe

    def style(self, path: str) -> str:
        """The error style for a path: its protocol's, also for paths under it that do not exist."""
        return self._styles.get(path.split("/", 2)[1] if path.count("/") else "", TABSHIP_ERRORS)

    def access(self, method: str, path: str) -> str:
        """Who may call this request's route; an unknown route needs a key (it reveals nothing)."""
        route = self.route_for(method, path)
        return "key" if route is None else route.access

    def route_for(self, method: str, path: str) -> Route | None:
        """The route that answers a request, or None (no error: for the layers' questions)."""
        found = self._lookup(path)
        if found is None:
            return None
        return self._by_path[found[0]].get("GET" if method == "HEAD" else method)

    @property
    def paths(self) -> list[str]:
        """Every path, in table order."""
        return list(self._by_path)


def build_routes(context: Context) -> RouteTable:
    """Every route the server answers, with its handler."""
    from tabship.serve import contract, pages
    from tabship.serve.explain import (
        explain_answer_schema,
        explain_body_schema,
        whatif_answer_schema,
        whatif_body_schema,
    )
    from tabship.serve.form import MEDIA_TYPE as FORM
    from tabship.serve.v2_contract import v2_routes

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
        Route("GET", "/", form.page, "The prediction form", media=html, access="page"),
        Route(
            "POST",
            "/predict",
            form.submit,
            "Form submit; answers the page",
            media=html,
            body={FORM: contract.form_schema(schema, strict)},
            errors=(413, 415, 422),
            access="page",
        ),
        Route(
            "POST",
            "/predict_api",
            api.predict_one,
            "Predict one record; answers the bare value (its id in X-Prediction-Id)",
            body=record,
            answer=contract.prediction_value(context.predictor.labels),
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
            "POST",
            "/v1/explain",
            context.explain.explain,
            "Each feature's contribution to each record's prediction (Shapley values)",
            body={
                "application/json": explain_body_schema(
                    record["application/json"], context.explain.max_records
                )
            },
            answer=explain_answer_schema(schema.names, context.predictor.labels),
            errors=(*refused, 409, 504),
        ),
        Route(
            "POST",
            "/v1/whatif",
            context.explain.whatif,
            "One record's prediction as one feature moves across its training range",
            body={"application/json": whatif_body_schema(record["application/json"], schema.names)},
            answer=whatif_answer_schema(context.predictor.labels),
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
            access="open",
            answer=status,
        ),
        Route(
            "GET",
            "/startupz",
            probes.startupz,
            "Startup: model loaded and warmed up",
            probe=True,
            access="open",
            answer=status,
            errors=(503,),
        ),
        Route(
            "GET",
            "/readyz",
            probes.readyz,
            "Readiness: warmed up and not draining",
            probe=True,
            access="open",
            answer=status,
            errors=(503,),
        ),
        Route(
            "GET",
            "/metrics",
            probes.metrics,
            "Prometheus metrics (text format)",
            probe=True,
            access="metrics",
            answer={"type": "string"},
            media=text,
        ),
        Route("GET", "/openapi.json", docs.openapi, "This document", access="page"),
        Route(
            "GET", "/docs", docs.page, "API documentation (Swagger UI)", media=html, access="page"
        ),
        *(
            Route(
                "GET", path, handler, "A static file used by the pages", media=media, access="open"
            )
            for path, handler, media in pages.static_routes()
        ),
        *v2_routes(context.v2, schema, max_batch),
    ]
    if context.report is not None:
        routes.append(
            Route(
                "GET",
                "/report",
                context.report.page,
                "The training report",
                media=html,
                access="page",
            )
        )
    if context.monitoring is None:
        return RouteTable(routes, {path: MONITORING_OFF for path in (FEEDBACK_PATH, MONITOR_PATH)})
    from tabship.monitor.routes import monitor_routes

    return RouteTable([*routes, *monitor_routes(context.monitoring)])
