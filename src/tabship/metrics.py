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


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R2, RMSLE (NaN when the target has negatives) and MAPE."""
    rmsle = float("nan")
    if np.all(y_true >= 0):
        rmsle = float(
            np.sqrt(np.mean((np.log1p(np.clip(y_pred, 0, None)) - np.log1p(y_true)) ** 2))
        )
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": float(skm.r2_score(y_true, y_pred)),
        "rmsle": rmsle,
        "mape": float(skm.mean_absolute_percentage_error(y_true, y_pred)),
    }


def classification_scores(
    y_true: np.ndarray, proba: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy, AUC, F1, precision, recall (binary, else weighted) and log-loss."""
    labels = list(range(n_classes))
    y_pred = np.argmax(proba, axis=1)
    binary = n_classes == 2
    average = "binary" if binary else "weighted"
    if binary:
        auc = skm.roc_auc_score(y_true, proba[:, 1])
    else:
        auc = skm.roc_auc_score(y_true, proba, multi_class="ovr", average="weighted", labels=labels)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "auc": float(auc),
        "f1": float(skm.f1_score(y_true, y_pred, average=average, zero_division=0)),
        "precision": float(skm.precision_score(y_true, y_pred, average=average, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, average=average, zero_division=0)),
        "log_loss": float(skm.log_loss(y_true, proba, labels=labels)),
    }


def single_scorer(
    task: str, metric: str, n_classes: int
) -> Callable[[Any, Any, np.ndarray], float]:
    """A scoring callable for one metric, signed so that larger is better.

    Permutation importance scores hundreds of shuffled copies; the common metrics get a
    plain numpy path instead of computing the whole set each time.
    """
    sign = 1.0 if higher_is_better(metric) else -1.0
    full = scorer(task, n_classes)

    def score(estimator: Any, features: Any, y_true: np.ndarray) -> float:
        if metric in ("mae", "rmse", "r2"):
            y = np.asarray(y_true, dtype=np.float64)
            error = y - np.asarray(estimator.predict(features), dtype=np.float64)
            if metric == "mae":
                return -float(np.mean(np.abs(error)))
            if metric == "rmse":
                return -float(np.sqrt(np.mean(error**2)))
            return 1.0 - float(np.sum(error**2) / np.sum((y - y.mean()) ** 2))
        if metric == "accuracy":
            return float(np.mean(estimator.predict(features) == np.asarray(y_true)))
        return sign * full(estimator, features, y_true)[metric]

    return score


def scorer(task: str, n_classes: int) -> Scorer:
    """A cross_validate scoring callable returning every metric of the task."""
    if task == "regression":

        def score_regression(estimator: Any, features: Any, y_true: np.ndarray) -> dict[str, float]:
            return regression_scores(
                np.asarray(y_true, dtype=np.float64), estimator.predict(features)
            )

        return score_regression

    def score_classification(estimator: Any, features: Any, y_true: np.ndarray) -> dict[str, float]:
        # A fold may miss a class; place each column under its class index.
        proba = np.zeros((len(y_true), n_classes))
        proba[:, estimator.classes_] = estimator.predict_proba(features)
        return classification_scores(np.asarray(y_true), proba, n_classes)

    return score_classification
