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

from tabship import dates
from tabship.errors import Problem, RecordError

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["numeric", "categorical", "date"]

# A categorical value the table left empty is encoded as its own level, because the ONNX
# converter cannot impute strings; numeric gaps stay NaN for the pipeline's imputer.
MISSING_LEVEL = ""
MAX_LISTED_PROBLEMS = 20

_ABSENT = object()
# The model computes in 32-bit floats: a larger number would become infinity inside the graph.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# An unseen category reaches the engine as this text, which no table can hold as a level, so
# every encoder treats it as unknown (one-hot: all zeros), the same in ONNX and scikit-learn.
UNSEEN_LEVEL = "\x00unseen"
MAX_SHOWN_LEVELS = 10
EMPTY = "is required; it cannot be empty"
NOT_A_DATE = "must be a date such as 2024-05-31 or 2024-05-31T14:30 (ISO 8601), got"
_NAT = np.datetime64("NaT", "s")


def shown(value: object) -> str:
    """A value as messages quote it: short, whatever the client sent."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Feature:
    """One input column as the model saw it in training, and the rules for its values.

    The JSON, form and table paths all ask the feature, so one fault reads the same
    wherever it is found.
    """

    name: str
    kind: Kind
    dtype: str
    allow_missing: bool
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    levels: tuple[str, ...] = ()
    # Dates: slashed dates put the day first, as the training column did ("31/01/2024").
    day_first: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_known", frozenset(self.known_levels))

    @property
    def inputs(self) -> tuple[str, ...]:
        """The engine's input columns for this feature: itself, or one number per date part.

        Dates reach the model as calendar parts computed before the pipeline, so the ONNX
        graph takes only numbers and text, and serving computes the parts with numpy.
        """
        if self.kind != "date":
            return (self.name,)
        return tuple(f"{self.name}.{part}" for part in dates.part_names(self.dtype == "datetime"))

    def date_parts(self, stamps: np.ndarray) -> dict[str, np.ndarray]:
        """The engine's (n, 1) part columns for datetime64 `stamps` of this date feature."""
        found = dates.parts(stamps, self.dtype == "datetime")
        return {
            name: column.reshape(-1, 1)
            for name, column in zip(self.inputs, found.values(), strict=True)
        }

    @property
    def known_levels(self) -> tuple[str, ...]:
        """The categories seen in training, without the level that stands for 'missing'."""
        return tuple(level for level in self.levels if level != MISSING_LEVEL)

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
        elif self.kind == "date":
            out |= {"day_first": self.day_first, "parts": list(self.inputs)}
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
            day_first=bool(data.get("day_first", False)),
        )

    def unseen_message(self, value: object) -> str:
        """'x' is not one of the N values seen in training (e.g. a, b, c, ...)."""
        known = self.known_levels
        examples = ", ".join(known[:MAX_SHOWN_LEVELS]) + (
            ", ..." if len(known) > MAX_SHOWN_LEVELS else ""
        )
        return f"{shown(value)} is not one of the {len(known)} values seen in training (e.g. {examples})"

    def range_warning(self, number: float) -> str:
        """The warning for a number outside what training saw."""
        return (
            f"{self.name}: {_fmt(number)} is outside the training range "
            f"{_fmt(self.minimum)} to {_fmt(self.maximum)}; the prediction is an extrapolation"
        )

    def read(self, value: object, strict: bool = False) -> tuple[Any, str | None, str | None]:
        """A JSON value as the engine takes it, with the problem (refused) or warning it raises."""
        if value is None:
            missing: Any = {"numeric": math.nan, "date": _NAT}.get(self.kind, MISSING_LEVEL)
            return missing, (None if self.allow_missing else EMPTY), None
        if self.kind == "numeric":
            return self._number(value)
        if self.kind == "date":
            return self._date(value)
        if type(value) is bool and self.dtype == "bool":
            value = str(value)
        if not isinstance(value, str):
            return MISSING_LEVEL, f"must be text, got {shown(value)}", None
        if value in self._known:  # type: ignore[attr-defined]
            return value, None, None
        if value == MISSING_LEVEL:
            return MISSING_LEVEL, (None if self.allow_missing else EMPTY), None
        if strict:
            return MISSING_LEVEL, self.unseen_message(value), None
        return (
            UNSEEN_LEVEL,
            None,
            f"{self.name}: {self.unseen_message(value)}; predicted as unknown",
        )

    def read_text(self, text: str, strict: bool = False) -> tuple[Any, str | None, str | None]:
        """Text from a form or a table cell: empty is missing, numbers are parsed first."""
        text = text.strip()
        if text == "":
            return self.read(None, strict)
        if self.kind == "numeric":
            try:
                number = float(text)
            except ValueError:
                return math.nan, f"must be a number, got {shown(text)}", None
            if self.integer and number.is_integer() and abs(number) <= FLOAT32_MAX:
                return self.read(int(number), strict)
            return self.read(number, strict)
        return self.read(text, strict)

    def read_cell(self, cell: object, strict: bool = False) -> tuple[Any, str | None, str | None]:
        """A table cell as pandas gives it: text, a numpy number, or a missing marker."""
        if isinstance(cell, str):
            return self.read_text(cell, strict)
        if isinstance(cell, np.generic):
            cell = cell.item()
        if isinstance(cell, float) and math.isnan(cell):
            return self.read(None, strict)
        return self.read(cell, strict)

    def _date(self, value: object) -> tuple[np.datetime64, str | None, str | None]:
        if not isinstance(value, str):
            return _NAT, f"{NOT_A_DATE} {shown(value)}", None
        stamp = dates.parse([value], self.day_first)[0]
        if np.isnat(stamp):
            return _NAT, f"{NOT_A_DATE} {shown(value)}", None
        return stamp, None, None

    def _number(self, value: object) -> tuple[float, str | None, str | None]:
        kind = type(value)
        if kind is not float and kind is not int:
            return math.nan, f"must be a number, got {shown(value)}", None
        # Compared before float(): an integer of a thousand digits does not fit a float at all.
        if not (-FLOAT32_MAX <= value <= FLOAT32_MAX):  # type: ignore[operator]
            if kind is float and math.isnan(value):  # type: ignore[arg-type]
                return math.nan, f"must be a finite number, got {shown(value)}", None
            bound = f"{FLOAT32_MAX:.3g}"
            return (
                math.nan,
                f"must be a finite number between -{bound} and {bound}, got {shown(value)}",
                None,
            )
        number = float(value)  # type: ignore[arg-type]
        if self.integer and not number.is_integer():
            return number, f"must be a whole number, got {shown(value)}", None
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if number < low or number > high:
            return number, None, self.range_warning(number)
        return number, None, None


@dataclass(frozen=True)
class Batch:
    """Validated input: one (n, 1) array per feature, warnings, and unseen categories by field."""

    columns: dict[str, np.ndarray]
    rows: int
    warnings: list[str] = field(default_factory=list)
    unseen: dict[str, int] = field(default_factory=dict)


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _listed(names: Sequence[str]) -> str:
    head = ", ".join(names[:MAX_SHOWN_LEVELS])
    return head + (f", ... ({len(names)} in all)" if len(names) > MAX_SHOWN_LEVELS else "")


class _Problems:
    """Problems of one request, capped: a hostile body must not grow the answer or the memory."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, name: str, message: str, row: int | None) -> None:
        if len(self.items) < MAX_LISTED_PROBLEMS:
            self.items.append(Problem(name, message, row))

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_LISTED_PROBLEMS


@dataclass(frozen=True)
class Schema:
    """The features a model takes, in the order the engine expects them."""

    features: tuple[Feature, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(f.name for f in self.features))
        # Computed once: engines read the input list on every request.
        inputs = [
            (name, feature.kind == "categorical")
            for feature in self.features
            for name in feature.inputs
        ]
        object.__setattr__(self, "_inputs", inputs)
        object.__setattr__(self, "_input_names", [name for name, _ in inputs])

    @property
    def names(self) -> list[str]:
        """Feature names in engine order."""
        return [f.name for f in self.features]

    @property
    def inputs(self) -> list[tuple[str, bool]]:
        """The engine's input columns in order, each with whether it is text (a category)."""
        return self._inputs  # type: ignore[attr-defined,no-any-return]

    @property
    def input_names(self) -> list[str]:
        """The engine's input column names in order (a date gives one per part)."""
        return self._input_names  # type: ignore[attr-defined,no-any-return]

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready list of features."""
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_dict(cls, data: Sequence[Mapping[str, Any]]) -> Schema:
        """Inverse of to_dict."""
        return cls(tuple(Feature.from_dict(item) for item in data))

    def validate(
        self, records: Sequence[Mapping[str, Any]], strict_categories: bool = False
    ) -> Batch:
        """Check JSON-like records and return the engine's input arrays.

        Raises RecordError listing the bad fields (with their row when there are several
        records), at most MAX_LISTED_PROBLEMS of them; values outside the training range and
        unseen categories pass with a warning (unseen ones are refused when strict).
        """
        if not isinstance(records, Sequence) or isinstance(records, str | bytes):
            raise RecordError([Problem("instances", "must be a list of records")])
        count = len(records)
        if count == 0:
            raise RecordError([Problem("instances", "is empty; send at least one record")])
        problems = _Problems()
        warnings: list[str] = []
        unseen: dict[str, int] = {}
        values: list[list[Any]] = [[None] * count for _ in self.features]
        for index, record in enumerate(records):
            row = index if count > 1 else None
            if not isinstance(record, Mapping):
                problems.add("(record)", "must be an object of field: value", row)
            else:
                self._read_record(
                    record, index, row, values, problems, warnings, unseen, strict_categories
                )
            if problems.full:
                break
        if problems.items:
            raise RecordError(problems.items)
        columns: dict[str, np.ndarray] = {}
        for feature, column in zip(self.features, values, strict=True):
            if feature.kind == "date":
                columns |= feature.date_parts(np.array(column, dtype="datetime64[s]"))
            else:
                dtype = np.float64 if feature.kind == "numeric" else object
                columns[feature.name] = np.array(column, dtype=dtype).reshape(count, 1)
        return Batch(columns=columns, rows=count, warnings=warnings, unseen=unseen)

    def _read_record(
        self,
        record: Mapping[str, Any],
        index: int,
        row: int | None,
        values: list[list[Any]],
        problems: _Problems,
        warnings: list[str],
        unseen: dict[str, int],
        strict: bool,
    ) -> None:
        found = 0
        for position, feature in enumerate(self.features):
            value = record.get(feature.name, _ABSENT)
            if value is _ABSENT:
                problems.add(feature.name, "is missing; this field is required", row)
                continue
            found += 1
            engine_value, problem, warning = feature.read(value, strict)
            values[position][index] = engine_value
            if problem is not None:
                problems.add(feature.name, problem, row)
            elif warning is not None:
                warnings.append(warning if row is None else f"row {row}: {warning}")
                if engine_value is UNSEEN_LEVEL:
                    unseen[feature.name] = unseen.get(feature.name, 0) + 1
        if found != len(record):
            self._extra_fields(record, row, problems)

    def _extra_fields(
        self, record: Mapping[str, Any], row: int | None, problems: _Problems
    ) -> None:
        names: frozenset[str] = self._names  # type: ignore[attr-defined]
        extra = 0
        for key in record:
            if key not in names:
                extra += 1
                if not problems.full:
                    problems.add(str(key)[:60], "is not a field of this model", row)
        # Named once, however many unknown keys came: the list is the model's, not the client's.
        problems.items.append(
            Problem(
                "(record)", f"{extra} unknown field(s); the fields are {_listed(self.names)}", row
            )
        )

    def validate_frame(
        self, frame: pd.DataFrame, first_row: int = 1, strict_categories: bool = False
    ) -> Batch:
        """Vectorised validation of a table chunk (batch scoring); extra columns are ignored.

        `first_row` numbers the chunk's first row in messages, so errors point into the file.
        The checks are numpy masks; the message for a flagged cell comes from the feature,
        so it reads as it would in a JSON request.
        """
        missing_columns = [name for name in self.names if name not in frame.columns]
        if missing_columns:
            raise RecordError(
                [Problem(name, "column is missing from the table") for name in missing_columns]
            )
        problems = _Problems()
        warnings: list[str] = []
        unseen: dict[str, int] = {}
        columns: dict[str, np.ndarray] = {}
        for feature in self.features:
            raw = frame[feature.name]
            empty = raw.isna().to_numpy()
            if feature.kind == "numeric":
                column, refused = _numeric_column(feature, raw, empty, warnings)
            elif feature.kind == "date":
                column, refused = _date_column(feature, raw, empty)
            else:
                column, unknown = _categorical_column(feature, raw, empty)
                refused = unknown if strict_categories else np.zeros(len(raw), dtype=bool)
                count = int(unknown.sum())
                if count and not strict_categories:
                    unseen[feature.name] = count
                    examples = ", ".join(shown(v) for v in raw[unknown].unique()[:3])
                    warnings.append(
                        f"{feature.name}: {count} rows held values not seen in training "
                        f"(e.g. {examples}); predicted as unknown"
                    )
            if not feature.allow_missing:
                refused = refused | empty
            for position in np.flatnonzero(refused)[:MAX_LISTED_PROBLEMS]:
                _, problem, _ = feature.read_cell(raw.iloc[int(position)], strict_categories)
                problems.add(feature.name, problem or EMPTY, first_row + int(position))
            if feature.kind == "date":
                columns |= feature.date_parts(column)
            else:
                columns[feature.name] = column.reshape(-1, 1)
        if problems.items:
            raise RecordError(problems.items)
        return Batch(columns=columns, rows=len(frame), warnings=warnings, unseen=unseen)


def _numeric_column(
    feature: Feature, raw: pd.Series, empty: np.ndarray, warnings: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The column as float64 and the mask of cells the feature refuses (not empty ones)."""
    import pandas as pd

    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        refused = (~empty & np.isnan(numbers)) | (np.abs(numbers) > FLOAT32_MAX)
        if feature.integer:
            refused |= np.isfinite(numbers) & (numbers != np.round(numbers))
        low = -np.inf if feature.minimum is None else feature.minimum
        high = np.inf if feature.maximum is None else feature.maximum
        outside = int((~refused & ((numbers < low) | (numbers > high))).sum())
    if outside:
        warnings.append(
            f"{feature.name}: {outside} rows outside the training range "
            f"{_fmt(feature.minimum)} to {_fmt(feature.maximum)}; their predictions are extrapolations"
        )
    return numbers, refused


def _date_column(
    feature: Feature, raw: pd.Series, empty: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The column as datetime64[s] and the mask of cells that are not dates."""
    if raw.dtype.kind == "M":
        if getattr(raw.dt, "tz", None) is not None:
            raw = raw.dt.tz_convert("UTC").dt.tz_localize(None)
        stamps = raw.to_numpy(dtype="datetime64[s]")
    else:
        stamps = dates.parse(raw.to_numpy(dtype=object), feature.day_first)
    return stamps, ~empty & np.isnat(stamps)


def _categorical_column(
    feature: Feature, raw: pd.Series, empty: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The column as the engine's text and the mask of values not seen in training."""
    allowed = list(feature.known_levels)
    codes = _level_codes(raw, allowed)
    unknown = ~empty & (codes < 0)
    # Index -1 picks the last entry: the missing level for empty cells, patched for unseen.
    text = np.array([*allowed, MISSING_LEVEL], dtype=object)[codes]
    text[unknown] = UNSEEN_LEVEL
    return text, unknown


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
