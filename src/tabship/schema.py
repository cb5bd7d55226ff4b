"""The feature schema inferred from a table, and validation of records against it.

Validation needs only numpy so the serving path never imports pandas or scikit-learn;
frames arrive duck-typed from the callers that have pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tabship.errors import Problem, RecordError

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["numeric", "categorical"]

# A categorical value the table left empty is encoded as its own level, because the ONNX
# converter cannot impute strings; numeric gaps stay NaN for the pipeline's imputer.
MISSING_LEVEL = ""
MAX_LISTED_PROBLEMS = 20

_ABSENT = object()


@dataclass(frozen=True)
class Feature:
    """One input column as the model saw it in training."""

    name: str
    kind: Kind
    dtype: str
    allow_missing: bool
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    levels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, as stored in tabship.json."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "allow_missing": self.allow_missing,
        }
        if self.kind == "numeric":
            out |= {"integer": self.integer, "minimum": self.minimum, "maximum": self.maximum}
        else:
            out["levels"] = list(self.levels)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        """Inverse of to_dict."""
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            dtype=str(data["dtype"]),
            allow_missing=bool(data["allow_missing"]),
            integer=bool(data.get("integer", False)),
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            levels=tuple(str(level) for level in data.get("levels", ())),
        )


@dataclass(frozen=True)
class Batch:
    """Validated input: one (n, 1) array per feature, plus warnings for the caller."""

    columns: dict[str, np.ndarray]
    rows: int
    warnings: list[str] = field(default_factory=list)


def _describe_range(feature: Feature) -> str:
    return f"{_fmt(feature.minimum)} to {_fmt(feature.maximum)}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _RecordChecker:
    """Per-feature checks for JSON-like values, kept apart so the hot loop stays flat."""

    def __init__(self, feature: Feature) -> None:
        self.feature = feature
        self.name = feature.name
        self.levels = frozenset(feature.levels)
        self.low = -math.inf if feature.minimum is None else feature.minimum
        self.high = math.inf if feature.maximum is None else feature.maximum
        self.allowed_text = ", ".join(level for level in feature.levels if level != MISSING_LEVEL)
        self.is_numeric = feature.kind == "numeric"

    def numeric(
        self, value: object, row: int | None, problems: list[Problem], warnings: list[str]
    ) -> float:
        kind = type(value)
        if kind is float or kind is int:
            number = float(value)  # type: ignore[arg-type]
            if not math.isfinite(number):
                problems.append(Problem(self.name, f"must be a finite number, got {value!r}", row))
            elif self.feature.integer and not number.is_integer():
                problems.append(Problem(self.name, f"must be a whole number, got {value!r}", row))
            elif number < self.low or number > self.high:
                where = f"row {row}: " if row is not None else ""
                warnings.append(
                    f"{where}{self.name}: {_fmt(number)} is outside the training range "
                    f"{_describe_range(self.feature)}; the prediction is an extrapolation"
                )
            return number
        if value is None:
            if self.feature.allow_missing:
                return math.nan
            problems.append(Problem(self.name, "is required; null is not allowed", row))
        else:
            problems.append(
                Problem(
                    self.name, f"must be a number, got {type(value).__name__} {value!r:.40}", row
                )
            )
        return math.nan

    def categorical(self, value: object, row: int | None, problems: list[Problem]) -> str:
        if type(value) is str:
            if value in self.levels and value != MISSING_LEVEL:
                return value
            problems.append(
                Problem(self.name, f"{value!r:.60} is not one of: {self.allowed_text}", row)
            )
            return MISSING_LEVEL
        if type(value) is bool and self.feature.dtype == "bool":
            return str(value)
        if value is None:
            if self.feature.allow_missing:
                return MISSING_LEVEL
            problems.append(Problem(self.name, f"is required; one of: {self.allowed_text}", row))
        else:
            problems.append(
                Problem(
                    self.name,
                    f"must be a string, one of: {self.allowed_text}; got {type(value).__name__}",
                    row,
                )
            )
        return MISSING_LEVEL


@dataclass(frozen=True)
class Schema:
    """The features a model takes, in the order the engine expects them."""

    features: tuple[Feature, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_checkers", tuple(_RecordChecker(f) for f in self.features))
        object.__setattr__(self, "_names", frozenset(f.name for f in self.features))

    @property
    def names(self) -> list[str]:
        """Feature names in engine order."""
        return [f.name for f in self.features]

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready list of features."""
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_dict(cls, data: Sequence[Mapping[str, Any]]) -> Schema:
        """Inverse of to_dict."""
        return cls(tuple(Feature.from_dict(item) for item in data))

    def validate(self, records: Sequence[Mapping[str, Any]]) -> Batch:
        """Check JSON-like records and return the engine's input arrays.

        Raises RecordError listing every bad field (with its row when there are several
        records); values outside the training range pass with a warning.
        """
        if not isinstance(records, Sequence) or isinstance(records, str | bytes):
            raise RecordError([Problem("instances", "must be a list of records")])
        count = len(records)
        if count == 0:
            raise RecordError([Problem("instances", "is empty; send at least one record")])
        problems: list[Problem] = []
        warnings: list[str] = []
        checkers: tuple[_RecordChecker, ...] = self._checkers  # type: ignore[attr-defined]
        values: list[list[Any]] = [[None] * count for _ in checkers]
        for index, record in enumerate(records):
            row = index if count > 1 else None
            if not isinstance(record, Mapping):
                problems.append(Problem("(record)", "must be an object of field: value", row))
                continue
            found = 0
            for position, checker in enumerate(checkers):
                value = record.get(checker.name, _ABSENT)
                if value is _ABSENT:
                    problems.append(
                        Problem(checker.name, "is missing; this field is required", row)
                    )
                    continue
                found += 1
                if checker.is_numeric:
                    values[position][index] = checker.numeric(value, row, problems, warnings)
                else:
                    values[position][index] = checker.categorical(value, row, problems)
            if found != len(record):
                names: frozenset[str] = self._names  # type: ignore[attr-defined]
                fields = ", ".join(self.names)
                for extra in sorted(str(key) for key in record if key not in names):
                    problems.append(
                        Problem(extra, f"is not a field of this model; fields: {fields}", row)
                    )
            if len(problems) > MAX_LISTED_PROBLEMS:
                break
        if problems:
            raise RecordError(problems[:MAX_LISTED_PROBLEMS])
        columns = {
            checker.name: np.array(
                column, dtype=np.float64 if checker.is_numeric else object
            ).reshape(count, 1)
            for checker, column in zip(checkers, values, strict=True)
        }
        return Batch(columns=columns, rows=count, warnings=warnings)

    def validate_frame(self, frame: pd.DataFrame, first_row: int = 1) -> Batch:
        """Vectorised validation of a table chunk (batch scoring); extra columns are ignored.

        `first_row` numbers the chunk's first row in messages, so errors point into the file.
        """
        import pandas as pd

        problems: list[Problem] = []
        warnings: list[str] = []
        columns: dict[str, np.ndarray] = {}
        missing_columns = [name for name in self.names if name not in frame.columns]
        if missing_columns:
            raise RecordError(
                [Problem(name, "column is missing from the table") for name in missing_columns]
            )
        for feature in self.features:
            raw = frame[feature.name]
            empty = raw.isna().to_numpy()
            if feature.kind == "numeric":
                numbers = pd.to_numeric(raw, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
                _flag(
                    problems, feature, ~empty & np.isnan(numbers), raw, first_row, "is not a number"
                )
                _flag(problems, feature, np.isinf(numbers), raw, first_row, "must be finite")
                if feature.integer:
                    fractional = np.isfinite(numbers) & (numbers != np.round(numbers))
                    _flag(problems, feature, fractional, raw, first_row, "must be a whole number")
                low = -np.inf if feature.minimum is None else feature.minimum
                high = np.inf if feature.maximum is None else feature.maximum
                outside = int(((numbers < low) | (numbers > high)).sum())
                if outside:
                    warnings.append(
                        f"{feature.name}: {outside} rows outside the training range "
                        f"{_describe_range(feature)}; their predictions are extrapolations"
                    )
                columns[feature.name] = numbers.reshape(-1, 1)
            else:
                allowed = [level for level in feature.levels if level != MISSING_LEVEL]
                codes = _level_codes(raw, allowed)
                unknown = ~empty & (codes < 0)
                text = np.array([*allowed, MISSING_LEVEL], dtype=object)[codes]
                _flag(
                    problems,
                    feature,
                    unknown,
                    raw,
                    first_row,
                    f"is not one of: {', '.join(allowed)}",
                )
                columns[feature.name] = text.reshape(-1, 1)
            if not feature.allow_missing:
                _flag(problems, feature, empty, raw, first_row, "is empty; this field is required")
        if problems:
            raise RecordError(problems[:MAX_LISTED_PROBLEMS])
        return Batch(columns=columns, rows=len(frame), warnings=warnings)


def _level_codes(raw: pd.Series, allowed: list[str]) -> np.ndarray:
    """Each row's index in `allowed`, -1 for empty or unknown: one hashed lookup per column.

    Arrow-backed text (what pandas and our CSV reader give) is looked up in Arrow itself;
    turning a million strings into Python objects first would cost more than the model.
    """
    import pandas as pd

    if hasattr(raw.array, "__arrow_array__") and raw.dtype.kind in "OUT":
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.index_in(pa.array(raw.array), value_set=pa.array(allowed, pa.string()))
        return np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.intp)
    labels = raw if raw.dtype.kind in "OUT" or str(raw.dtype) == "str" else raw.astype(str)
    return np.asarray(pd.Index(allowed, dtype=object).get_indexer(pd.Index(labels)))


def _flag(
    problems: list[Problem],
    feature: Feature,
    mask: np.ndarray,
    raw: pd.Series,
    first_row: int,
    message: str,
) -> None:
    """Add a problem for each of the first few rows where `mask` is true."""
    for position in np.flatnonzero(mask)[:MAX_LISTED_PROBLEMS]:
        value = raw.iloc[int(position)]
        problems.append(
            Problem(feature.name, f"{value!r:.60} {message}", first_row + int(position))
        )
