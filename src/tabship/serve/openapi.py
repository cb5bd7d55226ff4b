"""The OpenAPI document, built from the route table: every route, its body and its answers."""

from __future__ import annotations

import re
from typing import Any

from tabship import __version__
from tabship.serve.http import V2_ERRORS
from tabship.serve.routes import Route, RouteTable

_REASONS = {
    400: "Bad request (e.g. a Host not served here)",
    404: "No such route",
    405: "Method not allowed on this route",
    408: "Headers or body did not arrive within the read timeout",
    413: "Body or batch over the limit",
    415: "Body is not of the media type the route takes",
    422: "Invalid input; every bad field is named",
    431: "Request headers over the size limit",
    503: "Busy (retry after the Retry-After seconds) or not ready",
    504: "The request took longer than the request timeout",
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {}, "message": {"type": "string"}},
    "required": ["detail", "message"],
}
# The Open Inference Protocol's error: {"error": message}, bad inputs listed in "detail".
_V2_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "array"}},
    "required": ["error"],
}


def error_schema(route: Route) -> dict[str, Any]:
    """The JSON Schema of the route's error body: tabship's, or its protocol's (V2)."""
    return _V2_ERROR if route.style == V2_ERRORS else ERROR_SCHEMA


def _error(route: Route, status: int) -> dict[str, Any]:
    """How `route` answers `status`: our error body, or what the page or probe sends instead."""
    if route.probe and status == 503:  # a probe's "no" has the probe's own shape
        content = {route.media: {"schema": route.answer}}
    elif route.media == "text/html" and status == 422:  # the form again, with the problems
        content = {route.media: {"schema": {"type": "string"}}}
    else:
        content = {"application/json": {"schema": error_schema(route)}}
    return {"description": _REASONS.get(status, "Error"), "content": content}


def _operation(summary: str, route: Route) -> dict[str, Any]:
    answer_schema = route.answer or {"type": "string"}
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": route.method.lower()
        + (re.sub(r"\W+", "_", route.path).rstrip("_") or "_root"),
        "responses": {
            "200": {"description": "OK", "content": {route.media: {"schema": answer_schema}}},
            **{
                str(status): _error(route, status)
                for status in sorted({*route.errors, 400, 404, 405, 408, 431})
            },
        },
    }
    if route.path_params:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in route.path_params.items()
        ]
    if route.body:
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in route.body.items()},
        }
    return operation


def render_openapi(table: RouteTable, title: str, description: str) -> dict[str, Any]:
    """OpenAPI 3.0 for every route in `table` (3.0: the bundled Swagger UI reads it whole)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route.summary, route)
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": __version__, "description": description},
        "paths": paths,
    }
