"""A predict file read in chunks: a CSV's as training read its table, a Parquet file's with
their Arrow types, so memory stays flat in the file's size (batch.py scores them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tabship.columnar import frame_of, is_text
from tabship.csvformat import CsvFormat, NumberMarks, rows_beyond_header, sniff, written_numbers
from tabship.datasets import MARKS, UNNAMED, check_header
from tabship.errors import DatasetError
from tabship.feature import NA_TEXTS
from tabship.predictor import Predictor
from tabship.schema import Schema

_INT64_MAX = np.iinfo(np.int64).max
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


# A chunk's attrs entry: each column's Arrow type in the Parquet file it was read from, so
# the output keeps it (pandas holds a decimal as Python objects, and Arrow would infer each
# chunk's precision from its own values: 1.00 then 123456.78 did not fit).
ARROW_TYPES = "tabship_arrow_types"


def parquet_frame(batch: pa.RecordBatch) -> pd.DataFrame:
    """A Parquet file's chunk as a frame to predict, its columns' Arrow types kept for the
    output (`ARROW_TYPES`)."""
    frame = frame_of(batch)
    frame.attrs[ARROW_TYPES] = dict(zip(frame.columns, batch.schema.types, strict=True))
    return frame


def file_chunks(
    path: Path, predictor: Predictor, chunk_rows: int, parquet: bool, form: CsvFormat | None
) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield parquet_frame(batch)
        return
    yield from csv_chunks(path, predictor.schema, chunk_rows, parquet, form)


def csv_chunks(
    source: Any,
    schema: Schema,
    chunk_rows: int,
    parquet: bool,
    form: CsvFormat | None = None,
    trained: NumberMarks = (".", None),
) -> Iterator[pd.DataFrame]:
    """A CSV file (a path or a seekable file) in chunks, read for predicting and copying.

    The model's numbers are parsed as training parsed them (for a Parquet output as floats,
    so that a chunk of whole numbers and the next one's fractions are one column type);
    every other column is kept as the text the user wrote: `007` stays 007, `NA` stays NA
    (a category's `NA` is still read as missing, as training read it), and a column that
    looks numeric in one chunk and not in the next is one type in the output.
    """
    form = form or sniff(source, trained=trained, expected=schema.names)
    beyond = rows_beyond_header(form)
    if beyond:
        raise DatasetError(f"cannot predict {getattr(source, 'name', source)}: {beyond}")
    args = form.read_args
    columns = [str(name) for name in pd.read_csv(source, nrows=0, **args).columns]
    kinds = {feature.name: feature.kind for feature in schema.features}
    if hasattr(source, "seek"):
        source.seek(0)
    # The header as written: two columns of one name are refused (the reader would score
    # the first and call the second `a.1`), and an unnamed one keeps its empty name in a CSV
    # output (`_Sink`), not the reader's `Unnamed: 0`.
    written = pd.read_csv(source, header=None, nrows=1, dtype=str, keep_default_na=False, **args)
    unnamed = check_header(written.iloc[0].tolist(), list(columns)) if len(written) else []
    if hasattr(source, "seek"):
        source.seek(0)
    numbers = [name for name in columns if kinds.get(name) == "numeric"]
    with pd.read_csv(
        source,
        chunksize=chunk_rows,
        dtype={name: str for name in columns if name not in numbers},
        keep_default_na=False,
        # Only numbers are parsed here; a category's or date's `NA` is read as missing by
        # `Schema.validate_frame` and copied to the output as written.
        na_values={name: sorted(NA_TEXTS) for name in numbers},
        **args,
    ) as reader:
        for chunk in reader:
            chunk = form.grouped_numbers(chunk, numbers)  # 1.234,5 as training read it
            # A column pandas left text at one bad cell: its numbers read with the file's
            # marks, so only that cell is refused (every `27,9` beside an `abc` was).
            texts = {n: written_numbers(chunk[n], form.marks) for n in numbers if is_text(chunk[n])}
            chunk = chunk.assign(**texts) if texts else chunk
            # A CSV output writes each chunk on its own: whole numbers stay integers there.
            chunk = _one_type(chunk, schema) if parquet else chunk
            chunk.attrs[UNNAMED] = unnamed
            chunk.attrs[MARKS] = form.marks  # for the target column's numbers (labelled.py)
            yield chunk


def _one_type(chunk: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """A CSV chunk's number columns in the type every chunk of a Parquet output gives them: a
    feature of whole numbers (its gaps too) as nullable integers, as the table had them (they
    were floats), other numbers as floats (a chunk of 1 and 2 before one of 1.5)."""
    typed: dict[str, str] = {}
    for feature in schema.features:
        if feature.kind != "numeric" or feature.name not in chunk.columns:
            continue
        name, column = feature.name, chunk[feature.name]
        if feature.integer and column.dtype.kind in "iu" and column.max() <= _INT64_MAX:
            typed[name] = "Int64"  # exact, however large
        elif column.dtype.kind == "u":  # past int64 (1.2e19): no Int64 holds it
            typed[name] = "float64"
        elif feature.integer and not is_text(column):  # text: validation names its cell
            present = column.dropna().to_numpy(dtype=np.float64)
            # Past 2**53 a float is not the integer written: it stays a float, for the
            # writer to cast or name.
            if np.all(present == np.round(present)) and np.all(np.abs(present) < 2**53):
                typed[name] = "Int64"
        elif column.dtype.kind in "iu":
            typed[name] = "float64"
    return chunk.astype(typed) if typed else chunk
