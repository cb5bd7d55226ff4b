"""The reference profile: what the training rows looked like, sealed into the model folder.

Only summaries are kept (quantile bin edges and shares, level shares, 101 quantiles), never a
training row, so a model folder can be shared as freely as the model itself. Drift compares
live inputs against these bins; binning the live rows with the very edges computed here is
what makes a training-like sample score PSI near 0.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tabship.artifact import PROFILE_FILE, Artifact
from tabship.errors import ArtifactError
from tabship.feature import MISSING_LEVEL
from tabship.schema import Schema

if TYPE_CHECKING:
    from tabship.train import TrainResult

PROFILE_FORMAT = "tabship-profile"
PROFILE_VERSION = 1
NUMERIC_BINS = 10
# Levels beyond the commonest MAX_LEVELS share one "other" bucket: a many-valued column must
# not make the profile (or the /monitor page) as long as the table.
MAX_LEVELS = 20
OTHER = "(other)"
MISSING = "(missing)"
# Quantiles at every percent: enough to compute a Wasserstein distance without the rows.
QUANTILES = 101


@dataclass(frozen=True)
class NumericProfile:
    """Quantile bins of a number: interior edges, the share of rows in each of len+1 bins."""

    name: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]
    missing: float
    minimum: float | None
    maximum: float | None
    mean: float | None
    std: float | None
    quantiles: tuple[float, ...]
    kind: str = "numeric"

    def bin_counts(self, values: np.ndarray) -> np.ndarray:
        """Counts of the (finite) `values` in this profile's bins."""
        index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), values, side="right")
        return np.bincount(index, minlength=len(self.edges) + 1).astype(np.float64)

    def labels(self) -> list[str]:
        """A short name per bin: '< e0', '[e0, e1)', ..., '>= eN', each bin holding its low
        edge and not its high one ('0 to 1' read as both, for a bin of the zeros alone)."""
        if not self.edges:
            return ["all"]
        shown = [_short_number(edge) for edge in self.edges]
        middle = [f"[{low}, {high})" for low, high in itertools.pairwise(shown)]
        return [f"< {shown[0]}", *middle, f">= {shown[-1]}"]


@dataclass(frozen=True)
class CategoricalProfile:
    """Shares of the commonest levels, the rest under OTHER, missing under MISSING."""

    name: str
    levels: tuple[str, ...]
    shares: tuple[float, ...]
    other: float
    missing: float
    kind: str = "categorical"

    def bins(self) -> list[str]:
        """The bucket names in order: the levels, then other and missing, named apart from a
        level a table really holds (a column may have a level called `(other)`)."""
        taken = set(self.levels)
        return [*self.levels, _untaken(OTHER, "levels", taken), _untaken(MISSING, "values", taken)]

    def reference(self) -> np.ndarray:
        """The training shares of `bins()`."""
        return np.array([*self.shares, self.other, self.missing], dtype=np.float64)


def _untaken(name: str, word: str, taken: set[str]) -> str:
    """`name`, or `(other levels)`, `(other levels 2)`... when a level already has it."""
    found, number = name, 1
    while found in taken:
        found = f"{name[:-1]} {word}{f' {number}' if number > 1 else ''})"
        number += 1
    return found


def _short_number(value: float) -> str:
    """A bin edge as a chart label: 4 significant digits, thousands and millions as k and M,
    larger numbers in exponent form."""
    size = abs(value)
    if size >= 1e9:  # 4.2e+12, not 4.2e+06M
        return f"{value:.4g}"
    if size >= 1e6:
        return f"{value / 1e6:.4g}M"
    if size >= 1e4:
        return f"{value / 1e3:.4g}k"
    return f"{value:.4g}"


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Every profiled feature and the distribution of the model's own training predictions."""

    rows: int
    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile
    skipped: tuple[str, ...] = ()

    def feature(self, name: str) -> FeatureProfile | None:
        """The profile of one feature, or None when it was not profiled (dates)."""
        return next((f for f in self.features if f.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as sealed in profile.json."""
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "features": [_entry(f) for f in self.features],
            "prediction": _entry(self.prediction),
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "profile.json") -> ReferenceProfile:
        """Inverse of to_dict; ArtifactError for another format or a newer version."""
        if data.get("format") != PROFILE_FORMAT:
            raise ArtifactError(f"{where} is not a tabship reference profile")
        version = data.get("version")
        if not isinstance(version, int) or version > PROFILE_VERSION:
            raise ArtifactError(
                f"{where} has profile version {version!r}; this tabship reads up to "
                f"{PROFILE_VERSION}: install a newer tabship"
            )
        try:
            return cls(
                rows=int(data["rows"]),
                features=tuple(_typed(item) for item in data["features"]),
                prediction=_typed(data["prediction"]),
                skipped=tuple(str(s) for s in data.get("skipped") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where} has a malformed entry: {exc}") from None


def _entry(profile: FeatureProfile) -> dict[str, Any]:
    out = dict(profile.__dict__)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = list(value)
    return out


def _typed(item: Mapping[str, Any]) -> FeatureProfile:
    if item["kind"] == "numeric":
        return NumericProfile(
            name=str(item["name"]),
            edges=tuple(float(e) for e in item["edges"]),
            shares=tuple(float(s) for s in item["shares"]),
            missing=float(item["missing"]),
            minimum=item.get("minimum"),
            maximum=item.get("maximum"),
            mean=item.get("mean"),
            std=item.get("std"),
            quantiles=tuple(float(q) for q in item.get("quantiles") or ()),
        )
    return CategoricalProfile(
        name=str(item["name"]),
        levels=tuple(str(level) for level in item["levels"]),
        shares=tuple(float(s) for s in item["shares"]),
        other=float(item["other"]),
        missing=float(item["missing"]),
    )


def profile_numbers(name: str, values: np.ndarray) -> NumericProfile:
    """Quantile bins of a numeric column (NaN counts as missing)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    present = values[np.isfinite(values)]
    missing = 1.0 - len(present) / len(values) if len(values) else 0.0
    if not len(present):
        return NumericProfile(name, (), (1.0,), missing, None, None, None, None, ())
    cuts = np.quantile(present, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
    # Few distinct values (counts, codes) give repeated quantiles: one edge per value.
    edges = tuple(float(e) for e in np.unique(cuts))
    partial = NumericProfile(name, edges, (), missing, None, None, None, None, ())
    counts = partial.bin_counts(present)
    return NumericProfile(
        name=name,
        edges=edges,
        shares=tuple(float(c) for c in counts / counts.sum()),
        missing=missing,
        minimum=float(present.min()),
        maximum=float(present.max()),
        mean=float(present.mean()),
        std=float(present.std()),
        quantiles=tuple(float(q) for q in np.quantile(present, np.linspace(0, 1, QUANTILES))),
    )


def profile_levels(name: str, values: Sequence[Any] | np.ndarray) -> CategoricalProfile:
    """Level shares of a text column, the long tail capped into OTHER."""
    texts = [
        MISSING_LEVEL if v is None else str(v) for v in np.asarray(values, dtype=object).ravel()
    ]
    total = len(texts) or 1
    levels, counts = np.unique(np.array(texts, dtype=object), return_counts=True)
    missing = 0.0
    pairs = []
    for level, count in zip(levels.tolist(), counts.tolist(), strict=True):
        if level == MISSING_LEVEL:
            missing = count / total
        else:
            pairs.append((str(level), count / total))
    pairs.sort(key=lambda pair: (-pair[1], pair[0]))
    kept = pairs[:MAX_LEVELS]
    other = float(sum(share for _, share in pairs[MAX_LEVELS:]))
    return CategoricalProfile(
        name=name,
        levels=tuple(level for level, _ in kept),
        shares=tuple(share for _, share in kept),
        other=other,
        missing=missing,
    )


def build_profile(
    schema: Schema,
    columns: Mapping[str, Any],
    predictions: np.ndarray,
    classes: Sequence[str],
) -> ReferenceProfile:
    """The profile of the training `columns` (by feature name) and the model's predictions on them.

    Classification predictions are class indices into `classes`; regression ones are numbers.
    """
    features: list[FeatureProfile] = []
    skipped: list[str] = []
    for feature in schema.features:
        if feature.kind == "numeric":
            features.append(profile_numbers(feature.name, np.asarray(columns[feature.name])))
        elif feature.kind == "categorical":
            features.append(profile_levels(feature.name, np.asarray(columns[feature.name])))
        else:
            skipped.append(feature.name)  # dates move with the calendar: drift would always fire
    if classes:
        labels = [classes[int(i)] for i in np.asarray(predictions).ravel()]
        prediction: FeatureProfile = profile_levels("prediction", labels)
    else:
        prediction = profile_numbers("prediction", np.asarray(predictions))
    return ReferenceProfile(len(predictions), tuple(features), prediction, tuple(skipped))


def render_profile(profile: ReferenceProfile) -> bytes:
    """profile.json's bytes."""
    return (
        json.dumps(profile.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    ).encode()


def training_profile(result: TrainResult) -> ReferenceProfile:
    """The profile of the rows the model was fitted on, and of its predictions on them."""
    features = result.features
    columns = {name: features[name].to_numpy() for name in result.schema.names if name in features}
    predictions = np.asarray(result.pipeline.predict(features))
    return build_profile(result.schema, columns, predictions, result.classes)


def load_profile(artifact: Artifact) -> ReferenceProfile | None:
    """The sealed profile of a model folder, or None for a folder trained before profiles."""
    if PROFILE_FILE not in artifact.card.files:
        return None
    data = artifact.read(PROFILE_FILE)
    where = str(artifact.directory / PROFILE_FILE)
    try:
        document = json.loads(data)
    except ValueError:
        raise ArtifactError(f"{where} is not JSON") from None
    if not isinstance(document, dict):
        raise ArtifactError(f"{where} is not a tabship reference profile")
    return ReferenceProfile.from_dict(document, where)
