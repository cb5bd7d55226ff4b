"""Candidate pipelines: plain, unfitted scikit-learn Pipelines built from a schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from scipy import stats
from sklearn import ensemble, linear_model, naive_bayes, neighbors, tree
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

from tabship.converters import installed
from tabship.errors import TabshipError
from tabship.schema import Feature, Schema

Task = Literal["regression", "classification"]


# Degree-2 expansion of w encoded columns gives w + w(w+1)/2 columns; past this width the
# linear models it feeds get slower than the trees they are meant to rival.
EXPAND_MAX_WIDTH = 40


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
            lambda seed: ensemble.RandomForestRegressor(random_state=seed),
            False,
            space=_forest_space(),
        ),
        Candidate(
            "extra_trees",
            "Extra trees",
            lambda seed: ensemble.ExtraTreesRegressor(random_state=seed),
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
            lambda seed: ensemble.RandomForestClassifier(random_state=seed),
            False,
            space=_forest_space(),
        ),
        Candidate(
            "extra_trees",
            "Extra trees",
            lambda seed: ensemble.ExtraTreesClassifier(random_state=seed),
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


# Past this many levels a categorical column is encoded compactly: its commonest levels get a
# column each and the rest share one "infrequent" column, so width and memory stay bounded.
POOLED_LEVELS = 32
# A level seen in fewer training rows than this is pooled with the infrequent ones.
POOLED_MIN_ROWS = 5
# Where tuning looks for the pooled width; CV decides whether more levels are worth it.
POOLED_LEVELS_SPACE = [8, 16, 32, 64]
POOLED_PARAM = "prepare__pooled__max_categories"


def is_pooled(feature: Feature) -> bool:
    """Whether a categorical feature has too many levels to one-hot in full."""
    return feature.kind == "categorical" and len(feature.levels) > POOLED_LEVELS


def encoded_width(schema: Schema) -> int:
    """How many columns the encoder hands the model: one per number, one per (kept) level."""
    return sum(
        min(len(f.levels), POOLED_LEVELS) if f.kind == "categorical" else len(f.inputs)
        for f in schema.features
    )


def build_pipeline(
    schema: Schema,
    candidate: Candidate,
    seed: int,
    *,
    expand: bool | None = None,
    balanced: bool = False,
) -> Pipeline:
    """An unfitted pipeline: impute and (for models that need it) scale numbers, one-hot categories.

    `expand` overrides the candidate's own choice (tuning tries both); `balanced` weights
    classes by inverse frequency where the estimator takes class weights.
    """
    # A date arrives as numeric calendar parts (see Feature.inputs).
    numeric = [f for f in schema.features if f.kind != "categorical"]
    categorical = [f for f in schema.features if f.kind == "categorical" and not is_pooled(f)]
    pooled = [f for f in schema.features if is_pooled(f)]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = []
        if any(f.allow_missing for f in numeric):
            steps.append(("impute", SimpleImputer(strategy="median")))
        # Trees compare float32 thresholds; scaling before them would break ONNX parity.
        if candidate.scale:
            steps.append(("scale", StandardScaler()))
        numeric_step: Any = Pipeline(steps) if steps else "passthrough"
        parts.append(("numeric", numeric_step, [name for f in numeric for name in f.inputs]))
    if categorical:
        encoder = OneHotEncoder(
            categories=[list(f.levels) for f in categorical],
            handle_unknown="ignore",
            sparse_output=False,
        )
        parts.append(("categorical", encoder, [f.name for f in categorical]))
    if pooled:
        # An unseen value encodes as all zeros, as in the full one-hot: skl2onnx's encoder
        # has no "infrequent_if_exist" path for unknowns, and parity is what ships.
        pooled_encoder = OneHotEncoder(
            categories=[list(f.levels) for f in pooled],
            handle_unknown="ignore",
            min_frequency=POOLED_MIN_ROWS,
            max_categories=POOLED_LEVELS,
            sparse_output=False,
        )
        parts.append(("pooled", pooled_encoder, [f.name for f in pooled]))
    steps = [("prepare", ColumnTransformer(parts, remainder="drop"))]
    if candidate.expand if expand is None else expand:
        # Trees gain nothing from squares (a split on x is a split on x squared); products
        # are what they cannot build in one split.
        steps.append(
            (
                "expand",
                PolynomialFeatures(2, interaction_only=not candidate.scale, include_bias=False),
            )
        )
        if candidate.scale:
            steps.append(("rescale", StandardScaler()))
    model = candidate.make(seed)
    if balanced and "class_weight" in model.get_params():
        model.set_params(class_weight="balanced")
    steps.append(("model", model))
    return Pipeline(steps)
