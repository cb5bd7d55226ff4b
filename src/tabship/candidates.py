"""Candidate pipelines: plain, unfitted scikit-learn Pipelines built from a schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from scipy import stats
from sklearn import ensemble, linear_model, naive_bayes, neighbors, tree

from tabship.converters import installed
from tabship.errors import TabshipError

Task = Literal["regression", "classification"]


@dataclass(frozen=True)
class Candidate:
    """A model family to cross-validate: its estimator factory and what it needs upstream.

    `scale`: standardise numbers first (distance and penalised linear models).
    `expand`: add degree-2 products of the encoded columns, so a linear model can learn
    interactions such as "bmi matters more for smokers" without a rule about any table.
    `space`: where `--tune` samples the estimator's parameters.
    """

    name: str
    label: str
    make: Callable[[int], Any]
    scale: bool
    expand: bool = False
    space: dict[str, Any] = field(default_factory=dict)


# Leaves a forest's tree may grow: unbounded, a tree grows a leaf for every few rows, and a
# forest of 20,000 rows shipped 273 MB (a 50,000-row one 1.1 GB and 10 GB to convert to
# ONNX). At 4,000 a 16,000-row forest scored the same holdout R2 (0.6035 against 0.6037) in
# a third of the size; tables under 4,000 rows never reach it.
FOREST_LEAVES = 4000


def _forest_space() -> dict[str, Any]:
    return {
        "n_estimators": stats.randint(50, 400),
        "max_depth": [None, 4, 6, 8, 12, 16],
        "min_samples_leaf": stats.randint(1, 20),
        "max_features": [1.0, 0.8, 0.6, "sqrt"],
    }


def _boosting_space() -> dict[str, Any]:
    return {
        "n_estimators": stats.randint(50, 400),
        "learning_rate": stats.loguniform(0.01, 0.3),
        "max_depth": stats.randint(2, 7),
        "min_samples_leaf": stats.randint(1, 30),
        "subsample": stats.uniform(0.6, 0.4),
    }


def _hist_space() -> dict[str, Any]:
    return {
        "learning_rate": stats.loguniform(0.01, 0.3),
        "max_iter": stats.randint(50, 400),
        "max_leaf_nodes": stats.randint(8, 64),
        "min_samples_leaf": stats.randint(5, 60),
        "l2_regularization": stats.loguniform(1e-4, 10.0),
    }


def _lightgbm_space() -> dict[str, Any]:
    return {
        "n_estimators": stats.randint(50, 600),
        "learning_rate": stats.loguniform(0.01, 0.3),
        "num_leaves": stats.randint(4, 64),
        "min_child_samples": stats.randint(5, 60),
        "colsample_bytree": stats.uniform(0.5, 0.5),
        "reg_lambda": stats.loguniform(1e-3, 10.0),
    }


def _xgboost_space() -> dict[str, Any]:
    return {
        "n_estimators": stats.randint(50, 600),
        "learning_rate": stats.loguniform(0.01, 0.3),
        "max_depth": stats.randint(2, 9),
        "min_child_weight": stats.loguniform(0.5, 20.0),
        "subsample": stats.uniform(0.6, 0.4),
        "colsample_bytree": stats.uniform(0.5, 0.5),
        "reg_lambda": stats.loguniform(1e-3, 10.0),
    }


# Cross-validation already runs one fold per core, so each booster gets one thread:
# more would oversubscribe the cores and slow every fold down.
BOOSTER_THREADS = 1


def _boosters(task: Task) -> list[Candidate]:
    """LightGBM and XGBoost, when installed; they import lazily so `--help` stays instant."""
    found: list[Candidate] = []
    if installed("lightgbm"):

        def lightgbm(seed: int) -> Any:
            import lightgbm

            model = lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier
            return model(random_state=seed, n_jobs=BOOSTER_THREADS, verbose=-1)

        found.append(Candidate("lightgbm", "LightGBM", lightgbm, False, space=_lightgbm_space()))

        # Smaller steps over more, smaller trees: slower to fit, and on larger tables often
        # the better of the two; CV picks.
        def lightgbm_fine(seed: int) -> Any:
            return lightgbm(seed).set_params(n_estimators=1000, learning_rate=0.03, num_leaves=15)

        found.append(
            Candidate(
                "lightgbm_fine",
                "LightGBM (1,000 small steps)",
                lightgbm_fine,
                False,
                space=_lightgbm_space(),
            )
        )
    if installed("xgboost"):

        def xgboost(seed: int) -> Any:
            import xgboost

            model = xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier
            return model(random_state=seed, n_jobs=BOOSTER_THREADS)

        found.append(Candidate("xgboost", "XGBoost", xgboost, False, space=_xgboost_space()))
    return found


def _tree_space() -> dict[str, Any]:
    return {"max_depth": [None, 3, 4, 6, 8, 12], "min_samples_leaf": stats.randint(1, 40)}


def _knn_space() -> dict[str, Any]:
    return {"n_neighbors": stats.randint(2, 40), "weights": ["uniform", "distance"]}


def _alpha_space() -> dict[str, Any]:
    return {"alpha": stats.loguniform(1e-4, 100.0)}


def _huber_space() -> dict[str, Any]:
    return {"alpha": stats.loguniform(1e-6, 1.0), "epsilon": stats.uniform(1.05, 1.0)}


def _regressors() -> list[Candidate]:
    return [
        Candidate(
            "linear", "Linear regression", lambda seed: linear_model.LinearRegression(), True
        ),
        Candidate(
            "ridge",
            "Ridge regression",
            lambda seed: linear_model.Ridge(),
            True,
            space=_alpha_space(),
        ),
        Candidate(
            "ridge_poly",
            "Ridge regression (degree-2 features)",
            lambda seed: linear_model.Ridge(),
            True,
            expand=True,
            space=_alpha_space(),
        ),
        Candidate(
            "lasso",
            "Lasso regression",
            lambda seed: linear_model.Lasso(max_iter=5000),
            True,
            space=_alpha_space(),
        ),
        Candidate(
            "elastic_net",
            "Elastic net",
            lambda seed: linear_model.ElasticNet(max_iter=5000),
            True,
            space={**_alpha_space(), "l1_ratio": stats.uniform(0.05, 0.9)},
        ),
        Candidate(
            "huber",
            "Huber regression",
            lambda seed: linear_model.HuberRegressor(max_iter=1000),
            True,
            space=_huber_space(),
        ),
        # A robust loss on expanded features: linear enough to extrapolate sensibly, robust
        # enough for heavy-tailed targets.
        Candidate(
            "huber_poly",
            "Huber regression (degree-2 features)",
            lambda seed: linear_model.HuberRegressor(max_iter=2000),
            True,
            expand=True,
            space=_huber_space(),
        ),
        Candidate(
            "knn",
            "k-nearest neighbours",
            lambda seed: neighbors.KNeighborsRegressor(),
            True,
            space=_knn_space(),
        ),
        Candidate(
            "decision_tree",
            "Decision tree",
            lambda seed: tree.DecisionTreeRegressor(random_state=seed),
            False,
            space=_tree_space(),
        ),
        Candidate(
            "random_forest",
            "Random forest",
            lambda seed: ensemble.RandomForestRegressor(
                max_leaf_nodes=FOREST_LEAVES, random_state=seed
            ),
            False,
            space=_forest_space(),
        ),
        Candidate(
            "extra_trees",
            "Extra trees",
            lambda seed: ensemble.ExtraTreesRegressor(
                max_leaf_nodes=FOREST_LEAVES, random_state=seed
            ),
            False,
            space=_forest_space(),
        ),
        Candidate(
            "gradient_boosting",
            "Gradient boosting",
            lambda seed: ensemble.GradientBoostingRegressor(random_state=seed),
            False,
            space=_boosting_space(),
        ),
        # Heavy-tailed targets pull a squared loss towards their outliers; a robust loss
        # is the generic remedy and lets CV decide whether the table needs it.
        Candidate(
            "gradient_boosting_huber",
            "Gradient boosting (Huber loss)",
            lambda seed: ensemble.GradientBoostingRegressor(loss="huber", random_state=seed),
            False,
            space={**_boosting_space(), "alpha": stats.uniform(0.7, 0.25)},
        ),
        Candidate(
            "hist_gradient_boosting",
            "Histogram gradient boosting",
            lambda seed: ensemble.HistGradientBoostingRegressor(random_state=seed),
            False,
            space=_hist_space(),
        ),
    ]


def _classifiers() -> list[Candidate]:
    return [
        Candidate(
            "logistic",
            "Logistic regression",
            lambda seed: linear_model.LogisticRegression(max_iter=2000),
            True,
            space={"C": stats.loguniform(1e-3, 100.0)},
        ),
        Candidate(
            "logistic_poly",
            "Logistic regression (degree-2 features)",
            lambda seed: linear_model.LogisticRegression(max_iter=2000),
            True,
            expand=True,
            space={"C": stats.loguniform(1e-3, 100.0)},
        ),
        Candidate(
            "naive_bayes",
            "Gaussian naive Bayes",
            lambda seed: naive_bayes.GaussianNB(),
            True,
            space={"var_smoothing": stats.loguniform(1e-12, 1e-3)},
        ),
        Candidate(
            "knn",
            "k-nearest neighbours",
            lambda seed: neighbors.KNeighborsClassifier(),
            True,
            space=_knn_space(),
        ),
        Candidate(
            "decision_tree",
            "Decision tree",
            lambda seed: tree.DecisionTreeClassifier(random_state=seed),
            False,
            space=_tree_space(),
        ),
        Candidate(
            "random_forest",
            "Random forest",
            lambda seed: ensemble.RandomForestClassifier(
                max_leaf_nodes=FOREST_LEAVES, random_state=seed
            ),
            False,
            space=_forest_space(),
        ),
        Candidate(
            "extra_trees",
            "Extra trees",
            lambda seed: ensemble.ExtraTreesClassifier(
                max_leaf_nodes=FOREST_LEAVES, random_state=seed
            ),
            False,
            space=_forest_space(),
        ),
        Candidate(
            "gradient_boosting",
            "Gradient boosting",
            lambda seed: ensemble.GradientBoostingClassifier(random_state=seed),
            False,
            space=_boosting_space(),
        ),
        Candidate(
            "hist_gradient_boosting",
            "Histogram gradient boosting",
            lambda seed: ensemble.HistGradientBoostingClassifier(random_state=seed),
            False,
            space=_hist_space(),
        ),
    ]


def candidates(task: Task) -> list[Candidate]:
    """Every candidate for a task, in leaderboard tie-break order."""
    return (_regressors() if task == "regression" else _classifiers()) + _boosters(task)


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
