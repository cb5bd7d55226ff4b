"""scikit-learn's bundled tables, end to end with default settings: train, predict a file, serve.

No code knows these tables; each goes through the same CLI and server as insurance.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from ..servers import TABSHIP, start_server

pytestmark = pytest.mark.slow


def diabetes() -> tuple[pd.DataFrame, str]:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    return frame.rename(columns={"target": "progression"}), "progression"


def breast_cancer() -> tuple[pd.DataFrame, str]:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    return frame, "diagnosis"


def wine() -> tuple[pd.DataFrame, str]:
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame
    frame["cultivar"] = np.asarray(bunch.target_names)[frame.pop("target")]
    return frame, "cultivar"


@pytest.mark.parametrize(
    ("make", "task", "metric", "floor"),
    [
        (diabetes, "regression", "r2", 0.40),
        (breast_cancer, "classification", "accuracy", 0.95),
        (wine, "classification", "accuracy", 0.95),
    ],
    ids=["diabetes", "breast_cancer", "wine"],
)
def test_train_predict_and_serve_with_defaults(
    make, task: str, metric: str, floor: float, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    frame, target = make()
    table = tmp_path / "table.csv"
    frame.to_csv(table, index=False)
    model = tmp_path / "model"
    trained = subprocess.run(
        [TABSHIP, "train", str(table), "--target", target, "-o", str(model), "--holdout", "0.2"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((model / "tabship.json").read_text())
    assert meta["task"] == task
    assert meta["model"]["cv"]["mean"][metric] >= floor
    assert meta["model"]["holdout"]["scores"][metric] >= floor - 0.1
    assert (model / "report.html").stat().st_size > 50_000

    features = frame.drop(columns=target).head(25)
    features.to_csv(tmp_path / "new.csv", index=False)
    scored = subprocess.run(
        [
            TABSHIP,
            "predict",
            str(model),
            str(tmp_path / "new.csv"),
            "-o",
            str(tmp_path / "out.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert scored.returncode == 0, scored.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 25 and out.columns[: features.shape[1]].tolist() == features.columns.tolist()

    server = start_server(model, tmp_path)
    try:
        records = json.loads(features.to_json(orient="records"))
        answer = httpx.post(f"{server.url}/v1/predict", json={"instances": records}, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["predictions"]) == 25
        if task == "classification":
            classes = meta["classes"]
            assert set(body["predictions"]) <= set(classes)
            for row in body["probabilities"]:
                assert set(row) == set(classes) and sum(row.values()) == pytest.approx(1, abs=1e-5)
            expected = frame[target].head(25)
            assert np.mean(np.asarray(body["predictions"]) == expected.to_numpy()) >= 0.9
        page = httpx.get(f"{server.url}/report", timeout=10)
        assert page.status_code == 200 and "Training report" in page.text
    finally:
        assert server.stop() == 0
