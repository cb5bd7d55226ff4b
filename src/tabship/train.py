"""Training: clean the table, cross-validate every candidate, refit the best on all rows."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline

from tabship import metrics
from tabship.candidates import Candidate, Task, build_pipeline, select
from tabship.errors import DataError
from tabship.schema import Schema, infer_schema

CLASSIFICATION_MAX_INTEGER_LEVELS = 10

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainOptions:
    """What `tabship train` was asked for."""

    target: str
    task: Task | None = None
    folds: int = 5
    seed: int = 123
    models: list[str] | None = None
    exclude: list[str] | None = None
    sort_by: str | None = None
    n_jobs: int | None = None


def _finite_or_none(values: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: a metric that is undefined for a table (RMSLE of negatives) is null."""
    return {key: (value if np.isfinite(value) else None) for key, value in values.items()}


@dataclass(frozen=True)
class Row:
    """One candidate's cross-validated scores (mean and standard deviation per metric)."""

    name: str
    label: str
    mean: dict[str, float]
    std: dict[str, float]
    fit_seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for tabship.json."""
        return {
            "name": self.name,
            "label": self.label,
            "mean": _finite_or_none(self.mean),
            "std": _finite_or_none(self.std),
            "fit_seconds": self.fit_seconds,
            "error": self.error,
        }


@dataclass
class TrainResult:
    """Everything the artifact needs: the fitted winner, its schema and the leaderboard."""

    task: Task
    target: str
    schema: Schema
    leaderboard: list[Row]
    sort_by: str
    best: str
    pipeline: Pipeline
    features: pd.DataFrame
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    folds: int = 5
    seed: int = 123
    train_seconds: float = 0.0


def infer_task(target: pd.Series) -> Task:
    """Regression for numbers with many values, classification for labels and small codes."""
    kind = target.dtype.kind
    if kind not in "iuf":
        return "classification"
    values = target.dropna().to_numpy(dtype=np.float64)
    integral = bool(np.all(values == np.round(values)))
    distinct = len(np.unique(values))
    if integral and distinct <= CLASSIFICATION_MAX_INTEGER_LEVELS:
        return "classification"
    return "regression"


def prepare(
    frame: pd.DataFrame, options: TrainOptions
) -> tuple[Task, Schema, pd.DataFrame, np.ndarray, list[str], list[str]]:
    """Check the table and return task, schema, features, encoded target, classes, warnings."""
    target = options.target
    if target not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns) or "(none)"
        raise DataError(f"target column {target!r} is not in the table; columns: {columns}")
    if len(frame) == 0:
        raise DataError("the table has no rows; give a table with a header and at least one row")
    notes: list[str] = []
    empty_target = frame[target].isna()
    if empty_target.all():
        raise DataError(f"target column {target!r} is empty in every row")
    if empty_target.any():
        notes.append(f"{int(empty_target.sum())} rows with an empty {target!r} dropped")
        frame = frame.loc[~empty_target].reset_index(drop=True)
    task = options.task or infer_task(frame[target])
    y_raw = frame[target]
    classes: list[str] = []
    if task == "regression":
        if y_raw.dtype.kind not in "iuf":
            example = y_raw.iloc[0]
            raise DataError(
                f"target column {target!r} is not numeric (e.g. {example!r}), so it cannot be "
                f"a regression target; use --task classification to predict it as a label"
            )
        labels = y_raw.to_numpy(dtype=np.float64)
    else:
        text = y_raw.astype(str)
        classes = sorted(text.unique())
        if len(classes) < 2:
            raise DataError(
                f"target column {target!r} has one class ({classes[0]!r}); classification needs at least two"
            )
        counts = text.value_counts()
        rare = counts[counts < options.folds]
        if len(rare):
            raise DataError(
                f"class {rare.index[0]!r} of {target!r} has {int(rare.iloc[0])} rows, fewer than "
                f"the {options.folds} CV folds; add rows, merge rare classes, or lower --folds"
            )
        labels = text.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    if len(frame) < 2 * options.folds:
        raise DataError(
            f"the table has {len(frame)} usable rows; {options.folds}-fold CV needs at least "
            f"{2 * options.folds}; add rows or lower --folds"
        )
    schema, ignored = infer_schema(frame, target)
    notes.extend(ignored)
    if not schema.features:
        raise DataError(f"no usable feature columns besides {target!r}: {'; '.join(ignored)}")
    batch = schema.validate_frame(frame)
    features = pd.DataFrame({name: column.ravel() for name, column in batch.columns.items()})
    return task, schema, features, labels, classes, notes


def _cv_splitter(task: Task, folds: int, seed: int) -> KFold | StratifiedKFold:
    if task == "classification":
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return KFold(n_splits=folds, shuffle=True, random_state=seed)


def _evaluate(
    candidate: Candidate,
    schema: Schema,
    task: Task,
    features: pd.DataFrame,
    labels: np.ndarray,
    options: TrainOptions,
    n_classes: int,
) -> Row:
    pipeline = build_pipeline(schema, candidate, options.seed)
    scorer = metrics.scorer(task, n_classes)
    try:
        scores = cross_validate(
            pipeline,
            features,
            labels,
            cv=_cv_splitter(task, options.folds, options.seed),
            scoring=scorer,
            n_jobs=options.n_jobs,
            error_score="raise",
        )
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return Row(
            candidate.name, candidate.label, {}, {}, 0.0, error=f"{type(exc).__name__}: {exc}"
        )
    names = metrics.names(task)
    return Row(
        name=candidate.name,
        label=candidate.label,
        mean={m: float(np.mean(scores[f"test_{m}"])) for m in names},
        std={m: float(np.std(scores[f"test_{m}"])) for m in names},
        fit_seconds=float(np.mean(scores["fit_time"])),
    )


def rank(rows: list[Row], sort_by: str) -> list[Row]:
    """Best first by `sort_by`; failed candidates last; ties keep candidate order."""
    sign = 1.0 if metrics.higher_is_better(sort_by) else -1.0

    def key(row: Row) -> tuple[int, float]:
        value = row.mean.get(sort_by, float("nan"))
        return (1, 0.0) if row.error or np.isnan(value) else (0, -sign * value)

    return sorted(rows, key=key)


def train(
    frame: pd.DataFrame, options: TrainOptions, progress: Progress | None = None
) -> TrainResult:
    """Cross-validate the chosen candidates on `frame` and refit the best on all rows."""
    started = time.perf_counter()
    task, schema, features, labels, classes, notes = prepare(frame, options)
    pool = select(task, options.models, options.exclude)
    sort_by = options.sort_by or metrics.default_metric(task)
    if sort_by not in metrics.names(task):
        raise DataError(
            f"unknown metric {sort_by!r} for {task}; choose from: {', '.join(metrics.names(task))}"
        )
    n_jobs = options.n_jobs or min(options.folds, os.cpu_count() or 1)
    options = TrainOptions(**{**options.__dict__, "n_jobs": n_jobs})
    rows: list[Row] = []
    with warnings.catch_warnings():
        # Solvers that stop at max_iter still give a usable model; CV scores judge it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for index, candidate in enumerate(pool):
            if progress:
                progress(candidate.label, index, len(pool))
            rows.append(_evaluate(candidate, schema, task, features, labels, options, len(classes)))
        if progress:
            progress("refit", len(pool), len(pool))
        leaderboard = rank(rows, sort_by)
        best = leaderboard[0]
        if best.error:
            raise DataError(f"every candidate failed; the first error: {best.error}")
        chosen = next(c for c in pool if c.name == best.name)
        pipeline = build_pipeline(schema, chosen, options.seed).fit(features, labels)
    for row in rows:
        if row.error:
            notes.append(f"{row.label} failed in cross-validation ({row.error}); left out")
    return TrainResult(
        task=task,
        target=options.target,
        schema=schema,
        leaderboard=leaderboard,
        sort_by=sort_by,
        best=best.name,
        pipeline=pipeline,
        features=features,
        labels=labels,
        classes=classes,
        warnings=notes,
        folds=options.folds,
        seed=options.seed,
        train_seconds=time.perf_counter() - started,
    )
