"""What explanations compare a record with: a few representative rows sealed at training.

The rows are k-means centroids of the training rows, numbers averaged and each category the
commonest level of its cluster, weighted by cluster size, each standing for at least
MIN_MEMBERS rows; no training row is stored unless
the user asks with `--keep-background N`. Beside them, each numeric feature's 1st to 99th
percentile, the range a what-if curve spans. All of it lives in tabship.json's
`explanation` entry, so the folder's seal covers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tabship.schema import MISSING_LEVEL, Schema

if TYPE_CHECKING:
    import pandas as pd

CENTROIDS = 10
# K-means on more rows than this gives the same few centroids; a seeded sample is quicker.
FIT_MAX_ROWS = 20_000
# Every centroid stands for at least this many training rows.
MIN_MEMBERS = 5
# Levels of a category one-hot encoded for k-means (the rest count as "other").
DESIGN_LEVELS = 20
Value = float | str | None


@dataclass(frozen=True)
class Background:
    """Representative rows (engine input columns), their weights, and what-if ranges."""

    # "centroids" (k-means, the default) or "rows" (training rows the user chose to keep).
    kind: str
    columns: Mapping[str, tuple[Value, ...]]
    weights: tuple[float, ...]
    # Numeric feature -> (1st percentile, 99th percentile) of the training rows.
    ranges: Mapping[str, tuple[float, float]]

    @property
    def rows(self) -> int:
        """How many representative rows there are."""
        return len(self.weights)

    def arrays(self, schema: Schema) -> dict[str, np.ndarray]:
        """The rows as the engine takes them: float64 numbers (NaN for missing), text levels."""
        out: dict[str, np.ndarray] = {}
        for name, text in schema.inputs:
            values = self.columns[name]
            if text:
                out[name] = np.array(
                    [MISSING_LEVEL if v is None else str(v) for v in values], dtype=object
                )
            else:
                out[name] = np.array(
                    [np.nan if v is None else float(v) for v in values], dtype=np.float64
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as sealed into tabship.json."""
        return {
            "method": "interventional-shapley",
            "background": self.kind,
            "weights": list(self.weights),
            "columns": {name: list(values) for name, values in self.columns.items()},
            "ranges": {name: list(bounds) for name, bounds in self.ranges.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], schema: Schema) -> Background:
        """Inverse of to_dict; ValueError when it does not fit the schema."""
        weights = tuple(float(w) for w in data["weights"])
        columns = {str(k): tuple(v) for k, v in dict(data["columns"]).items()}
        if not weights or any(w < 0 or not np.isfinite(w) for w in weights):
            raise ValueError("explanation.weights must be finite, non-negative and not empty")
        for name in schema.input_names:
            if len(columns.get(name, ())) != len(weights):
                raise ValueError(f"explanation.columns[{name!r}] must hold {len(weights)} values")
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in dict(data["ranges"]).items()}
        total = sum(weights)
        return cls(
            kind=str(data["background"]),
            columns=columns,
            weights=tuple(w / total for w in weights),
            ranges=ranges,
        )


def build_background(
    features: pd.DataFrame, schema: Schema, keep: int | None = None, seed: int = 0
) -> Background:
    """The background for a training frame in engine columns (as `prepare` makes it)."""
    rng = np.random.default_rng(seed)
    if keep:
        chosen = np.sort(rng.choice(len(features), min(keep, len(features)), replace=False))
        sample = features.iloc[chosen]
        columns = {name: tuple(_json(v) for v in sample[name]) for name in schema.input_names}
        weights = tuple(1.0 / len(chosen) for _ in chosen)
        kind = "rows"
    else:
        columns, weights = _centroids(features, schema, rng, seed)
        kind = "centroids"
    return Background(kind, columns, weights, _ranges(features, schema))


def _json(value: object) -> Value:
    if isinstance(value, str):
        return value
    number = float(value)  # type: ignore[arg-type]
    return None if np.isnan(number) else number


def _ranges(features: pd.DataFrame, schema: Schema) -> dict[str, tuple[float, float]]:
    ranges: dict[str, tuple[float, float]] = {}
    for feature in schema.features:
        if feature.kind == "numeric":
            values = features[feature.name].to_numpy(dtype=np.float64)
            values = values[~np.isnan(values)]
            if values.size == 0:
                continue  # what-if falls back to the schema's range
            low, high = np.percentile(values, [1, 99])
            ranges[feature.name] = (float(low), float(high))
        elif feature.kind == "date" and feature.minimum is not None:
            ranges[feature.name] = (float(feature.minimum), float(feature.maximum or 0.0))
    return ranges


def _design(features: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Standardised numbers (gaps at the median) beside one-hot categories, for k-means."""
    blocks: list[np.ndarray] = []
    for name, text in schema.inputs:
        column = features[name]
        if text:
            # The commonest levels only: a many-valued column must not make the matrix huge.
            levels = column.astype(str)
            common = levels.value_counts().index[:DESIGN_LEVELS].to_numpy()
            blocks.append((levels.to_numpy()[:, None] == common[None, :]).astype(np.float64))
        else:
            values = column.to_numpy(dtype=np.float64)
            fill = np.nanmedian(values) if np.isfinite(values).any() else 0.0
            values = np.where(np.isnan(values), fill, values)
            spread = values.std() or 1.0
            blocks.append(((values - values.mean()) / spread)[:, None])
    return np.hstack(blocks)


def _centroids(
    features: pd.DataFrame, schema: Schema, rng: np.random.Generator, seed: int
) -> tuple[dict[str, tuple[Value, ...]], tuple[float, ...]]:
    from sklearn.cluster import KMeans

    if len(features) > FIT_MAX_ROWS:
        features = features.iloc[np.sort(rng.choice(len(features), FIT_MAX_ROWS, replace=False))]
    design = _design(features, schema)
    clusters = min(CENTROIDS, len(np.unique(design, axis=0)), max(1, len(design) // MIN_MEMBERS))
    fitted = KMeans(clusters, n_init=4, random_state=seed).fit(design)
    labels = _merge_small(design, fitted.labels_, fitted.cluster_centers_)
    present = [c for c in range(clusters) if (labels == c).any()]
    integers = {
        name
        for feature in schema.features
        if feature.integer or feature.kind == "date"
        for name in feature.inputs
    }
    columns: dict[str, tuple[Value, ...]] = {}
    for name, text in schema.inputs:
        column = features[name]
        cells: list[Value] = []
        for cluster in present:
            members = column[labels == cluster]
            cells.append(_central(members, text, name in integers))
        columns[name] = tuple(cells)
    counts = [float((labels == c).sum()) for c in present]
    return columns, tuple(c / sum(counts) for c in counts)


def _merge_small(design: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Rows of clusters under MIN_MEMBERS rows join the nearest larger cluster.

    A centroid of one row would be that training row (an outlier, often): every centroid
    stands for several rows, so none is a person's record.
    """
    counts = np.bincount(labels, minlength=len(centers))
    large = np.flatnonzero(counts >= MIN_MEMBERS)
    if len(large) == 0:
        return np.zeros_like(labels)
    small = np.isin(labels, large, invert=True)
    if small.any():
        distance = ((design[small, None, :] - centers[None, large, :]) ** 2).sum(axis=2)
        labels = labels.copy()
        labels[small] = large[distance.argmin(axis=1)]
    return labels


def _central(members: pd.Series, text: bool, integer: bool) -> Value:
    """A cluster's value: the commonest level, or the mean number (whole for whole columns)."""
    if text:
        return str(members.astype(str).value_counts().index[0])
    values = members.to_numpy(dtype=np.float64)
    if np.isnan(values).mean() > 0.5:
        return None
    mean = float(np.nanmean(values))
    return float(round(mean)) if integer else mean
