"""Batch prediction of a whole file in chunks (chunks.py reads them), so memory stays flat in
the file's size: each chunk validated, predicted and written beside its input columns."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tabship.chunks import ARROW_TYPES, PARQUET_SUFFIXES, file_chunks
from tabship.columnar import as_read, nested_as_json
from tabship.csvformat import CsvFormat, NumberMarks, sniff
from tabship.datasets import UNNAMED, parser_message
from tabship.errors import ConfigError, DatasetError, RecordError
from tabship.formulas import guard_formulas
from tabship.labelled import TargetColumn
from tabship.outputs import check_output_file, staged
from tabship.predictor import Predictor

DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class BatchSummary:
    """What a batch prediction run did; `unseen` counts rows per field holding a new category."""

    rows: int
    output: Path
    warnings: list[str]
    unseen: dict[str, int] = field(default_factory=dict)


def prediction_columns(
    predictor: Predictor, values: np.ndarray, proba: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Output columns: the prediction, and one probability column per class."""
    name = f"predicted_{predictor.target}"
    if predictor.task == "regression":
        return {name: values}
    assert proba is not None
    out: dict[str, np.ndarray] = {
        # As answers give them: a 0/1 target's predictions are numbers, not text.
        name: _label_column(predictor.labels)[values.astype(np.int64)]
    }
    for index, label in enumerate(predictor.keys):
        out[f"probability_{label}"] = proba[:, index]
    return out


def _label_column(labels: list[Any]) -> np.ndarray:
    """The classes as an array of their own type (int64, float64, bool or text)."""
    kind = type(labels[0]) if labels else str
    if kind in (int, float, bool):
        return np.asarray(labels, dtype={int: np.int64, float: np.float64, bool: np.bool_}[kind])
    return np.asarray(labels, dtype=object)


def _as_written(table: pa.Table, schema: pa.Schema, source: str | None) -> pa.Table:
    """`table` in the types of the rows written before it, or an error naming the column."""
    columns = []
    for name, column, wanted in zip(table.column_names, table.columns, schema.types, strict=True):
        try:
            columns.append(column.cast(wanted))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DatasetError(
                f"{source or 'the input'}: column {name[:80]!r} holds {column.type} values "
                f"that do not fit the {wanted} of the rows before it ({str(exc)[:120]}); "
                "write a CSV output (-o out.csv), or score the files apart"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def _check_paths(source: Path, output: Path, force: bool) -> None:
    if not source.is_file():
        raise DatasetError(f"no file {source}; give the CSV or Parquet table to predict")
    if output.suffix.lower() not in {*PARQUET_SUFFIXES, ".csv"} and not output.is_dir():
        # Written as CSV under any other name before: `-o out.json` held no JSON.
        raise ConfigError(
            f"-o {output.name}: predictions are written as .csv or .parquet, by the name's suffix"
        )
    check_output_file(output, force, source)


@dataclass
class Tally:
    """What writing predictions counted: rows, warnings, and rows per field with new values."""

    rows: int = 0
    warnings: list[str] = field(default_factory=list)
    unseen: dict[str, int] = field(default_factory=dict)
    # By source (None: the one file), rows outside the training range per feature: summed
    # over the chunks and warned once per source and feature by `write_predictions`.
    outside: dict[str | None, dict[str, int]] = field(default_factory=dict)
    # The same for empty cells filled in features that had no gaps in training.
    filled: dict[str | None, dict[str, int]] = field(default_factory=dict)


# (a name for messages or None, the table's first row number, the rows)
Chunk = tuple[str | None, int, pd.DataFrame]


class _Sink:
    """Writes predicted chunks in order into one Parquet or CSV file, counting as it goes."""

    def __init__(self, predictor: Predictor, partial: Path, parquet: bool, guard: bool) -> None:
        self.predictor, self.partial, self.parquet, self.guard = predictor, partial, parquet, guard
        self.tally = Tally()
        self.writer: pq.ParquetWriter | None = None
        # One table of predictions per decision cell for the whole run: a cell met in an
        # earlier chunk is not predicted again (see cells.py). Only the worker touches it.
        self.memo = predictor.engine.memo()
        # The first chunk's columns, which every later file must have (`_same_columns`).
        self.columns: list[str] | None = None
        # A labelled file's target column goes into Parquet typed as the predictions are.
        self.labels = TargetColumn(predictor.target, predictor.task, predictor.card.label_type)

    def score(self, source: str | None, first_row: int, chunk: pd.DataFrame) -> None:
        """Validate, predict and write one chunk (the next chunk's parsing goes on meanwhile)."""
        if chunk.empty:  # a header and no rows: said as such by the caller, not by an engine
            return
        predictor = self.predictor
        batch = predictor.schema.validate_frame(
            chunk, first_row=first_row, strict_categories=predictor.strict_categories
        )
        try:
            values, proba = predictor.predict_batch(batch, self.memo)
        except RecordError as exc:  # the engine numbers the chunk's rows; say the file's
            raise RecordError(
                [replace(p, row=first_row + (p.row or 0)) for p in exc.problems], exc.more
            ) from None
        if self.parquet:
            chunk = self.labels.typed(chunk, first_row, source)
        predicted = chunk.assign(
            **self._beside(chunk, prediction_columns(predictor, values, proba))
        )
        for summed, found in (self.tally.outside, batch.outside), (self.tally.filled, batch.filled):
            counts = summed.setdefault(source, {})
            for feature, count in (found or {}).items():
                counts[feature] = counts.get(feature, 0) + count
        for feature, count in batch.unseen.items():
            self.tally.unseen[feature] = self.tally.unseen.get(feature, 0) + count
        types = predicted.attrs.pop(ARROW_TYPES, {})  # not JSON: kept out of the metadata
        table = as_read(pa.Table.from_pandas(predicted, preserve_index=False), types)
        self._same_columns(source, table.column_names)
        if self.parquet:
            self.writer = self.writer or pq.ParquetWriter(self.partial, table.schema)
            if table.schema != self.writer.schema:
                # Another file (or chunk) may read a column as integers, the first as floats.
                table = _as_written(table, self.writer.schema, source)
            self.writer.write_table(table)
        else:
            table = nested_as_json(table)
            given = dict((name, "") for _, name in predicted.attrs.get(UNNAMED, ()))
            if given:  # unnamed in the input's header, unnamed in the output's (Parquet names them)
                table = table.rename_columns([given.get(n, n) for n in table.column_names])
            # Arrow's writer formats numbers in C++, several times faster than to_csv; each
            # chunk is written on its own, so a column's type may differ between chunks.
            with self.partial.open("ab" if self.tally.rows else "wb") as sink:
                pa_csv.write_csv(
                    guard_formulas(table) if self.guard else table,
                    sink,
                    pa_csv.WriteOptions(
                        include_header=self.tally.rows == 0, quoting_style="needed"
                    ),
                )
        self.tally.rows += len(chunk)

    def _same_columns(self, source: str | None, names: list[str]) -> None:
        """Refuse a file whose columns are not the first one's: one output has one header, and
        a CSV's rows would slide under the wrong names (a Parquet writer refuses them too)."""
        if self.columns is None:
            self.columns = names
            return
        if names == self.columns:
            return
        extra = [name for name in names if name not in self.columns]
        missing = [name for name in self.columns if name not in names]
        said = (
            "; ".join(
                f"{what} {', '.join(repr(n[:60]) for n in found[:5])}"
                + (f" and {len(found) - 5} more" if len(found) > 5 else "")
                for what, found in (("extra", extra), ("missing", missing))
                if found
            )
            or "the same columns in another order"
        )
        raise DatasetError(
            f"{source or 'the input'} does not have the columns of the files before it ({said}); "
            "files scored into one output need the same columns: score them apart"
        )

    def _beside(self, chunk: pd.DataFrame, columns: dict[str, Any]) -> dict[str, Any]:
        """The prediction columns under names the input does not use: a file scored before
        (its `predicted_TARGET` column) keeps its own values, and the new ones get `_2`."""
        taken = {str(name) for name in chunk.columns}
        named = {}
        for name, values in columns.items():
            free, number = name, 1
            while free in taken:
                number += 1
                free = f"{name}_{number}"
            taken.add(free)
            named[free] = values
            note = (
                f"the input has a column {name!r}, kept as it is; the predictions are in {free!r}"
            )
            if free != name and note not in self.tally.warnings:
                self.tally.warnings.append(note)
        return named

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_predictions(
    predictor: Predictor,
    chunks: Iterator[Chunk],
    partial: Path,
    parquet: bool,
    formula_guard: bool = True,
) -> Tally:
    """Predict every chunk into `partial` (Parquet or CSV), the input columns kept.

    This thread parses chunk k+1 while a worker validates, predicts and writes chunk k: the
    CSV parser, ONNX Runtime and Arrow's writer release the GIL, so on two cores the stages
    overlap instead of taking turns. At most two chunks are in memory.
    """
    sink = _Sink(predictor, partial, parquet, formula_guard)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="tabship-batch") as pool:
            previous: Future[None] | None = None
            try:
                for source, first_row, chunk in chunks:
                    if previous is not None:
                        previous.result()  # chunk k-1 written before chunk k is handed over
                    previous = pool.submit(sink.score, source, first_row, chunk)
            except Exception:
                if previous is not None:
                    previous.result()  # an earlier chunk's failure comes first, as in order
                raise
            if previous is not None:
                previous.result()
    finally:
        sink.close()
    tally = sink.tally
    left = sink.labels.note()
    if left:
        tally.warnings.append(left)
    for source, counts in tally.outside.items():
        prefix = f"{source}: " if source else ""
        notes = predictor.schema.counted_warnings(counts, tally.filled.get(source))
        tally.warnings.extend(prefix + note for note in notes)
    return tally


def _csv_format(source: Path, trained: NumberMarks, expected: Collection[str]) -> CsvFormat | None:
    """How a CSV to predict is written (None for Parquet); an unreadable file said so."""
    if source.suffix.lower() in PARQUET_SUFFIXES:
        return None
    try:
        return sniff(source, trained=trained, expected=expected)
    except OSError as exc:
        raise DatasetError(f"cannot predict {source}: {exc.strerror or exc}") from None


def _as_utf8_or_fallback(
    predicted: Callable[[CsvFormat | None], Tally], form: CsvFormat | None, source: Path
) -> Tally:
    """`predicted(form)`, again as training's reader reads a file that is not UTF-8 past its
    sampled start."""
    try:
        return predicted(form)
    except UnicodeDecodeError:
        if form is None or form.encoding != "utf-8":
            raise
        return predicted(form.as_fallback(source))


def predict_file(
    predictor: Predictor,
    source: Path,
    output: Path,
    force: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    formula_guard: bool = True,
) -> BatchSummary:
    """Predict every row of `source` into `output` (CSV or Parquet by suffix), input columns kept.

    The output appears only when every row was predicted, and an existing file is replaced only
    with `force`. CSV cells that a spreadsheet would run as formulas get a leading `'` unless
    `formula_guard` is off; Parquet is written as it is (no spreadsheet opens it).
    """
    _check_paths(source, output, force)
    parquet = output.suffix.lower() in PARQUET_SUFFIXES
    form = _csv_format(source, predictor.card.number_marks, predictor.schema.names)

    def numbered(form: CsvFormat | None) -> Iterator[Chunk]:
        first = 1
        for chunk in file_chunks(source, predictor, chunk_rows, parquet, form):
            yield None, first, chunk
            first += len(chunk)

    def predicted(form: CsvFormat | None) -> Tally:
        with staged(output) as partial:
            tally = write_predictions(predictor, numbered(form), partial, parquet, formula_guard)
            if tally.rows == 0:
                raise DatasetError(f"{source} has no rows to predict")
        if form and form.note:
            tally.warnings.insert(0, form.note)
        return tally

    try:
        tally = _as_utf8_or_fallback(predicted, form, source)
    except UnicodeDecodeError:
        raise DatasetError(
            f"cannot predict {source}: it is not UTF-8 text; save it as UTF-8 (CSV UTF-8)"
        ) from None
    except RecordError as exc:  # `row 2: age: ...` of which file
        raise RecordError(exc.problems, exc.more, source=str(source)) from None
    except (ValueError, OSError, pa.ArrowException) as exc:  # a ParserError is a ValueError
        raise DatasetError(f"cannot predict {source}: {parser_message(exc)}") from None
    return BatchSummary(
        rows=tally.rows, output=output, warnings=tally.warnings, unseen=tally.unseen
    )
