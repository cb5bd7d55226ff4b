from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabship.errors import OutputExistsError, RecordError
from tabship.predictor import Predictor
from tabship.scoring import score_file
from tabship.workflow import TrainedModel

from .conftest import make_tiny_table


@pytest.fixture
def predictor(tiny_model: TrainedModel) -> Predictor:
    return Predictor.load(tiny_model.artifact.directory)


@pytest.fixture
def new_rows(tmp_path: Path) -> Path:
    path = tmp_path / "new.csv"
    make_tiny_table(rows=250, seed=99).drop(columns="charges").to_csv(path, index=False)
    return path


def test_scores_csv_in_chunks_like_one_batch(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    chunked = score_file(predictor, new_rows, tmp_path / "a.csv", chunk_rows=40)
    whole = score_file(predictor, new_rows, tmp_path / "b.csv", chunk_rows=10_000)
    assert chunked.rows == whole.rows == 250
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["age", "bmi", "children", "smoker", "region", "predicted_charges"]
    records = pd.read_csv(new_rows).head(5).to_dict(orient="records")
    assert np.allclose(a["predicted_charges"].head(5), predictor.predict(records).values, rtol=1e-5)


def test_scores_parquet_to_parquet(predictor: Predictor, new_rows: Path, tmp_path: Path) -> None:
    source = tmp_path / "new.parquet"
    pd.read_csv(new_rows).to_parquet(source)
    score_file(predictor, source, tmp_path / "out.parquet", chunk_rows=64)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 250 and out["predicted_charges"].notna().all()


def test_refuses_to_overwrite_unless_forced(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("keep me\n")
    with pytest.raises(OutputExistsError, match="pass --force"):
        score_file(predictor, new_rows, target)
    assert target.read_text() == "keep me\n"
    with pytest.raises(OutputExistsError, match="is the input file"):
        score_file(predictor, new_rows, new_rows, force=True)
    score_file(predictor, new_rows, target, force=True)
    assert len(pd.read_csv(target)) == 250


def test_bad_row_names_its_file_row_and_leaves_no_output(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(new_rows)
    frame.loc[130, "smoker"] = "often"
    frame.to_csv(new_rows, index=False)
    with pytest.raises(RecordError) as caught:
        score_file(predictor, new_rows, tmp_path / "out.csv", chunk_rows=50)
    assert [str(p) for p in caught.value.problems] == [
        "row 131: smoker: 'often' is not one of: no, yes"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


def test_classification_adds_probability_columns(
    cancer_model: TrainedModel, cancer_csv: Path, tmp_path: Path
) -> None:
    predictor = Predictor.load(cancer_model.artifact.directory)
    score_file(predictor, cancer_csv, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert {"predicted_diagnosis", "probability_benign", "probability_malignant"} <= set(
        out.columns
    )
    assert (out["predicted_diagnosis"] == out["diagnosis"]).mean() > 0.9
