"""The feature schema inferred from a table, and validation of records against it.

Validation needs only numpy so the serving path never imports pandas or scikit-learn;
frames arrive duck-typed from the callers that have pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tabship.errors import Problem, RecordError, shown_field
from tabship.feature import (
    EMPTY,
    FLOAT32_MAX,
    MAX_SHOWN_LEVELS,
    MISSING_LEVEL,
    NOT_A_DATE,
    UNSEEN_LEVEL,
    Feature,
    Kind,
    closest,
    listed,
    shown,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EMPTY",
    "FLOAT32_MAX",
    "MAX_LISTED_PROBLEMS",
    "MAX_SHOWN_LEVELS",
    "MISSING_LEVEL",
    "NOT_A_DATE",
    "UNSEEN_LEVEL",
    "Batch",
    "Feature",
    "Kind",
    "Schema",
    "shown",
]
MAX_LISTED_PROBLEMS = 20
_ABSENT = object()


class Batch(NamedTuple):
    """Validated input: one (n, 1) array per feature, warnings, and unseen categories by field.

    A tuple, not a dataclass: one is made per request, and a frozen dataclass costs ten times
    as much to build.
    """

    columns: dict[str, np.ndarray]
    rows: int
    warnings: list[str]
    unseen: dict[str, int]
    # Per categorical feature (tables only): each row's level index, then missing, then unseen;
    # big batches key rows by decision cell with them (see cells.py).
    codes: dict[str, np.ndarray] | None = None
    # Tables only: rows outside the training range per feature, counted (not warned per
    # chunk: a file sums its chunks and warns once, see `Schema.counted_warnings`).
    outside: dict[str, int] | None = None
    # Tables only: empty cells per feature that had no gaps in training, filled (counted too).
    filled: dict[str, int] | None = None


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
    # Columns of the training table the model does not use (ignored in training, and the
    # target): a record may carry them, as a row of that table would, and they are skipped.
    # The card keeps them (`ignored_columns`); a bare schema has none.
    ignored: frozenset[str] = frozenset()

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
    def boolean_names(self) -> list[str]:
        """The boolean features' names (they take `true` for their level `True`)."""
        return [f.name for f in self.features if f.dtype == "bool"]

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
        self,
        records: Sequence[Mapping[str, Any]],
        strict_categories: bool = False,
        numbers: type[np.floating[Any]] = np.float64,
    ) -> Batch:
        """Check JSON-like records and return the engine's input arrays.

        Raises RecordError listing the bad fields (with their row when there are several
        records), at most MAX_LISTED_PROBLEMS of them; values outside the training range and
        unseen categories pass with a warning (unseen ones are refused when strict).
        """
        # `type(...) is` first: JSON gives lists and dicts, and ABC checks cost a request more.
        if type(records) is not list and (
            not isinstance(records, Sequence) or isinstance(records, str | bytes)
        ):
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
            if type(record) is not dict and not isinstance(record, Mapping):
                problems.add("(record)", "must be an object of field: value", row)
            else:
                self._read_record(
                    record, index, row, values, problems, warnings, unseen, strict_categories
                )
            if problems.full:
                break
        if problems.items:
            raise RecordError(problems.items)
        return self._batch(values, count, warnings, unseen, numbers)

    def _batch(
        self,
        values: Sequence[Any],
        count: int,
        warnings: list[str],
        unseen: dict[str, int],
        numbers: type[np.floating[Any]] = np.float64,
    ) -> Batch:
        """The engine's (n, 1) arrays from each feature's validated column.

        `numbers` is the engine's own float type: ONNX graphs take float32, and a column made
        in it is not made twice.
        """
        columns: dict[str, np.ndarray] = {}
        for feature, column in zip(self.features, values, strict=True):
            if feature.kind == "date":
                columns |= feature.date_parts(np.array(column, dtype="datetime64[s]"))
            else:
                dtype = numbers if feature.kind == "numeric" else object
                columns[feature.name] = np.array(column, dtype=dtype).reshape(count, 1)
        return Batch(columns=columns, rows=count, warnings=warnings, unseen=unseen)

    def validate_columns(
        self,
        columns: Mapping[str, list[Any]],
        count: int,
        strict_categories: bool = False,
        numbers: type[np.floating[Any]] = np.float64,
    ) -> Batch:
        """`validate` for input that comes as one column per feature (each of `count` values).

        The same checks and messages as the records would get, in the same (row) order:
        columns of valid values are checked at once, the others value by value. One row is
        read as the one record it is: the record path is the shorter way for a single row.
        """
        if count == 1:
            record = {feature.name: columns[feature.name][0] for feature in self.features}
            return self.validate([record], strict_categories, numbers)
        problems: list[tuple[int, int, str]] = []
        warnings: list[tuple[int, int, str]] = []
        unseen: dict[str, int] = {}
        values = []
        for position, feature in enumerate(self.features):
            read = feature.read_column(columns[feature.name], strict_categories)
            values.append(read.values)
            problems += [(row, position, message) for row, message in read.problems]
            warnings += [(row, position, message) for row, message in read.warnings]
            if read.unseen:
                unseen[feature.name] = read.unseen
        if problems:
            problems.sort()
            raise RecordError(
                [
                    Problem(self.features[position].name, message, row if count > 1 else None)
                    for row, position, message in problems[:MAX_LISTED_PROBLEMS]
                ]
            )
        warnings.sort()
        shown = [text if count == 1 else f"row {row}: {text}" for row, _, text in warnings]
        return self._batch(values, count, shown, unseen, numbers)

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
        absent = []
        for position, feature in enumerate(self.features):
            value = record.get(feature.name, _ABSENT)
            if value is _ABSENT:
                absent.append(feature.name)
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
        # Unknown fields first: a misspelt one explains the missing one, and a wide model's
        # missing fields alone would fill the capped list and leave it out.
        unknown = self._extra_fields(record, row, problems) if found != len(record) else None
        for name in absent:
            problems.add(name, "is missing; this field is required", row)
        if unknown is not None:
            problems.items.append(unknown)  # past the cap too: said once, however many came

    def _extra_fields(
        self, record: Mapping[str, Any], row: int | None, problems: _Problems
    ) -> Problem | None:
        """Each unknown field named (within the cap), and the one problem that counts them."""
        names: frozenset[str] = self._names  # type: ignore[attr-defined]
        extra = 0
        for key in record:
            if key not in names and key not in self.ignored:
                extra += 1
                if not problems.full:
                    problems.add(str(key)[:60], self._not_a_field(str(key), record), row)
        if not extra:
            return None
        # Named once, however many unknown keys came: the list is the model's, not the client's.
        return Problem(
            "(record)", f"{extra} unknown field(s); the fields are {listed(self.names)}", row
        )

    def _not_a_field(self, key: str, record: Mapping[str, Any]) -> str:
        """Why `key` is refused, naming the absent field it most likely misspells."""
        absent = [name for name in self.names if name not in record]
        meant = closest(key, absent) if absent else None
        return "is not a field of this model" + (f"; did you mean {meant!r}?" if meant else "")

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
            spare = [str(c) for c in frame.columns if c not in self._names]  # type: ignore[attr-defined]
            raise RecordError(
                [Problem(name, _missing_column(name, spare)) for name in missing_columns]
            )
        from tabship.columnar import typed_cells
        from tabship.frame_cells import column_cells, empty_cells

        frame = typed_cells(frame, self.names)  # Python dates, decimals, booleans (Parquet)
        problems = _Problems()
        found = 0  # every refused cell, listed or not
        outside: dict[str, int] = {}
        unseen: dict[str, int] = {}
        filled: dict[str, int] = {}
        columns: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray] = {}
        for feature in self.features:
            raw = frame[feature.name]
            empty = empty_cells(feature, raw)
            column, refused = column_cells(
                feature, raw, empty, strict_categories, outside, unseen, codes
            )
            if not feature.allow_missing:
                if feature.fills_gaps:
                    filled[feature.name] = int(empty.sum())
                else:
                    refused = refused | empty
            found += int(refused.sum())
            for position in np.flatnonzero(refused)[:MAX_LISTED_PROBLEMS]:
                _, problem, _ = feature.read_cell(raw.iloc[int(position)], strict_categories)
                problems.add(feature.name, problem or EMPTY, first_row + int(position))
            if feature.kind == "date":
                columns |= feature.date_parts(column)
            else:
                columns[feature.name] = column.reshape(-1, 1)
        if problems.items:
            raise RecordError(problems.items, found - len(problems.items))
        return Batch(
            columns,
            len(frame),
            self.counted_warnings(outside, filled),
            unseen,
            codes,
            outside,
            {name: count for name, count in filled.items() if count},
        )

    def counted_warnings(
        self, outside: Mapping[str, int], filled: Mapping[str, int] | None = None
    ) -> list[str]:
        """One warning per feature for its rows outside the training range, and its gaps."""
        found = []
        for feature in self.features:
            if outside.get(feature.name):
                rows = "1 row" if outside[feature.name] == 1 else f"{outside[feature.name]} rows"
                found.append(
                    f"{shown_field(feature.name)}: {rows} outside the training range "
                    f"{feature.range_text}; their predictions are extrapolations"
                )
            if filled and filled.get(feature.name):
                count = filled[feature.name]
                cells = "1 cell" if count == 1 else f"{count} cells"
                found.append(f"{shown_field(feature.name)}: {cells} {feature.gap_note}")
        return found


def _missing_column(name: str, spare: list[str]) -> str:
    """Why a predict file is refused, naming the column it likely spells otherwise (`age `
    for `age`, `AGE`): the file's columns the model does not read are the candidates."""
    import difflib

    folded = {column.strip().casefold(): column for column in spare}
    meant = folded.get(name.strip().casefold()) or next(
        iter(difflib.get_close_matches(name, spare, n=1, cutoff=0.75)), None
    )
    return "column is missing from the table" + (
        f"; the table has {meant!r}: rename it to {name!r}" if meant else ""
    )
