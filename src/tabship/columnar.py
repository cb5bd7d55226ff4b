"""Tables as the frames training and prediction read: Parquet's names checked as a CSV header's
are, and cells of Python types read as the column types they stand for.

pandas turns an Arrow table written without pandas' own metadata (by pyarrow, Spark, DuckDB,
polars) into object columns: dates as `datetime.date`, decimals as `Decimal`, booleans with a
gap as True/False/None. Training took a date or decimal column for an ID (every value a new
text), a boolean's levels as the text of Python objects, and prediction refused the dates.
`typed_cells` reads such columns as datetimes, floats and pandas' nullable booleans, for the
model only: a prediction's output copies the input's cells as they were.
"""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tabship.datasets import UNNAMED, check_header


def is_text(column: pd.Series) -> bool:
    """Whether a column holds text (objects, or pandas' string types)."""
    return column.dtype.kind in "OUT" or pd.api.types.is_string_dtype(column)


def frame_of(table: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """`table` as a DataFrame, its names checked as a CSV header's are: two alike refused, an
    empty one called `Unnamed: N` as pandas calls a CSV's, and noted in attrs."""
    names = [str(name) for name in table.schema.names]
    given = [name or f"Unnamed: {position}" for position, name in enumerate(names)]
    unnamed = check_header(names, list(given))
    if unnamed:  # pandas' metadata names the columns as written: renamed, it is left out
        table = pa.Table.from_arrays(list(table.columns), names=given)
    frame: pd.DataFrame = table.to_pandas()
    frame.attrs[UNNAMED] = unnamed
    return frame


def as_read(table: pa.Table, types: dict[str, pa.DataType]) -> pa.Table:
    """`table` with each column that came from the input in the input's own Arrow type."""
    for position, name in enumerate(table.column_names):
        wanted = types.get(name)
        if wanted is not None and table.schema.types[position] != wanted:
            try:
                column = table.column(position).cast(wanted)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue  # kept as pandas gave it; the writer's own cast says what is wrong
            table = table.set_column(
                position, table.schema.field(position).with_type(wanted), column
            )
    return table


def typed_cells(frame: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """`frame` with its object columns (or those of `names`) of dates, decimals or booleans
    read as datetime64, float64 and nullable boolean columns; other columns as they are."""
    changed: dict[str, Any] = {}
    for name in frame.columns if names is None else names:
        column = frame[name]
        if column.dtype != object:
            continue
        # A look at the first cells first: a text column (the common case, on every chunk a
        # file is predicted in) is passed over without a walk through all of its values.
        head = column.iloc[:_LOOK].dropna()
        if len(head) and not set(map(type, head)) & _TYPED:
            continue
        kinds = set(map(type, column.dropna()))
        if kinds <= {datetime.date, datetime.datetime, pd.Timestamp}:
            changed[name] = pd.to_datetime(column.map(_naive) if _aware(column) else column)
        elif kinds <= {decimal.Decimal}:
            changed[name] = column.astype("float64")
        elif kinds <= {bool}:
            changed[name] = column.astype("boolean")
    return frame.assign(**changed) if changed else frame


# The cell types `typed_cells` reads as columns, and how many cells it looks at first.
_TYPED = frozenset({datetime.date, datetime.datetime, pd.Timestamp, decimal.Decimal, bool})
_LOOK = 100


def _aware(column: pd.Series) -> bool:
    """Whether a column's datetimes carry time zones (then read as wall-clock times)."""
    return any(getattr(cell, "tzinfo", None) is not None for cell in column.dropna())


def _naive(cell: Any) -> Any:
    return cell.replace(tzinfo=None) if getattr(cell, "tzinfo", None) is not None else cell


def wall_clock(column: pd.Series) -> np.ndarray:
    """A datetime column as datetime64[s] in each value's own local time.

    Calendar parts say when something happened where it happened: a Berlin midnight is the
    first hour of its day, not 23:00 the day before in UTC. Text such as
    `2024-05-31T00:00+02:00` reads that way on every path (files, requests), so a time
    zone is dropped, never converted.
    """
    if getattr(column.dt, "tz", None) is not None:
        column = column.dt.tz_localize(None)
    return np.asarray(column.to_numpy(dtype="datetime64[s]"))


def nested_as_json(table: pa.Table) -> pa.Table:
    """Lists, structs and maps as JSON text, for a CSV (whose writer refuses them): a
    Parquet input's nested columns are copied into a CSV output, not lost or refused."""
    columns = [
        pa.array(
            [
                None if cell is None else json.dumps(cell, default=str)
                for cell in column.to_pylist()
            ],
            pa.string(),
        )
        if pa.types.is_nested(column.type)
        else column
        for column in table.columns
    ]
    return pa.table(columns, names=table.column_names)
