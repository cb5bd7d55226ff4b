"""The V2 routes for the one route table, with the protocol's documented shapes as JSON Schema.

The shapes follow the Open Inference Protocol's REST specification ($inference_request,
$inference_response, $metadata_model_response, ...), narrowed to this model: its input
names, the datatypes each accepts, its outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tabship.schema import Schema
from tabship.serve.http import V2_ERRORS
from tabship.serve.routes import Route
from tabship.serve.v2_tensors import accepted

if TYPE_CHECKING:
    from tabship.serve.v2 import V2Api

_PARAMETERS = {
    "type": "object",
    # OpenAPI 3.0 has no list of types: one of three.
    "additionalProperties": {
        "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    },
}
_TENSOR_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name", "datatype", "shape"],
}
_SERVER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "version", "extensions"],
}


def input_schema(schema: Schema, max_batch: int) -> dict[str, Any]:
    """One input tensor: a feature's column, shape [N] or [N, 1], its data inline."""
    shape = {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": max_batch},
        "minItems": 1,
        "maxItems": 2,
    }
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": schema.names},
            "shape": shape,
            "datatype": {
                "type": "string",
                "enum": sorted(set().union(*(accepted(f) for f in schema.features))),
            },
            "parameters": _PARAMETERS,
            "data": {"type": "array"},
        },
        "required": ["name", "shape", "datatype"],
    }


def request_schema(schema: Schema, max_batch: int, name: str, version: str) -> dict[str, Any]:
    """$inference_request for this model (MLServer's pandas-codec layout)."""
    return {
        "title": "InferenceRequest",
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "model_name": {"type": "string", "enum": [name]},
            "model_version": {"type": "string", "enum": [version]},
            "parameters": _PARAMETERS,
            "inputs": {
                "type": "array",
                "items": input_schema(schema, max_batch),
                "minItems": 1,
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }


def response_schema() -> dict[str, Any]:
    """$inference_response."""
    output = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "parameters": _PARAMETERS,
            "data": {"type": "array"},
        },
        "required": ["name", "shape", "datatype"],
    }
    return {
        "title": "InferenceResponse",
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "outputs": {"type": "array", "items": output},
        },
        "required": ["model_name", "outputs"],
    }


def metadata_schema() -> dict[str, Any]:
    """$metadata_model_response."""
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _TENSOR_META},
            "outputs": {"type": "array", "items": _TENSOR_META},
        },
        "required": ["name", "platform", "inputs", "outputs"],
    }


def _flag(key: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "boolean"}}, "required": [key]}


def v2_routes(v2: V2Api, schema: Schema, max_batch: int) -> list[Route]:
    """Every V2 route: server, health, and the model routes with and without a version."""
    name = {"name": {"type": "string", "enum": [v2.name]}}
    version = {**name, "version": {"type": "string", "enum": [v2.version]}}
    infer_body = {
        "application/json": request_schema(schema, max_batch, v2.name, v2.version),
        "application/octet-stream": {"type": "string", "format": "binary"},
    }
    ready = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
        "required": ["name", "ready"],
    }
    routes = [
        Route("GET", "/v2", v2.server, "V2: server metadata", answer=_SERVER, style=V2_ERRORS),
        Route(
            "GET",
            "/v2/health/live",
            v2.live,
            "V2: liveness",
            probe=True,
            access="open",
            answer=_flag("live"),
            style=V2_ERRORS,
        ),
        Route(
            "GET",
            "/v2/health/ready",
            v2.ready,
            "V2: readiness (503 until warmed up, and while draining)",
            probe=True,
            access="open",
            answer=_flag("ready"),
            errors=(503,),
            style=V2_ERRORS,
        ),
    ]
    for prefix, params in (
        ("/v2/models/{name}", name),
        ("/v2/models/{name}/versions/{version}", version),
    ):
        routes += [
            Route(
                "GET",
                prefix,
                v2.model,
                "V2: model metadata (inputs, outputs, datatypes, shapes)",
                answer=metadata_schema(),
                errors=(404,),
                style=V2_ERRORS,
                path_params=params,
            ),
            Route(
                "GET",
                f"{prefix}/ready",
                v2.model_ready,
                "V2: model readiness",
                probe=True,
                access="open",
                answer=ready,
                errors=(404, 503),
                style=V2_ERRORS,
                path_params=params,
            ),
            Route(
                "POST",
                f"{prefix}/infer",
                v2.infer,
                "V2: infer; JSON tensors, or binary tensors after Inference-Header-Content-Length",
                body=infer_body,
                answer=response_schema(),
                errors=(400, 404, 413, 415, 504),
                style=V2_ERRORS,
                path_params=params,
            ),
        ]
    return routes
