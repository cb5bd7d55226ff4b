"""The training set: a table checked, and made into its task, schema, features and target."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tabship.candidates import Task
from tabship.columnar import typed_cells
from tabship.datasets import NOTES, UNNAMED, separator_hint
from tabship.errors import DataError, RecordError
from tabship.feature import FLOAT32_MAX, closest, listed, past_float32
from tabship.labels import (
    class_spellings_note,
    encode_target,
    extreme_values_note,
    infer_task,
    small_spread_note,
    target_as_written,
    text_numbers_problem,
)
from tabship.leakage import leak_warnings, repeated_rows_note
from tabship.profile import infer_schema, stamps
from tabship.schema import Batch, Schema

if TYPE_CHECKING:
    from tabship.train import TrainOptions


def _validated(schema: Schema, frame: pd.DataFrame, kept: np.ndarray) -> Batch:
    """The table checked against its schema, a bad row named by its place in the file."""
    try:
        return schema.validate_frame(frame)
    except RecordError as exc:
        raise RecordError(
            [
                replace(p, row=int(kept[p.row - 1]) + 1) if p.row is not None else p
                for p in exc.problems
            ]
        ) from None


def _past_float32(column: pd.Series) -> tuple[int, float] | None:
    """The first row (numbered from 1) holding a number no model answer can carry (infinite,
    or past float32's range), and its value; None if there is none."""
    if column.dtype.kind != "f":  # integers past 3.4e38 do not fit int64 either
        return None
    values = column.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isnan(values) & ~(np.abs(values) <= FLOAT32_MAX))
    return (int(bad[0]) + 1, float(values[bad[0]])) if len(bad) else None


def _task(
    column: pd.Series,
    options: TrainOptions,
    file_rows: np.ndarray,
    unbounded: tuple[int, float] | None,
) -> Task:
    """The task as asked, else inferred; a target that cannot be it is refused, naming cells."""
    target = options.target
    if options.task != "classification":
        said = text_numbers_problem(column, target, file_rows, options.task == "regression")
        if said:
            raise DataError(said)
    task = options.task or infer_task(column)
    if task == "regression" and unbounded is not None:
        row, value = unbounded
        raise DataError(
            f"row {row}: target {target!r}: {past_float32(value)}: a model's answers are "
            "float32; rescale the target (in thousands, say) or drop the row"
        )
    return task


def prepare(
    frame: pd.DataFrame, options: TrainOptions, target_text: pd.Series | None = None
) -> tuple[Task, Schema, pd.DataFrame, np.ndarray, list[str], list[str]]:
    """Check the table and return task, schema, features, encoded target, classes, warnings.

    `target_text`: the target column as the file wrote it (a CSV's), so that a text target
    keeps the classes pandas reads as missing.
    """
    target = options.target
    if target not in frame.columns:
        names = [str(c) for c in frame.columns]
        near = closest(target, names)
        raise DataError(
            f"target column {target!r} is not in the table; "
            + (f"did you mean {near!r}? " if near is not None else "")
            + f"columns: {listed(names) or '(none)'}"
            + separator_hint(list(frame.columns))
        )
    if len(frame) == 0:
        raise DataError("the table has no rows; give a table with a header and at least one row")
    # Cells of Python dates, decimals or booleans (a Parquet file without pandas' metadata)
    # as the columns they are: a date column was taken for an ID.
    frame = typed_cells(frame)
    notes: list[str] = [
        f"column {position} has no name in the header; it is called {name!r} (a saved index? "
        "drop it or name it)"
        for position, name in frame.attrs.get(UNNAMED, [])
    ] + list(frame.attrs.get(NOTES, []))
    frame = target_as_written(frame, target, target_text, notes)
    empty_target = frame[target].isna()
    if empty_target.all():
        spelled = [] if target_text is None else sorted(set(target_text.str.strip()) - {""})
        raise DataError(
            f"target column {target!r} is empty in every row"
            + (f" (it holds only {listed(spelled)}, which are read as missing)" if spelled else "")
        )
    unbounded = _past_float32(frame[target])  # before the drop: rows as the file numbers them
    # Each kept row's place in the file, so a message names the row the user can find.
    kept = np.flatnonzero(~empty_target.to_numpy())
    if empty_target.any():
        notes.append(f"{int(empty_target.sum())} rows with an empty {target!r} dropped")
        frame = frame.loc[~empty_target].reset_index(drop=True)
    values = frame[target].unique().tolist()
    if len(values) == 1 and frame[target].dtype.kind in "iuf":
        raise DataError(
            f"target column {target!r} has one value ({values[0]!r}) in every row; there is "
            "nothing to predict"
        )
    task = _task(frame[target], options, kept, unbounded)
    labels, classes = encode_target(
        frame[target], task, target, options.folds, options.positive_class
    )
    notes.extend(
        [*small_spread_note(labels, target), *extreme_values_note(labels, target)]
        if task == "regression"
        else class_spellings_note(classes, target)
    )
    if len(frame) < 2 * options.folds:
        raise DataError(
            f"the table has {len(frame)} usable rows; {options.folds}-fold CV needs at least "
            f"{2 * options.folds}; add rows or lower --folds"
        )
    schema, ignored = infer_schema(frame, target)
    notes.extend(ignored)
    used = set(schema.names) | {target}
    schema = replace(schema, ignored=frozenset(str(c) for c in frame.columns if c not in used))
    if not schema.features:
        raise DataError(f"no usable feature columns besides {target!r}: {'; '.join(ignored)}")
    date_columns = [f.name for f in schema.features if f.kind == "date"]
    if date_columns:
        # The few values of a date column that are not dates train as missing dates.
        frame = frame.assign(**{name: stamps(frame[name]) for name in date_columns})
        notes.append(
            f"date columns {', '.join(date_columns)} expanded into calendar parts "
            "(year, month, day, day of week, day of year; hour when times are present)"
        )
    batch = _validated(schema, frame, kept)
    features = pd.DataFrame({name: column.ravel() for name, column in batch.columns.items()})
    notes.extend(leak_warnings(features, schema, labels, task, target))
    notes.extend(repeated_rows_note(frame, [*schema.names, target]))
    return task, schema, features, labels, classes, notes
