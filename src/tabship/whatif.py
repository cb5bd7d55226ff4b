"""What-if curves: one record's prediction as one feature moves across what training saw.

A numeric feature spans its training 1st to 99th percentile (sealed with the explanation
background; the training minimum and maximum for older folders), a date its training range,
a categorical feature every level seen. The grid and the record itself go to the engine in
one call. Only numpy: this runs in the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tabship.background import Background
from tabship.errors import Problem, RecordError
from tabship.explain import Outputs
from tabship.schema import Batch, Feature, Schema, shown

DEFAULT_POINTS = 50
MAX_POINTS = 200
# A categorical feature's curve holds every level, up to this many.
MAX_LEVELS = 1000


@dataclass(frozen=True)
class WhatIf:
    """The grid of values (as a client writes them) and the model's outputs at each point."""

    feature: Feature
    values: list[Any]
    outputs: np.ndarray
    current: np.ndarray
    low: Any
    high: Any


def find_feature(schema: Schema, name: object) -> Feature:
    """The feature called `name`, or a 422 naming the field and a few of the choices."""
    for feature in schema.features:
        if feature.name == name:
            return feature
    names = schema.names
    listed = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    raise RecordError(
        [Problem("feature", f"{shown(name)} is not a feature; choose one of {listed}")]
    )


def check_points(points: object) -> int:
    """The requested number of grid points, or a 422 naming the field and the allowed range."""
    if type(points) is not int or not 2 <= points <= MAX_POINTS:
        raise RecordError(
            [
                Problem(
                    "points", f"must be a whole number from 2 to {MAX_POINTS}, got {shown(points)}"
                )
            ]
        )
    return points


def _numbers(feature: Feature, background: Background | None, points: int) -> np.ndarray:
    bounds = background.ranges.get(feature.name) if background is not None else None
    low, high = bounds or (feature.minimum or 0.0, feature.maximum or 0.0)
    grid = np.linspace(low, high, points)
    if feature.integer or feature.kind == "date":
        return np.unique(np.round(grid))
    # Three digits finer than the step: 17.895 rather than 17.895149999999997.
    step = (high - low) / max(points - 1, 1)
    digits = 2 - int(np.floor(np.log10(step))) if step > 0 else 6
    return np.unique(np.round(grid, max(digits, 0)))


def grid_columns(
    feature: Feature, background: Background | None, points: int
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """The grid as JSON values and as the engine's input columns for this feature."""
    if feature.kind == "categorical":
        levels = list(feature.known_levels[:MAX_LEVELS])
        return levels, {feature.name: np.array(levels, dtype=object).reshape(-1, 1)}
    grid = _numbers(feature, background, points)
    if feature.kind == "date":
        stamps = grid.astype(np.int64).astype("datetime64[s]")
        return [feature.date_text(float(s)) for s in grid], feature.date_parts(stamps)
    values = [int(v) if feature.integer else float(v) for v in grid]
    return values, {feature.name: grid.reshape(-1, 1)}


def what_if(
    schema: Schema,
    outputs: Outputs,
    background: Background | None,
    batch: Batch,
    feature: Feature,
    points: int,
) -> WhatIf:
    """The outputs along the feature's grid for the first record of a validated batch."""
    values, varied = grid_columns(feature, background, points)
    count = len(values)
    columns: dict[str, np.ndarray] = {}
    for name, column in batch.columns.items():
        # The grid's rows, then the record itself as the last row: one engine call.
        head = varied[name] if name in varied else np.repeat(column[:1], count, axis=0)
        columns[name] = np.concatenate([head.astype(column.dtype), column[:1]])
    found = outputs(columns, count + 1)
    return WhatIf(
        feature=feature,
        values=values,
        outputs=found[:count],
        current=found[count],
        low=values[0],
        high=values[-1],
    )
