"""The leaderboard's metrics for each task, computed from one predict per fold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm

REGRESSION = ("mae", "rmse", "r2", "rmsle", "mape")
CLASSIFICATION = ("accuracy", "auc", "f1", "precision", "recall", "log_loss")
_LOWER_IS_BETTER = frozenset({"mae", "rmse", "rmsle", "mape", "log_loss"})

Scorer = Callable[[Any, Any, np.ndarray], dict[str, float]]


def names(task: str) -> tuple[str, ...]:
    """Metric names in display order."""
    return REGRESSION if task == "regression" else CLASSIFICATION


def default_metric(task: str) -> str:
    """The metric the leaderboard sorts by unless told otherwise."""
    return "r2" if task == "regression" else "accuracy"


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is better."""
    return metric not in _LOWER_IS_BETTER


def _rmsle(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if np.any(y_true < 0):
        return float("nan")  # undefined for negative targets
    return float(np.sqrt(np.mean((np.log1p(np.clip(y_pred, 0, None)) - np.log1p(y_true)) ** 2)))


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    residual = float(np.sum((y_true - y_pred) ** 2))
    if total == 0.0:  # a constant target: perfect or nothing, as scikit-learn scores it
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def _mape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if np.any(y_true == 0):
        # Undefined: scikit-learn's floor divides by 2e-16 and printed MAPE 1.6e13.
        return float("nan")
    return float(np.mean(np.abs(y_true - y_pred) / np.maximum(np.abs(y_true), EPSILON)))


def undefined(metric: str, y_true: np.ndarray) -> str | None:
    """Why `metric` cannot rank models on this target, or None."""
    if metric == "mape" and np.any(y_true == 0):
        return "MAPE divides by the target, which is 0 in some rows"
    if metric == "rmsle" and np.any(y_true < 0):
        return "RMSLE takes logarithms of the target, which is negative in some rows"
    return None


# Plain numpy: permutation importance scores hundreds of shuffled copies with these.
EPSILON = float(np.finfo(np.float64).eps)  # scikit-learn's floor for MAPE's denominator
_REGRESSION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": lambda y, p: float(np.mean(np.abs(y - p))),
    "rmse": lambda y, p: float(np.sqrt(np.mean((y - p) ** 2))),
    "r2": _r2,
    "rmsle": _rmsle,
    "mape": lambda y, p: _mape(y, p),
}


def _auc(y_true: np.ndarray, proba: np.ndarray, labels: list[int]) -> float:
    if len(labels) == 2:
        return float(skm.roc_auc_score(y_true, proba[:, 1]))
    return float(
        skm.roc_auc_score(y_true, proba, multi_class="ovr", average="weighted", labels=labels)
    )


def _averaged(metric: Any) -> Callable[[np.ndarray, np.ndarray, list[int]], float]:
    """F1, precision or recall: of the positive class when binary, else class-weighted."""

    def score(y_true: np.ndarray, proba: np.ndarray, labels: list[int]) -> float:
        average = "binary" if len(labels) == 2 else "weighted"
        predicted = np.argmax(proba, axis=1)
        return float(metric(y_true, predicted, average=average, zero_division=0))

    return score


_CLASSIFICATION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, list[int]], float]] = {
    "accuracy": lambda y, proba, labels: float(np.mean(np.argmax(proba, axis=1) == y)),
    "auc": _auc,
    "f1": _averaged(skm.f1_score),
    "precision": _averaged(skm.precision_score),
    "recall": _averaged(skm.recall_score),
    "log_loss": lambda y, proba, labels: float(skm.log_loss(y, _normalised(proba), labels=labels)),
}


def _normalised(proba: np.ndarray) -> np.ndarray:
    """Each row summing to one: a model's float32 shares (or a tree's) miss by 1e-7, and
    scikit-learn's log loss warned on stderr for every fold."""
    shares: np.ndarray = np.asarray(proba, dtype=np.float64)
    totals: np.ndarray = np.maximum(shares.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    normalised: np.ndarray = shares / totals
    return normalised


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R2, RMSLE (NaN when the target has negatives) and MAPE."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return {name: metric(y_true, y_pred) for name, metric in _REGRESSION_METRICS.items()}


def classification_scores(
    y_true: np.ndarray, proba: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy, AUC, F1, precision, recall (binary, else weighted) and log-loss."""
    labels = list(range(n_classes))
    y_true = np.asarray(y_true)
    return {name: metric(y_true, proba, labels) for name, metric in _CLASSIFICATION_METRICS.items()}


def class_probabilities(estimator: Any, features: Any, n_classes: int) -> np.ndarray:
    """predict_proba with one column per class of the task, even for classes a fit never saw.

    A CV fold may miss a rare class; each column goes under its class index.
    """
    proba = np.zeros((len(features), n_classes))
    proba[:, estimator.classes_] = estimator.predict_proba(features)
    return proba


def single_scorer(
    task: str, metric: str, n_classes: int
) -> Callable[[Any, Any, np.ndarray], float]:
    """A scoring callable for one metric, signed so that larger is better."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    if task == "regression":
        one = _REGRESSION_METRICS[metric]

        def score_regression(estimator: Any, features: Any, y_true: np.ndarray) -> float:
            predicted = np.asarray(estimator.predict(features), dtype=np.float64)
            return sign * one(np.asarray(y_true, dtype=np.float64), predicted)

        return score_regression
    chosen = _CLASSIFICATION_METRICS[metric]
    labels = list(range(n_classes))

    def score_classification(estimator: Any, features: Any, y_true: np.ndarray) -> float:
        proba = class_probabilities(estimator, features, n_classes)
        return sign * chosen(np.asarray(y_true), proba, labels)

    return score_classification


def format_score(mean: float | None, std: float | None = None) -> str:
    """A metric for people: no decimals from 100 up (with thousands separators), four below,
    four significant digits under a thousandth (a target in millionths had MAE 0.0000)."""
    if mean is None or not np.isfinite(mean):
        return "n/a"  # undefined for this table, e.g. RMSLE of negative targets
    if mean != 0 and abs(mean) < 1e-3:
        spread = f" ± {std:.2g}" if std is not None and np.isfinite(std) else ""
        return f"{mean:.4g}{spread}"
    digits = 4 if abs(mean) < 100 else 0
    text = f"{mean:,.{digits}f}"
    if std is not None and np.isfinite(std):
        text += f" ± {std:,.{digits}f}"
    return text


def scorer(task: str, n_classes: int) -> Scorer:
    """A cross_validate scoring callable returning every metric of the task."""
    if task == "regression":

        def score_regression(estimator: Any, features: Any, y_true: np.ndarray) -> dict[str, float]:
            return regression_scores(y_true, estimator.predict(features))

        return score_regression

    def score_classification(estimator: Any, features: Any, y_true: np.ndarray) -> dict[str, float]:
        proba = class_probabilities(estimator, features, n_classes)
        return classification_scores(y_true, proba, n_classes)

    return score_classification
