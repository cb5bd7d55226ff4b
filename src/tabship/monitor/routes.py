"""The monitoring entries of the one route table (added when the server has a prediction log)."""

from __future__ import annotations

from typing import Any

from tabship.classes import typed_label
from tabship.feature import BOOL_SPELLINGS
from tabship.monitor.service import MAX_FEEDBACK, Monitoring
from tabship.serve.routes import FEEDBACK_PATH, MONITOR_PATH, Route


def feedback_schema(monitoring: Monitoring) -> dict[str, Any]:
    """JSON Schema of a feedback body: one {id, actual} or a list of them."""
    card = monitoring.card
    # A class as answers give it (`true`, 1) or as text (`True`, `true`, "1"): feedback
    # takes each (the spellings training read a boolean in too).
    kind = card.label_type
    accepted: list[Any] = [typed_label(c, kind) for c in card.classes]
    texts = [*card.classes, *(BOOL_SPELLINGS if kind == "boolean" else ())]
    accepted += [t for t in texts if t not in accepted]
    actual: dict[str, Any] = {"type": "number"} if card.task == "regression" else {"enum": accepted}
    item = {
        "type": "object",
        "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 40}, "actual": actual},
        "required": ["id", "actual"],
        "additionalProperties": False,
    }
    return {
        "oneOf": [item, {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_FEEDBACK}]
    }


def monitor_routes(monitoring: Monitoring) -> list[Route]:
    """POST /v1/feedback and GET /monitor."""
    return [
        Route(
            "POST",
            FEEDBACK_PATH,
            monitoring.feedback,
            "Ground truth for logged predictions, by prediction id",
            body={"application/json": feedback_schema(monitoring)},
            answer={
                "type": "object",
                "properties": {
                    "stored": {"type": "integer"},
                    "replaced": {"type": "integer"},
                    "warnings": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["stored", "replaced", "warnings"],
            },
            errors=(413, 415, 422, 503),
        ),
        Route(
            "GET",
            MONITOR_PATH,
            monitoring.page,
            "Drift, traffic and live scores from the prediction log (?since=24h)",
            media="text/html",
            errors=(503,),
        ),
    ]
