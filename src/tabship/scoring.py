"""Batch scoring of a whole file in chunks, so memory stays flat in the file's size."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tabship.errors import DatasetError, OutputExistsError
from tabship.predictor import Predictor

DEFAULT_CHUNK_ROWS = 100_000
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run did."""

    rows: int
    output: Path
    warnings: list[str]


def _chunks(path: Path, predictor: Predictor, chunk_rows: int) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
        return
    # Read categories as text, so a chunk of codes such as "01" is not parsed as numbers.
    text_columns = {f.name: str for f in predictor.schema.features if f.kind == "categorical"}
    yield from pd.read_csv(path, chunksize=chunk_rows, dtype=text_columns)


def prediction_columns(
    predictor: Predictor, values: np.ndarray, proba: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Output columns: the prediction, and one probability column per class."""
    name = f"predicted_{predictor.target}"
    if predictor.task == "regression":
        return {name: values}
    assert proba is not None
    out: dict[str, np.ndarray] = {
        name: np.asarray(predictor.classes, dtype=object)[values.astype(np.int64)]
    }
    for index, label in enumerate(predictor.classes):
        out[f"probability_{label}"] = proba[:, index]
    return out


def score_file(
    predictor: Predictor,
    source: Path,
    output: Path,
    force: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ScoreSummary:
    """Score `source` into `output` (CSV or Parquet by suffix); the input columns are kept.

    The output appears only when every row scored, and an existing file is replaced only
    with `force`.
    """
    if not source.is_file():
        raise DatasetError(f"no file {source}; give the CSV or Parquet table to score")
    if output.exists() and not force:
        raise OutputExistsError(
            f"{output} already exists; choose another -o or pass --force to replace it"
        )
    if output.resolve() == source.resolve():
        raise OutputExistsError(f"{output} is the input file; write the scores to another file")
    output.parent.mkdir(parents=True, exist_ok=True)
    parquet = output.suffix.lower() in PARQUET_SUFFIXES
    descriptor, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    os.close(descriptor)
    partial = Path(name)
    rows = 0
    warnings: list[str] = []
    writer = None
    try:
        for chunk in _chunks(source, predictor, chunk_rows):
            batch = predictor.schema.validate_frame(chunk, first_row=rows + 1)
            values, proba = predictor.predict_batch(batch)
            scored = chunk.assign(**prediction_columns(predictor, values, proba))
            warnings.extend(batch.warnings)
            table = pa.Table.from_pandas(scored, preserve_index=False)
            if parquet:
                writer = writer or pq.ParquetWriter(partial, table.schema)
                writer.write_table(table)
            else:
                # Arrow's writer formats numbers in C++, several times faster than to_csv; each
                # chunk is written on its own, so a column's type may differ between chunks.
                with partial.open("ab" if rows else "wb") as sink:
                    pa_csv.write_csv(
                        table,
                        sink,
                        pa_csv.WriteOptions(include_header=rows == 0, quoting_style="needed"),
                    )
            rows += len(chunk)
        if writer is not None:
            writer.close()
            writer = None
        if rows == 0:
            raise DatasetError(f"{source} has no rows to score")
        partial.replace(output)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"cannot score {source}: {exc}") from None
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    return ScoreSummary(rows=rows, output=output, warnings=warnings)
