"""Shared fixtures: a tiny synthetic table, the insurance table, and models trained once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model

REPO = Path(__file__).resolve().parents[1]
FAST_MODELS = ["ridge", "decision_tree", "gradient_boosting"]


def pytest_configure(config: pytest.Config) -> None:
    """Tests read the shared datasets folder (as CI does) and never touch the user's cache."""
    os.environ.setdefault("TABSHIP_DATA_HOME", str(REPO.parent / "shared" / "datasets"))
    cache = Path(config.rootpath) / ".pytest_cache" / "tabship-cache"
    os.environ["TABSHIP_CACHE_DIR"] = str(cache)


def make_tiny_table(rows: int = 120, seed: int = 7) -> pd.DataFrame:
    """An insurance-shaped table: numbers, small integers, categories, a numeric target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 65, rows)
    bmi = np.round(rng.normal(30, 5, rows), 2)
    children = rng.integers(0, 4, rows)
    smoker = rng.choice(["no", "yes"], rows, p=[0.75, 0.25])
    region = rng.choice(["north", "south", "east"], rows)
    charges = (
        250 * age
        + 300 * np.maximum(bmi - 25, 0)
        + 20000 * (smoker == "yes")
        + rng.normal(0, 800, rows)
    )
    return pd.DataFrame(
        {
            "age": age,
            "bmi": bmi,
            "children": children,
            "smoker": smoker,
            "region": region,
            "charges": charges,
        }
    )


@pytest.fixture
def tiny_table() -> pd.DataFrame:
    return make_tiny_table()


@pytest.fixture
def tiny_csv(tmp_path: Path, tiny_table: pd.DataFrame) -> Path:
    path = tmp_path / "tiny.csv"
    tiny_table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def data_home() -> Path:
    path = Path(os.environ["TABSHIP_DATA_HOME"])
    assert (path / "insurance.csv").is_file(), (
        f"set TABSHIP_DATA_HOME to the folder holding insurance.csv ({path})"
    )
    return path


@pytest.fixture(scope="session")
def insurance_csv(data_home: Path) -> Path:
    return data_home / "insurance.csv"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A quick regression model (three candidates, three folds) on the tiny table."""
    folder = tmp_path_factory.mktemp("tiny")
    make_tiny_table().to_csv(folder / "tiny.csv", index=False)
    options = TrainOptions(target="charges", folds=3, models=FAST_MODELS)
    return train_model(
        str(folder / "tiny.csv"), options, folder / "model", target_label="Charges", unit="USD"
    )


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A quick classifier on the tiny table: smoker (no/yes) from the other columns."""
    folder = tmp_path_factory.mktemp("smokers")
    make_tiny_table().to_csv(folder / "tiny.csv", index=False)
    options = TrainOptions(target="smoker", folds=3, models=["logistic", "decision_tree"])
    return train_model(str(folder / "tiny.csv"), options, folder / "smokers")


@pytest.fixture(scope="session")
def cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's bundled breast-cancer data as a CSV with a text label."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    path = tmp_path_factory.mktemp("cancer") / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def cancer_model(cancer_csv: Path) -> TrainedModel:
    options = TrainOptions(
        target="diagnosis", folds=3, models=["logistic", "random_forest", "gradient_boosting"]
    )
    return train_model(str(cancer_csv), options, cancer_csv.parent / "model")


@pytest.fixture(scope="session")
def insurance_model(tmp_path_factory: pytest.TempPathFactory, data_home: Path) -> TrainedModel:
    """The showcase: every default candidate, 5-fold CV, on the real insurance table."""
    from tabship.config import Settings

    folder = tmp_path_factory.mktemp("insurance")
    settings = Settings(data_home=data_home, cache_dir=folder / "cache")
    return train_model(
        "insurance",
        TrainOptions(target="charges"),
        folder / "model",
        target_label="Expected yearly charges",
        unit="USD",
        settings=settings,
    )
