"""What the report shows of the chosen model: its predictions on unseen rows and what drives them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.model_selection import cross_validate
from sklearn.utils.parallel import Parallel, delayed

from tabship import metrics
from tabship.crossval import splitter
from tabship.train import TrainResult

IMPORTANCE_REPEATS = 5
# Permutation importance predicts repeats x features times; a sample keeps that quick on
# large tables and is plenty to rank the features.
IMPORTANCE_MAX_ROWS = 2000
# The report's out-of-fold plots refit the chosen pipeline once per fold; past this many rows
# a seeded sample shows the same picture without repeating the whole table's CV.
EVALUATION_MAX_ROWS = 50_000


@dataclass(frozen=True)
class Importance:
    """How much the sort metric drops when one feature's values are shuffled."""

    feature: str
    mean: float
    std: float


@dataclass(frozen=True)
class Evaluation:
    """The chosen model's predictions on rows it was not fitted on, and feature importance.

    `source` says which rows: the holdout (when kept) or each row's out-of-fold prediction
    from the same cross-validation folds the leaderboard used.
    """

    source: str
    actual: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray | None
    importance: list[Importance]
    importance_metric: str


def _fold_importance(
    estimator: Any, features: pd.DataFrame, labels: np.ndarray, scoring: Any, seed: int
) -> np.ndarray:
    if len(features) > IMPORTANCE_MAX_ROWS:
        keep = np.random.default_rng(seed).choice(len(features), IMPORTANCE_MAX_ROWS, replace=False)
        features, labels = features.iloc[keep], labels[keep]
    found = permutation_importance(
        estimator,
        features,
        labels,
        scoring=scoring,
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
    )
    return np.asarray(found.importances)


def _importances(
    result: TrainResult, fitted: list[tuple[Any, pd.DataFrame, np.ndarray]]
) -> list[Importance]:
    """Permutation importance on each (model, unseen rows) pair, pooled over the pairs."""
    scoring = metrics.single_scorer(result.task, result.sort_by, len(result.classes))
    drops = Parallel(n_jobs=min(len(fitted), result.validator.n_jobs))(
        delayed(_fold_importance)(estimator, features, labels, scoring, result.seed)
        for estimator, features, labels in fitted
    )
    stacked = np.concatenate(drops, axis=1)
    ranked = [
        Importance(name, float(np.mean(stacked[i])), float(np.std(stacked[i])))
        for i, name in enumerate(result.schema.input_names)
    ]
    return sorted(ranked, key=lambda item: -item.mean)


def _out_of_fold(result: TrainResult) -> Evaluation:
    validator = result.validator
    # No more rows than the winner was compared on: under a time budget that may be a
    # race's sample, and redoing its CV on 20,000 rows took the report 100 s past the budget.
    limit = min(EVALUATION_MAX_ROWS, result.chosen.rows or EVALUATION_MAX_ROWS)
    if len(validator.labels) > limit:
        validator = validator.subset(limit)
    sample = "" if validator is result.validator else " of a seeded sample"
    scores = cross_validate(
        result.fresh_pipeline(),
        validator.features,
        validator.labels,
        cv=splitter(result.task, result.folds, result.seed),
        n_jobs=validator.n_jobs,
        return_estimator=True,
        return_indices=True,
        scoring=lambda *_: 0.0,
    )
    rows = len(validator.labels)
    predicted = np.zeros(rows, dtype=np.float64 if result.task == "regression" else np.int64)
    proba = np.zeros((rows, len(result.classes))) if result.task == "classification" else None
    fitted = []
    for estimator, test in zip(scores["estimator"], scores["indices"]["test"], strict=True):
        features = validator.features.iloc[test]
        if proba is not None:
            proba[test] = metrics.class_probabilities(estimator, features, len(result.classes))
            predicted[test] = np.argmax(proba[test], axis=1)
        else:
            predicted[test] = estimator.predict(features)
        fitted.append((estimator, features, validator.labels[test]))
    return Evaluation(
        source=(
            f"out-of-fold predictions of {result.folds}-fold cross-validation "
            f"({rows:,} rows{sample})"
        ),
        actual=validator.labels,
        predicted=predicted,
        proba=proba,
        importance=_importances(result, fitted),
        importance_metric=result.sort_by,
    )


def _on_holdout(result: TrainResult) -> Evaluation:
    holdout = result.holdout
    assert holdout is not None
    pipeline = result.pipeline
    proba = None
    if result.task == "classification":
        proba = metrics.class_probabilities(pipeline, holdout.features, len(result.classes))
        predicted = np.argmax(proba, axis=1)
    else:
        predicted = np.asarray(pipeline.predict(holdout.features), dtype=np.float64)
    return Evaluation(
        source=f"the holdout ({len(holdout.labels):,} rows no fit or tuning trial saw)",
        actual=holdout.labels,
        predicted=predicted,
        proba=proba,
        importance=_importances(result, [(pipeline, holdout.features, holdout.labels)]),
        importance_metric=result.sort_by,
    )


def evaluate(result: TrainResult) -> Evaluation:
    """Predictions on unseen rows: the holdout if one was kept, else out-of-fold CV."""
    return _on_holdout(result) if result.holdout is not None else _out_of_fold(result)
