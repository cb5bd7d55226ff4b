"""What the form shows after Predict: why (contributions) and what if (one curve per feature).

Built from the same explainer and what-if code as /v1/explain and /v1/whatif, in the thread
pool (a wide model's coalitions are many rows), within the request timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from tabship.errors import RecordError, RequestTimeoutError
from tabship.schema import Feature
from tabship.serve import charts
from tabship.serve.explain import ExplainApi, explain_records
from tabship.whatif import DEFAULT_POINTS, what_if

# What-if charts on one page: one engine call each, and more would not be read.
MAX_CHARTS = 12


def _shown(feature: Feature, value: Any) -> str:
    if value is None:
        return "(empty)"
    if feature.kind == "numeric":
        # Enough digits to read a grid's ends (17.9, 46.41) without a percentile's noise.
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return str(value)


def build_insight(api: ExplainApi, record: dict[str, Any]) -> dict[str, Any]:
    """Template data: the waterfall (when the folder has a baseline) and the what-if charts."""
    predictor = api.predictor
    schema = predictor.schema
    batch = schema.validate([record], strict_categories=predictor.strict_categories)
    probability = predictor.task == "classification"
    out: dict[str, Any] = {"probability": probability, "waterfall": None, "whatifs": []}
    chosen = 0
    shown = list(schema.features)
    if api.explainer is not None:
        found = explain_records(api.explainer, batch)
        chosen = int(np.argmax(found.prediction[0]))
        labels = [f"{f.name} = {_shown(f, record[f.name])}" for f in schema.features]
        out["waterfall"] = charts.waterfall(
            labels,
            found.contributions[0, :, chosen].tolist(),
            float(found.base[0, chosen]),
            probability,
        )
        out["method"] = found.method
        out["baseline_rows"] = api.explainer.background.rows
        out["explained"] = predictor.keys[chosen] if probability else ""
        # A wide model gets what-if charts for the features that move this record most.
        moved = np.argsort(-np.abs(found.contributions[0, :, chosen]))[:MAX_CHARTS]
        shown = [schema.features[int(i)] for i in sorted(moved)]
    for feature in shown[:MAX_CHARTS]:
        curve = what_if(
            schema, api.outputs, predictor.card.explanation, batch, feature, DEFAULT_POINTS
        )
        if not api.explainer:
            chosen = int(np.argmax(curve.current))
        outputs = curve.outputs[:, chosen].tolist()
        current = float(curve.current[chosen])
        item: dict[str, Any] = {
            "name": feature.name,
            "kind": feature.kind,
            "current": _shown(feature, record[feature.name]),
            "current_output": charts.amount(current, probability),
            "low": _shown(feature, curve.low),
            "high": _shown(feature, curve.high),
        }
        if feature.kind == "categorical":
            item["levels"] = [
                {**bar, "text": charts.amount(bar["value"], probability)}
                for bar in charts.levels(curve.values, outputs, str(record[feature.name]))
            ]
        else:
            own = _position(feature, batch.columns, curve.values)
            item["line"] = charts.line(_axis(feature, curve.values), outputs, own, current)
            item["min_output"] = charts.amount(min(outputs), probability)
            item["max_output"] = charts.amount(max(outputs), probability)
        out["whatifs"].append(item)
    return out


def _axis(feature: Feature, values: list[Any]) -> list[float]:
    if feature.kind == "date":
        return [float(np.datetime64(v, "s").astype(np.int64)) for v in values]
    return [float(v) for v in values]


def _position(feature: Feature, columns: dict[str, np.ndarray], values: list[Any]) -> float | None:
    """The record's own value on the curve's axis, or None when it is missing."""
    if feature.kind == "date":
        return None  # dates are drawn without a marker: their parts are what the model saw
    number = float(columns[feature.name][0, 0])
    return None if np.isnan(number) else number


async def form_insight(api: ExplainApi, record: dict[str, Any]) -> dict[str, Any] | None:
    """build_insight off the event loop, within the request timeout.

    None when the model cannot compute the record beside the baseline: the prediction
    itself was fine, so the page shows it without the charts.
    """
    future = asyncio.get_running_loop().run_in_executor(api.pool, build_insight, api, record)
    try:
        return await asyncio.wait_for(future, timeout=api.settings.request_timeout)
    except RecordError:
        return None
    except TimeoutError:
        raise RequestTimeoutError(
            f"request: explaining took longer than the {api.settings.request_timeout:g} s "
            "request timeout"
        ) from None
