from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from tabship.candidates import build_pipeline, candidates
from tabship.engines import onnx_feeds
from tabship.export import PROBABILITY_TOLERANCE, REGRESSION_RELATIVE_TOLERANCE, export
from tabship.predictor import Predictor
from tabship.train import TrainOptions, prepare
from tabship.workflow import train_model


def independent_onnx_output(model: bytes, prepared: tuple) -> list[np.ndarray]:  # type: ignore[type-arg]
    _, schema, features, *_ = prepared
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    columns = {name: features[name].to_numpy().reshape(-1, 1) for name in schema.names}
    return session.run(None, onnx_feeds(schema, [i.name for i in session.get_inputs()], columns))  # type: ignore[no-any-return]


def fitted(prepared: tuple, name: str):  # type: ignore[no-untyped-def, type-arg]
    task, schema, features, labels, *_ = prepared
    candidate = next(c for c in candidates(task) if c.name == name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return build_pipeline(schema, candidate, 123).fit(features, labels)


@pytest.fixture(scope="module")
def insurance_prepared(insurance_csv: Path) -> tuple:  # type: ignore[type-arg]
    return prepare(pd.read_csv(insurance_csv), TrainOptions(target="charges"))


@pytest.fixture(scope="module")
def cancer_prepared(cancer_csv: Path) -> tuple:  # type: ignore[type-arg]
    return prepare(pd.read_csv(cancer_csv), TrainOptions(target="diagnosis"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in candidates("regression")])
def test_regression_export_keeps_only_matching_graphs(insurance_prepared: tuple, name: str) -> None:  # type: ignore[type-arg]
    pipeline = fitted(insurance_prepared, name)
    features = insurance_prepared[2]
    model, parity = export(pipeline, insurance_prepared[1], "regression", features)
    if model is None:
        assert not parity.passed and parity.reason
        return
    expected = pipeline.predict(features)
    actual = independent_onnx_output(model, insurance_prepared)[0].ravel()
    diff = np.max(np.abs(actual - expected))
    assert diff <= REGRESSION_RELATIVE_TOLERANCE * np.mean(np.abs(expected))
    assert parity.passed and parity.max_abs_diff == pytest.approx(diff) and parity.rows == 1338


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in candidates("classification")])
def test_classification_export_keeps_only_matching_graphs(
    cancer_prepared: tuple, name: str
) -> None:  # type: ignore[type-arg]
    pipeline = fitted(cancer_prepared, name)
    features = cancer_prepared[2]
    model, parity = export(pipeline, cancer_prepared[1], "classification", features)
    if model is None:
        assert not parity.passed and parity.reason
        return
    labels, proba = independent_onnx_output(model, cancer_prepared)
    assert np.array_equal(labels.ravel(), pipeline.predict(features))
    assert np.max(np.abs(proba - pipeline.predict_proba(features))) <= PROBABILITY_TOLERANCE
    assert parity.passed and parity.labels_equal


@pytest.mark.slow
def test_the_converters_we_rely_on_still_convert(insurance_prepared: tuple) -> None:  # type: ignore[type-arg]
    for name in (
        "linear",
        "ridge",
        "random_forest",
        "gradient_boosting",
        "gradient_boosting_huber",
    ):
        model, parity = export(
            fitted(insurance_prepared, name),
            insurance_prepared[1],
            "regression",
            insurance_prepared[2],
        )
        assert model is not None, f"{name}: {parity.reason}"


@pytest.mark.slow
def test_model_missing_parity_is_served_by_sklearn(insurance_csv: Path, tmp_path: Path) -> None:
    # On insurance, k-NN distances in float32 pick other neighbours: its graph misses parity.
    trained = train_model(
        str(insurance_csv), TrainOptions(target="charges", models=["knn"]), tmp_path / "m"
    )
    meta = trained.artifact.metadata
    assert meta["engine"] == "sklearn" and "model.onnx" not in meta["files"]
    assert meta["onnx"]["passed"] is False
    assert meta["onnx"]["max_abs_diff"] > meta["onnx"]["tolerance"]
    predictor = Predictor.load(tmp_path / "m")
    assert predictor.engine.name == "sklearn"
    with pytest.raises(Exception, match="has no model.onnx"):
        Predictor.load(tmp_path / "m", engine="onnx")


def test_failed_conversion_is_recorded(tiny_csv: Path, tmp_path: Path) -> None:
    options = TrainOptions(target="charges", folds=3, models=["hist_gradient_boosting"])
    meta = train_model(str(tiny_csv), options, tmp_path / "m").artifact.metadata
    if meta["engine"] == "onnx":
        pytest.skip("this skl2onnx converts HistGradientBoosting now; nothing to fall back from")
    assert meta["onnx"]["reason"].startswith("conversion failed")
    assert (
        Predictor.load(tmp_path / "m")
        .predict([{"age": 30, "bmi": 25.0, "children": 0, "smoker": "no", "region": "east"}])
        .values
    )
