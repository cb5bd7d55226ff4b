"""Candidate pipelines: plain, unfitted scikit-learn Pipelines built from a schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sklearn import ensemble, linear_model, naive_bayes, neighbors, tree
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabship.errors import TabshipError
from tabship.schema import Schema

Task = Literal["regression", "classification"]


@dataclass(frozen=True)
class Candidate:
    """A model family to cross-validate: its estimator factory and whether it needs scaling."""

    name: str
    label: str
    make: Callable[[int], Any]
    scale: bool


def _regressors() -> list[Candidate]:
    return [
        Candidate(
            "linear", "Linear regression", lambda seed: linear_model.LinearRegression(), True
        ),
        Candidate("ridge", "Ridge regression", lambda seed: linear_model.Ridge(), True),
        Candidate(
            "lasso", "Lasso regression", lambda seed: linear_model.Lasso(max_iter=5000), True
        ),
        Candidate(
            "elastic_net", "Elastic net", lambda seed: linear_model.ElasticNet(max_iter=5000), True
        ),
        Candidate(
            "huber",
            "Huber regression",
            lambda seed: linear_model.HuberRegressor(max_iter=1000),
            True,
        ),
        Candidate(
            "knn", "k-nearest neighbours", lambda seed: neighbors.KNeighborsRegressor(), True
        ),
        Candidate(
            "decision_tree",
            "Decision tree",
            lambda seed: tree.DecisionTreeRegressor(random_state=seed),
            False,
        ),
        Candidate(
            "random_forest",
            "Random forest",
            lambda seed: ensemble.RandomForestRegressor(random_state=seed),
            False,
        ),
        Candidate(
            "extra_trees",
            "Extra trees",
            lambda seed: ensemble.ExtraTreesRegressor(random_state=seed),
            False,
        ),
        Candidate(
            "gradient_boosting",
            "Gradient boosting",
            lambda seed: ensemble.GradientBoostingRegressor(random_state=seed),
            False,
        ),
        # Heavy-tailed targets pull a squared loss towards their outliers; a robust loss
        # is the generic remedy and lets CV decide whether the table needs it.
        Candidate(
            "gradient_boosting_huber",
            "Gradient boosting (Huber loss)",
            lambda seed: ensemble.GradientBoostingRegressor(loss="huber", random_state=seed),
            False,
        ),
        Candidate(
            "hist_gradient_boosting",
            "Histogram gradient boosting",
            lambda seed: ensemble.HistGradientBoostingRegressor(random_state=seed),
            False,
        ),
    ]


def _classifiers() -> list[Candidate]:
    return [
        Candidate(
            "logistic",
            "Logistic regression",
            lambda seed: linear_model.LogisticRegression(max_iter=2000),
            True,
        ),
        Candidate(
            "naive_bayes", "Gaussian naive Bayes", lambda seed: naive_bayes.GaussianNB(), True
        ),
        Candidate(
            "knn", "k-nearest neighbours", lambda seed: neighbors.KNeighborsClassifier(), True
        ),
        Candidate(
            "decision_tree",
            "Decision tree",
            lambda seed: tree.DecisionTreeClassifier(random_state=seed),
            False,
        ),
        Candidate(
            "random_forest",
            "Random forest",
            lambda seed: ensemble.RandomForestClassifier(random_state=seed),
            False,
        ),
        Candidate(
            "extra_trees",
            "Extra trees",
            lambda seed: ensemble.ExtraTreesClassifier(random_state=seed),
            False,
        ),
        Candidate(
            "gradient_boosting",
            "Gradient boosting",
            lambda seed: ensemble.GradientBoostingClassifier(random_state=seed),
            False,
        ),
        Candidate(
            "hist_gradient_boosting",
            "Histogram gradient boosting",
            lambda seed: ensemble.HistGradientBoostingClassifier(random_state=seed),
            False,
        ),
    ]


def candidates(task: Task) -> list[Candidate]:
    """Every candidate for a task, in leaderboard tie-break order."""
    return _regressors() if task == "regression" else _classifiers()


def select(task: Task, include: list[str] | None, exclude: list[str] | None) -> list[Candidate]:
    """The candidates named by --models / --exclude, refusing unknown names."""
    pool = candidates(task)
    known = {c.name for c in pool}
    unknown = sorted((set(include or []) | set(exclude or [])) - known)
    if unknown:
        raise TabshipError(
            f"unknown model {', '.join(unknown)} for {task}; choose from: {', '.join(sorted(known))}"
        )
    chosen = [
        c for c in pool if (not include or c.name in include) and c.name not in (exclude or [])
    ]
    if not chosen:
        raise TabshipError("--models and --exclude leave no candidate to train")
    return chosen


def build_pipeline(schema: Schema, candidate: Candidate, seed: int) -> Pipeline:
    """An unfitted pipeline: impute and (for models that need it) scale numbers, one-hot categories."""
    numeric = [f for f in schema.features if f.kind == "numeric"]
    categorical = [f for f in schema.features if f.kind == "categorical"]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = []
        if any(f.allow_missing for f in numeric):
            steps.append(("impute", SimpleImputer(strategy="median")))
        # Trees compare float32 thresholds; scaling before them would break ONNX parity.
        if candidate.scale:
            steps.append(("scale", StandardScaler()))
        numeric_step: Any = Pipeline(steps) if steps else "passthrough"
        parts.append(("numeric", numeric_step, [f.name for f in numeric]))
    if categorical:
        encoder = OneHotEncoder(
            categories=[list(f.levels) for f in categorical],
            handle_unknown="ignore",
            sparse_output=False,
        )
        parts.append(("categorical", encoder, [f.name for f in categorical]))
    prepare = ColumnTransformer(parts, remainder="drop")
    return Pipeline([("prepare", prepare), ("model", candidate.make(seed))])
