from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabship.errors import RecordError
from tabship.predictor import Predictor
from tabship.workflow import TrainedModel

PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


def test_onnx_and_sklearn_engines_agree(tiny_model: TrainedModel) -> None:
    folder = tiny_model.artifact.directory
    onnx = Predictor.load(folder)
    sklearn = Predictor.load(folder, engine="sklearn")
    assert onnx.engine.name == "onnx" and sklearn.engine.name == "sklearn"
    records = [PATIENT, {**PATIENT, "smoker": "no", "age": 20}]
    a, b = onnx.predict(records).values, sklearn.predict(records).values
    assert np.allclose(a, b, rtol=1e-4)
    assert a[0] > a[1] + 10000  # smokers cost far more in the synthetic table


def test_unseen_values_predict_the_same_on_both_engines(tiny_model: TrainedModel) -> None:
    """An unseen category reaches both engines as the same unknown level: they agree."""
    folder = tiny_model.artifact.directory
    records = [
        {**PATIENT, "smoker": "sometimes"},
        {**PATIENT, "region": "atlantis", "smoker": "no"},
        {**PATIENT, "region": "=1+1", "smoker": "??"},
    ]
    onnx = Predictor.load(folder).predict(records)
    sklearn = Predictor.load(folder, engine="sklearn").predict(records)
    assert onnx.unseen == sklearn.unseen == {"smoker": 2, "region": 2}
    assert np.allclose(onnx.values, sklearn.values, rtol=1e-4)
    known = Predictor.load(folder).predict([PATIENT]).values[0]
    assert onnx.values[0] != known  # "unknown" is not silently read as a seen level


def test_predict_matches_the_fitted_pipeline(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    features = tiny_model.result.features
    records = features.head(25).to_dict(orient="records")
    expected = tiny_model.result.pipeline.predict(features.head(25))
    assert np.allclose(predictor.predict(records).values, expected, rtol=1e-4)


def test_bad_records_and_warnings(tiny_model: TrainedModel) -> None:
    strict = Predictor.load(tiny_model.artifact.directory, strict_categories=True)
    with pytest.raises(RecordError, match="smoker: 'male' is not one of the 2 values seen"):
        strict.predict([{**PATIENT, "smoker": "male"}])
    predictor = Predictor.load(tiny_model.artifact.directory)
    unseen = predictor.predict([{**PATIENT, "smoker": "male", "region": "mars"}])
    assert unseen.unseen == {"smoker": 1, "region": 1}
    assert [w.split(":")[0] for w in unseen.warnings] == ["smoker", "region"]
    answer = predictor.predict([{**PATIENT, "bmi": 80.0}])
    assert answer.warnings and answer.warnings[0].startswith(
        "bmi: 80 is outside the training range"
    )


def test_classification_returns_labels_and_probabilities(
    cancer_model: TrainedModel, cancer_csv: Path
) -> None:
    predictor = Predictor.load(cancer_model.artifact.directory)
    frame = pd.read_csv(cancer_csv).head(40)
    records = frame.drop(columns="diagnosis").to_dict(orient="records")
    answer = predictor.predict(records)
    assert set(answer.values) <= {"benign", "malignant"}
    assert answer.probabilities is not None
    for label, proba in zip(answer.values, answer.probabilities, strict=True):
        assert set(proba) == {"benign", "malignant"}
        assert sum(proba.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(proba, key=proba.__getitem__) == label
    assert np.mean(np.array(answer.values) == frame["diagnosis"].to_numpy()) > 0.9


def test_onnx_engine_imports_neither_pandas_nor_sklearn(tiny_model: TrainedModel) -> None:
    script = (
        "import json, sys\n"
        "from tabship.predictor import Predictor\n"
        f"p = Predictor.load({str(tiny_model.artifact.directory)!r})\n"
        f"p.predict([{json.dumps(PATIENT)}])\n"
        "print(json.dumps(sorted(m for m in ('pandas', 'sklearn', 'scipy', 'skops') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_big_batches_split_across_threads_give_identical_results(tiny_model: TrainedModel) -> None:
    from tabship.engines import PARALLEL_MIN_ROWS

    from .conftest import make_tiny_table

    frame = make_tiny_table(rows=PARALLEL_MIN_ROWS + 1234, seed=3).drop(columns="charges")
    single = Predictor.load(tiny_model.artifact.directory, threads=1)
    several = Predictor.load(tiny_model.artifact.directory, threads=3)
    batch = single.schema.validate_frame(frame)
    one, _ = single.predict_batch(batch)
    split, _ = several.predict_batch(batch)
    assert len(split) == len(frame) and np.array_equal(one, split)


def test_big_classification_batches_keep_probabilities_aligned(
    cancer_model: TrainedModel, cancer_csv: Path
) -> None:
    frame = pd.read_csv(cancer_csv).drop(columns="diagnosis")
    frame = pd.concat([frame] * 40, ignore_index=True)
    single = Predictor.load(cancer_model.artifact.directory, threads=1)
    several = Predictor.load(cancer_model.artifact.directory, threads=2)
    batch = single.schema.validate_frame(frame)
    labels_one, proba_one = single.predict_batch(batch)
    labels_two, proba_two = several.predict_batch(batch)
    assert np.array_equal(labels_one, labels_two) and np.array_equal(proba_one, proba_two)


def test_serving_imports_only_what_serving_needs(tiny_model: TrainedModel) -> None:
    """A pod answering the JSON API carries no table, training or template libraries (memory)."""
    script = (
        "import sys\n"
        "from tabship.predictor import Predictor\n"
        "from tabship.serve.app import create_app\n"
        f"create_app(Predictor.load({str(tiny_model.artifact.directory)!r}))\n"
        "heavy = ('pandas', 'pyarrow', 'sklearn', 'scipy', 'onnx', 'sqlalchemy', 'jinja2', 'typer')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
