"""The JSON data plane: /predict_api and /v1/predict as plain functions of (content type, body).

The outermost ASGI layer calls these directly, so a prediction skips the web framework's
per-request machinery; FastAPI calls the same functions for its documented routes.
"""

from __future__ import annotations

import json
from typing import Any

from tabship.config import ServeSettings
from tabship.errors import (
    BodyTooLargeError,
    MalformedBodyError,
    RecordError,
    RequestError,
    TabshipError,
)
from tabship.predictor import Prediction, Predictor
from tabship.serve import contract
from tabship.serve.metrics import Metrics


def _location(field: str, row: int | None) -> list[str | int]:
    if field in ("instances", "(record)") and row is None:
        return ["body", field]
    return ["body", "instances", row, field] if row is not None else ["body", field]


def error_payload(exc: TabshipError) -> tuple[int, dict[str, Any]]:
    """The one place that maps tabship errors to an HTTP status and body."""
    if isinstance(exc, RecordError):
        detail = [
            {
                "loc": _location(p.field, p.row),
                "field": p.field,
                "row": p.row,
                "msg": p.message,
                "type": "value_error",
            }
            for p in exc.problems
        ]
        return 422, {"detail": detail, "message": str(exc)}
    status = exc.status if isinstance(exc, RequestError) else 400
    return status, {"detail": str(exc), "message": str(exc)}


def model_info(predictor: Predictor) -> dict[str, Any]:
    """What /v1/model and every /v1/predict answer say about the model."""
    meta = predictor.metadata
    return {
        "name": meta["model"]["name"],
        "task": meta["task"],
        "target": meta["target"],
        "engine": predictor.engine.name,
        "sha256": predictor.artifact.sha256,
    }


class JsonApi:
    """Parse, validate, predict and shape the answer; raises TabshipError for bad input."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, metrics: Metrics) -> None:
        self.predictor = predictor
        self.settings = settings
        self.metrics = metrics
        self.info = model_info(predictor)
        self.routes = {"/predict_api": self.predict_one, "/v1/predict": self.predict_many}

    def _predict(self, records: Any) -> Prediction:
        prediction = self.predictor.predict(records)
        self.metrics.predictions.inc(len(records))
        return prediction

    def predict_one(self, content_type: str | None, body: bytes) -> tuple[Any, int]:
        """The tutorial's route: one record in, the bare prediction out."""
        record = contract.read_json(content_type, body)
        if not isinstance(record, dict):
            raise MalformedBodyError("body: must be one JSON object of field: value")
        return self._predict([record]).values[0], 1

    def predict_many(self, content_type: str | None, body: bytes) -> tuple[Any, int]:
        """{"instances": [...]} in; predictions, warnings and the model out."""
        payload = contract.read_json(content_type, body)
        if not isinstance(payload, dict) or "instances" not in payload:
            raise MalformedBodyError('body: must be an object {"instances": [record, ...]}')
        extra = sorted(set(payload) - {"instances"})
        if extra:
            raise MalformedBodyError(f"{extra[0]}: is not allowed; the body holds only 'instances'")
        instances = payload["instances"]
        if isinstance(instances, list) and len(instances) > self.settings.max_batch:
            raise BodyTooLargeError(
                f"instances: {len(instances)} records is over the batch limit of {self.settings.max_batch}"
            )
        prediction = self._predict(instances)
        answer: dict[str, Any] = {
            "predictions": prediction.values,
            "warnings": prediction.warnings,
            "model": self.info,
        }
        if prediction.probabilities is not None:
            answer["probabilities"] = prediction.probabilities
        return answer, len(instances)

    def answer(self, route: str, content_type: str | None, body: bytes) -> tuple[int, bytes, int]:
        """Status, JSON bytes and rows for a request to one of `routes`."""
        try:
            payload, rows = self.routes[route](content_type, body)
            status = 200
        except TabshipError as exc:
            (status, payload), rows = error_payload(exc), 0
        return status, json.dumps(payload, separators=(",", ":")).encode(), rows
