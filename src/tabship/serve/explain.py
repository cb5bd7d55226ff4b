"""POST /v1/explain and POST /v1/whatif: JSON in, the explainer's numbers out.

Records are validated by the schema exactly as /v1/predict does; the cost of a request is
counted in engine rows (an explained record costs coalitions x background rows), which sets
the record limit; costly work leaves the event loop and keeps to the request timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any

import numpy as np

from tabship.config import ServeSettings
from tabship.errors import (
    BodyTooLargeError,
    MalformedBodyError,
    NotExplainableError,
    Problem,
    RecordError,
)
from tabship.explain import Explainer, Explanation, Outputs
from tabship.predictor import Predictor
from tabship.schema import Batch
from tabship.serve import contract
from tabship.serve.api import INLINE_MAX_BYTES, as_first_row, in_thread, model_info
from tabship.serve.http import Answer, Request, json_answer
from tabship.whatif import DEFAULT_POINTS, MAX_POINTS, WhatIf, check_points, find_feature, what_if

# Below this many engine rows a request is answered on the event loop (a few milliseconds).
INLINE_ROWS = 20_000
NO_BASELINE = (
    "this model folder was trained before tabship sealed an explanation baseline into it; "
    "retrain it with `tabship train` to get /v1/explain"
)


def model_outputs(predictor: Predictor) -> Outputs:
    """The engine's output as (rows, outputs): class probabilities, or the one value."""

    def run(columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
        values, proba = predictor.engine.run(columns, rows)
        return proba if proba is not None else values.reshape(-1, 1)

    return run


def _fields(payload: Any, allowed: tuple[str, ...], shape: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise MalformedBodyError(f"body: must be an object {shape}")
    extra = sorted(str(key)[:60] for key in payload if key not in allowed)
    if extra:
        raise MalformedBodyError(
            f"{extra[0]}: is not allowed; the body holds only {', '.join(allowed)}"
        )
    return payload


class ExplainApi:
    """Explains records and draws what-if curves for one loaded model."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, pool: Executor) -> None:
        self.predictor = predictor
        self.settings = settings
        self.pool = pool
        self.outputs = model_outputs(predictor)
        self.info = model_info(predictor)
        background = predictor.card.explanation
        self.explainer = (
            None if background is None else Explainer(predictor.schema, background, self.outputs)
        )

    @property
    def max_records(self) -> int:
        """Records one explain request may hold: the batch cap, lower for wide models."""
        if self.explainer is None:
            return self.settings.max_batch
        return min(self.settings.max_batch, self.explainer.max_records)

    async def explain(self, request: Request) -> Answer:
        """{"instances": [...], "all_classes": false} -> one explanation per record."""
        return await self._run(request, self._explain)

    async def whatif(self, request: Request) -> Answer:
        """{"instance": {...}, "feature": name, "points": n} -> the prediction along a grid."""
        return await self._run(request, self._whatif)

    async def _run(self, request: Request, work: Callable[[Request, bool], Answer]) -> Answer:
        """Small requests inline; big bodies or costly records in a thread, within the timeout."""
        if len(request.body) <= INLINE_MAX_BYTES:
            try:
                return work(request, True)
            except _Costly:
                pass
        return await in_thread(
            self.pool,
            self.settings.request_timeout,
            partial(work, request, False),
            "explain fewer records",
        )

    def _explain(self, request: Request, inline: bool) -> Answer:
        payload = _fields(
            contract.read_json(request.headers, request.body, self.settings.max_body_bytes),
            ("instances", "all_classes"),
            '{"instances": [record, ...], "all_classes": false}',
        )
        if "instances" not in payload:
            raise MalformedBodyError('instances: is required; send {"instances": [record, ...]}')
        all_classes = payload.get("all_classes", False)
        if not isinstance(all_classes, bool):
            raise MalformedBodyError("all_classes: must be true or false")
        if self.explainer is None:
            raise NotExplainableError(NO_BASELINE)
        instances = payload["instances"]
        limit = self.max_records
        if isinstance(instances, list) and len(instances) > limit:
            cost = self.explainer.rows_per_record
            raise BodyTooLargeError(
                f"instances: {len(instances)} records is over the explain limit of {limit} per "
                f"request (each record costs {cost:,} model evaluations: "
                f"{self.explainer.coalitions:,} coalitions x {self.explainer.background.rows} "
                "baseline rows); send fewer records per request"
            )
        try:
            batch = self.predictor.schema.validate(
                instances, strict_categories=self.predictor.strict_categories
            )
        except RecordError as exc:  # a lone record is row 0 of its batch, as /v1/predict says
            if type(instances) is list and len(instances) == 1:
                raise as_first_row(exc) from None
            raise
        if inline and batch.rows * self.explainer.rows_per_record > INLINE_ROWS:
            raise _Costly
        found = explain_records(self.explainer, batch)
        request.rows = batch.rows
        return json_answer(
            {
                "explanations": self.shape(found, all_classes),
                "method": found.method,
                "baseline": {
                    "kind": self.explainer.background.kind,
                    "rows": self.explainer.background.rows,
                },
                "warnings": batch.warnings,
                "model": self.info,
            }
        )

    def shape(self, found: Explanation, all_classes: bool = False) -> list[dict[str, Any]]:
        """One JSON object per record: prediction, base and each feature's contribution."""
        names = self.predictor.schema.names
        exact = found.method == "exact"
        classes, labels = self.predictor.keys, self.predictor.labels
        out: list[dict[str, Any]] = []
        for row in range(len(found.prediction)):

            def part(output: int, row: int = row) -> dict[str, Any]:
                item: dict[str, Any] = {
                    "base": float(found.base[row, output]),
                    "contributions": dict(
                        zip(names, found.contributions[row, :, output].tolist(), strict=True)
                    ),
                }
                if not exact:
                    item["error"] = dict(
                        zip(names, found.error[row, :, output].tolist(), strict=True)
                    )
                return item

            if not classes:
                out.append({"prediction": float(found.prediction[row, 0]), **part(0)})
                continue
            chosen = int(np.argmax(found.prediction[row]))
            item = {
                "prediction": labels[chosen],
                "explained": labels[chosen],
                "probability": float(found.prediction[row, chosen]),
                **part(chosen),
            }
            if all_classes:
                item["classes"] = {
                    name: {"probability": float(found.prediction[row, index]), **part(index)}
                    for index, name in enumerate(classes)
                }
            out.append(item)
        return out

    def _whatif(self, request: Request, inline: bool) -> Answer:
        payload = _fields(
            contract.read_json(request.headers, request.body, self.settings.max_body_bytes),
            ("instance", "feature", "points"),
            '{"instance": record, "feature": name, "points": 50}',
        )
        for key in ("instance", "feature"):
            if key not in payload:
                raise MalformedBodyError(f"{key}: is required")
        instance = payload["instance"]
        if not isinstance(instance, dict):
            raise MalformedBodyError("instance: must be one JSON object of field: value")
        schema = self.predictor.schema
        feature = find_feature(schema, payload["feature"])
        points = check_points(payload.get("points", DEFAULT_POINTS))
        batch = schema.validate([instance], strict_categories=self.predictor.strict_categories)
        try:
            curve = what_if(
                schema, self.outputs, self.predictor.card.explanation, batch, feature, points
            )
        except RecordError:
            raise RecordError(
                [
                    Problem(
                        feature.name, f"the model gives no finite prediction along {feature.name}"
                    )
                ]
            ) from None
        request.rows = len(curve.values) + 1
        return json_answer(
            {**self.curve(curve, instance[feature.name]), "warnings": batch.warnings}
            | {"model": self.info}
        )

    def curve(self, found: WhatIf, current: Any) -> dict[str, Any]:
        """The what-if answer: each grid value with its prediction, and the record's own."""
        return {
            "feature": found.feature.name,
            "kind": found.feature.kind,
            "range": [found.low, found.high],
            "points": [
                {"value": value, **self._predicted(found.outputs[index])}
                for index, value in enumerate(found.values)
            ],
            "current": {"value": current, **self._predicted(found.current)},
        }

    def _predicted(self, output: np.ndarray) -> dict[str, Any]:
        classes = self.predictor.keys
        if not classes:
            return {"prediction": float(output[0])}
        return {
            "prediction": self.predictor.labels[int(np.argmax(output))],
            "probabilities": dict(zip(classes, output.tolist(), strict=True)),
        }


def explain_records(explainer: Explainer, batch: Batch) -> Explanation:
    """Explain a batch; a record the model cannot compute beside the baseline is a 422.

    The engine numbers its own rows (coalitions x baseline rows); the client hears about
    the record instead, which is what it sent.
    """
    try:
        return explainer.explain(batch)
    except RecordError:
        message = (
            "the model gives no finite output for this record combined with the baseline; "
            "its values are too far outside the training range"
        )
        raise RecordError([Problem("(record)", message)]) from None


class _Costly(Exception):
    """Raised by inline work that turns out to be costly: rerun it in the thread pool."""


def explain_body_schema(schema_record: dict[str, Any], max_records: int) -> dict[str, Any]:
    """JSON Schema of the /v1/explain body."""
    return {
        "title": "ExplainRequest",
        "type": "object",
        "properties": {
            "instances": {
                "type": "array",
                "items": schema_record,
                "minItems": 1,
                "maxItems": max_records,
            },
            "all_classes": {"type": "boolean", "default": False},
        },
        "required": ["instances"],
        "additionalProperties": False,
    }


def whatif_body_schema(schema_record: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """JSON Schema of the /v1/whatif body."""
    return {
        "title": "WhatIfRequest",
        "type": "object",
        "properties": {
            "instance": schema_record,
            "feature": {"type": "string", "enum": names},
            "points": {
                "type": "integer",
                "minimum": 2,
                "maximum": MAX_POINTS,
                "default": DEFAULT_POINTS,
            },
        },
        "required": ["instance", "feature"],
        "additionalProperties": False,
    }


def _per_feature(names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "number"} for name in names},
        "required": names,
        "additionalProperties": False,
    }


def explain_answer_schema(names: list[str], classes: list[Any]) -> dict[str, Any]:
    """JSON Schema of a /v1/explain answer (`classes`: as answers give them)."""
    part: dict[str, Any] = {
        "base": {"type": "number"},
        "contributions": _per_feature(names),
        "error": _per_feature(names),
    }
    item: dict[str, Any] = {
        "type": "object",
        "properties": {"prediction": {"type": "number"}, **part},
        "required": ["prediction", "base", "contributions"],
    }
    if classes:
        labels = contract.prediction_value(classes)
        item["properties"] |= {
            "prediction": labels,
            "explained": labels,
            "probability": {"type": "number"},
            "classes": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"probability": {"type": "number"}, **part},
                },
            },
        }
    return {
        "type": "object",
        "properties": {
            "explanations": {"type": "array", "items": item},
            "method": {"type": "string", "enum": ["exact", "permutation"]},
            "baseline": {"type": "object"},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "model": {"type": "object"},
        },
        "required": ["explanations", "method", "baseline", "warnings", "model"],
    }


def whatif_answer_schema(classes: list[Any]) -> dict[str, Any]:
    """JSON Schema of a /v1/whatif answer (`classes`: as answers give them)."""
    point: dict[str, Any] = {
        "type": "object",
        "properties": {
            "value": {},
            "prediction": contract.prediction_value(classes),
        },
        "required": ["value", "prediction"],
    }
    if classes:
        point["properties"]["probabilities"] = {
            "type": "object",
            "additionalProperties": {"type": "number"},
        }
    return {
        "type": "object",
        "properties": {
            "feature": {"type": "string"},
            "kind": {"type": "string", "enum": ["numeric", "categorical", "date"]},
            "range": {"type": "array", "minItems": 2, "maxItems": 2},
            "points": {"type": "array", "items": point},
            "current": point,
            "warnings": {"type": "array", "items": {"type": "string"}},
            "model": {"type": "object"},
        },
        "required": ["feature", "kind", "range", "points", "current", "warnings", "model"],
    }
