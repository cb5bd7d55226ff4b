"""Parquet files as other tools write them (no pandas metadata): typed for the model, copied as
written, named as a CSV header would be."""

from __future__ import annotations

import datetime
import decimal
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tabship.batch import predict_file
from tabship.datasets import read_table
from tabship.errors import DatasetError
from tabship.predictor import Predictor
from tabship.train import TrainOptions
from tabship.workflow import train_model


def arrow_table(rows: int = 240) -> pa.Table:
    """What pyarrow, Spark or DuckDB write: dates, decimals, a boolean with gaps, nested cells
    and an unnamed column, the target driven by the date's month and the decimal."""
    rng = np.random.default_rng(7)
    days = [
        datetime.date(2021, 1, 1) + datetime.timedelta(days=int(d))
        for d in rng.integers(0, 365, rows)
    ]
    amount = np.round(rng.normal(size=rows), 2)
    flag = [None if i % 9 == 0 else bool(v > 0) for i, v in enumerate(amount)]
    target = [d.month * 3.0 + a * 2 + rng.normal() * 0.1 for d, a in zip(days, amount, strict=True)]
    return pa.table(
        [
            pa.array(days, pa.date32()),
            pa.array([decimal.Decimal(f"{a:.2f}") for a in amount], pa.decimal128(9, 2)),
            pa.array(flag),
            pa.array([[1, 2]] * rows),
            pa.array([{"k": "v"}] * rows),
            pa.array(rng.normal(size=rows)),
            pa.array(target),
        ],
        names=["day", "amount", "flag", "tags", "meta", "", "y"],
    )


def test_a_parquet_without_pandas_metadata_trains_and_predicts_as_typed(tmp_path: Path) -> None:
    source = tmp_path / "sales.parquet"
    pq.write_table(arrow_table(), source)
    assert b"pandas" not in (pq.read_metadata(source).metadata or {})  # as Spark writes it
    trained = train_model(
        str(source), TrainOptions(target="y", folds=3, models=["ridge"]), tmp_path / "m"
    )
    kinds = {f.name: (f.kind, f.dtype) for f in trained.result.schema.features}
    # The date was taken for an ID, the decimal too; the boolean's levels were Python's text.
    assert kinds == {
        "day": ("date", "date"),
        "amount": ("numeric", "float64"),
        "flag": ("categorical", "bool"),
        "Unnamed: 5": ("numeric", "float64"),
    }
    warnings = " | ".join(trained.result.warnings)
    assert "column 'tags' holds nested values" in warnings
    assert "column 'meta' holds nested values" in warnings
    assert "column 6 has no name" in warnings
    assert trained.result.chosen.mean["r2"] > 0.9

    predictor = Predictor.load(trained.artifact.directory)
    summary = predict_file(predictor, source, tmp_path / "out.csv")
    assert not summary.unseen  # True and False are the training levels, not unseen text
    written = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    # The input's cells copied as written: a date, not a timestamp; 0.83, not 0.8300000000001.
    first = arrow_table().slice(0, 1).to_pylist()[0]
    assert written.loc[0, "day"] == first["day"].isoformat()
    assert written.loc[0, "amount"] == str(first["amount"])
    assert written.loc[0, "tags"] == "[1, 2]" and written.loc[0, "meta"] == '{"k": "v"}'
    header = (tmp_path / "out.csv").read_text().splitlines()[0]
    assert header.split(",")[5] == '""'  # unnamed in, unnamed out
    records = [
        {
            "day": first["day"].isoformat(),
            "amount": float(first["amount"]),
            "flag": first["flag"],
            "Unnamed: 5": first[""],
        }
    ]
    alone = predictor.predict(records).values[0]
    assert float(written.loc[0, "predicted_y"]) == pytest.approx(alone)


def test_parquet_names_are_checked_as_a_csv_header_is(tmp_path: Path) -> None:
    twice = tmp_path / "twice.parquet"
    pq.write_table(pa.table([pa.array([1, 2]), pa.array([3, 4])], names=["a", "a"]), twice)
    with pytest.raises(DatasetError, match="columns 1 and 2 are both called 'a'"):
        read_table(twice)
    # A Parquet file is known by its bytes, whatever its name (it was read as CSV text).
    unnamed = tmp_path / "export"
    pq.write_table(pa.table({"x": [1.5, 2.5], "y": [1, 2]}), tmp_path / "x.parquet")
    shutil.copy(tmp_path / "x.parquet", unnamed)
    assert read_table(unnamed).to_dict("list") == {"x": [1.5, 2.5], "y": [1, 2]}
