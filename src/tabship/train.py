"""Training: clean the table (trainset.py), cross-validate every candidate, refit the best."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from tabship import cluster, metrics
from tabship.candidates import Candidate, Task, select
from tabship.crossval import CrossValidator, Row, rank
from tabship.errors import ConfigError, DataError
from tabship.feature import rows_text
from tabship.labels import is_imbalanced, label_type
from tabship.preparation import EXPAND_MAX_WIDTH, encoded_width
from tabship.racing import compare, fit_estimate
from tabship.schema import Schema
from tabship.trainset import prepare
from tabship.tune import TuningSummary, tune

DEFAULT_TIME_BUDGET = 60.0

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
    # Two classes: the one F1, precision and recall score; None: 1 or True, else the rarer.
    positive_class: str | None = None
    n_jobs: int | None = None
    holdout: float = 0.0
    tune: bool = False
    # Seconds for the whole run (comparison, tuning, refit); None: no bound, and tuning
    # gets DEFAULT_TIME_BUDGET.
    time_budget: float | None = None
    # A Dask scheduler (tcp://HOST:8786): folds, trials and the refit run on its workers.
    cluster: str | None = None

    def __post_init__(self) -> None:
        """Refuse what would fail only after the training ran (an infinite budget could
        not be written into the model card; a seed numpy refuses failed every candidate)."""
        budget = self.time_budget
        if budget is not None and not (math.isfinite(budget) and budget >= 1):
            raise ConfigError(
                f"--time-budget {budget:g} must be a finite number of seconds, 1 or more"
            )
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed {self.seed} must be from 0 to {2**32 - 1}")
        if self.sort_by is not None and not self.sort_by.strip():
            raise ConfigError("--sort-by is empty; leave it out to use the task's default metric")
        if self.sort_by is not None:  # the metrics' names are lower case; MAE means mae
            object.__setattr__(self, "sort_by", self.sort_by.strip().lower())


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
    validator: CrossValidator
    candidate: Candidate
    classes: list[str] = field(default_factory=list)
    # How answers give a class: "integer", "number", "boolean" or "string" (see `label_type`).
    label_type: str = "string"
    warnings: list[str] = field(default_factory=list)
    train_seconds: float = 0.0
    holdout: Holdout | None = None
    tuning: TuningSummary | None = None

    @property
    def features(self) -> pd.DataFrame:
        """The rows the model was cross-validated and fitted on (the holdout excluded)."""
        return self.validator.features

    @property
    def labels(self) -> np.ndarray:
        """The encoded target of `features`."""
        return self.validator.labels

    @property
    def folds(self) -> int:
        """Cross-validation folds."""
        return self.validator.folds

    @property
    def seed(self) -> int:
        """The seed of folds, holdout, tuning and models."""
        return self.validator.seed

    @property
    def chosen(self) -> Row:
        """The leaderboard row of the model that was refit and shipped."""
        return next(row for row in self.leaderboard if row.name == self.best)

    def fresh_pipeline(self) -> Pipeline:
        """An unfitted copy of the chosen pipeline (for out-of-fold predictions)."""
        row = self.chosen
        return self.validator.pipeline(self.candidate, row.expand, row.params)


@dataclass(frozen=True)
class Holdout:
    """Rows kept out of every fit and every tuning trial, and the shipped model's scores on them."""

    features: pd.DataFrame
    labels: np.ndarray
    fraction: float
    scores: dict[str, float]


def _split_holdout(
    task: Task,
    features: pd.DataFrame,
    labels: np.ndarray,
    options: TrainOptions,
    classes: list[str],
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame | None, np.ndarray | None]:
    if not options.holdout:
        return features, labels, None, None
    if not 0.0 < options.holdout <= 0.9:
        raise DataError(
            f"--holdout {options.holdout:g} must be above 0 and at most 0.9; e.g. --holdout 0.2"
        )
    held = round(len(features) * options.holdout)
    if held < 1 or len(features) - held < 2 * options.folds:
        raise DataError(
            f"--holdout {options.holdout:g} of {len(features)} rows leaves too few rows for "
            f"{options.folds}-fold CV or none to hold out; lower --holdout or --folds"
        )
    try:
        fit_x, held_x, fit_y, held_y = train_test_split(
            features,
            labels,
            test_size=options.holdout,
            random_state=options.seed,
            stratify=labels if task == "classification" else None,
        )
    except ValueError as exc:
        raise DataError(f"--holdout {options.holdout:g} cannot keep every class: {exc}") from exc
    counts = np.bincount(fit_y) if task == "classification" else np.array([options.folds])
    if counts.min() < options.folds:
        smallest = int(np.argmin(counts))
        raise DataError(
            f"after the {options.holdout:g} holdout class {classes[smallest]!r} keeps "
            f"{rows_text(int(counts[smallest]))}, fewer than the {options.folds} CV folds; lower "
            "--holdout or --folds"
        )
    return (
        fit_x.reset_index(drop=True),
        np.asarray(fit_y),
        held_x.reset_index(drop=True),
        np.asarray(held_y),
    )


def _sort_metric(
    task: Task,
    asked: str | None,
    labels: np.ndarray,
    classes: int,
    balanced: bool,
    notes: list[str],
) -> str:
    """The metric that picks the winner: as asked if it can rank this target, else the
    task's default; AUC for two imbalanced classes."""
    if balanced:
        notes.append(
            "classes are imbalanced: models with a class_weight setting (logistic "
            "regression, trees, forests, ...) are weighted by inverse frequency"
        )
    if asked is None and balanced and classes == 2:
        # Accuracy rewards always answering the commonest class: a k-NN of AUC 0.86 won
        # over a logistic regression of 0.99 on a 1% fraud table. H2O ranks by AUC too.
        notes.append("ranked by AUC, as accuracy rewards always answering the commoner class")
        return "auc"
    sort_by = asked or metrics.default_metric(task)
    if sort_by not in metrics.names(task):
        raise DataError(
            f"unknown metric {sort_by!r} for {task}; choose from: {', '.join(metrics.names(task))}"
        )
    why = metrics.undefined(sort_by, labels) if task == "regression" else None
    if why:
        raise DataError(f"--sort-by {sort_by}: {why}; choose another metric, such as mae")
    return sort_by


def _without_expansion(pool: list[Candidate], width: int, notes: list[str]) -> list[Candidate]:
    """The pool without degree-2 candidates, for a table too wide to expand."""
    if any(c.expand for c in pool):
        notes.append(
            f"degree-2 feature candidates left out: {width} encoded columns "
            f"(more than {EXPAND_MAX_WIDTH})"
        )
    return [c for c in pool if not c.expand] or pool


def _tuned(
    leaderboard: list[Row],
    sort_by: str,
    budget: float,
    notes: list[str],
    run: Callable[[float], tuple[list[Row], TuningSummary]],
) -> tuple[list[Row], TuningSummary | None]:
    """The leaderboard with `run`'s tuned candidates ranked in, when the budget allows tuning."""
    if budget < 1.0:
        notes.append("tuning skipped: the time budget was spent by the comparison")
        return leaderboard, None
    tuned, tuning = run(budget)
    notes.extend(tuning.notes)
    return rank(leaderboard + tuned, sort_by), tuning


def train(
    frame: pd.DataFrame,
    options: TrainOptions,
    progress: Progress | None = None,
    target_text: pd.Series | None = None,
) -> TrainResult:
    """Cross-validate the candidates (and tune the best), refit the winner, score the holdout.

    `target_text`: the target as the file wrote it (see `prepare`)."""
    started = time.perf_counter()
    task, schema, features, labels, classes, notes = prepare(frame, options, target_text)
    pool = select(task, options.models, options.exclude)
    balanced = is_imbalanced(task, labels)
    sort_by = _sort_metric(task, options.sort_by, labels, len(classes), balanced, notes)
    expandable = encoded_width(schema) <= EXPAND_MAX_WIDTH
    if not expandable:
        pool = _without_expansion(pool, encoded_width(schema), notes)
    fit_x, fit_y, held_x, held_y = _split_holdout(task, features, labels, options, classes)
    validator = CrossValidator(
        schema=schema,
        task=task,
        features=fit_x,
        labels=fit_y,
        folds=options.folds,
        seed=options.seed,
        n_jobs=options.n_jobs or min(options.folds, os.cpu_count() or 1),
        n_classes=len(classes),
        balanced=balanced,
    )
    tuning: TuningSummary | None = None
    clock = time.monotonic
    deadline = None if options.time_budget is None else clock() + options.time_budget
    # One OpenMP thread per fit: CV already runs a fold per core, and a lone fit that spreads
    # over busy cores spin-waits (histogram boosting took 50 times longer that way here).
    with (
        cluster.session(options.cluster, fit_x, fit_y),
        warnings.catch_warnings(),
        threadpool_limits(limits=1, user_api="openmp"),
    ):
        # Solvers that stop at max_iter still give a usable model; CV scores judge it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        comparison = compare(validator, pool, sort_by, deadline=deadline, progress=progress)
        rows = comparison.rows
        notes.extend(comparison.notes)
        leaderboard = rank(rows, sort_by)
        if leaderboard[0].error:
            raise DataError(f"every candidate failed; the first error: {leaderboard[0].error}")
        if options.tune:
            budget = DEFAULT_TIME_BUDGET
            if deadline is not None:
                # The refit of the best so far must still fit in what the budget leaves.
                budget = deadline - clock() - fit_estimate(leaderboard[0], len(fit_x))
            search = partial(
                tune,
                validator,
                pool,
                leaderboard,
                sort_by=sort_by,
                base_seconds=comparison.seconds,
                expandable=expandable,
                progress=progress,
            )
            leaderboard, tuning = _tuned(
                leaderboard, sort_by, budget, notes, lambda seconds: search(budget=seconds)
            )
        best = leaderboard[0]
        if progress:
            progress(f"refit on {len(fit_x):,} rows: {best.label}", 1, 1)
        chosen = next(c for c in pool if c.name == (best.candidate or best.name))
        pipeline = cluster.fit(validator.pipeline(chosen, best.expand, best.params), fit_x, fit_y)
    notes.extend(
        f"{row.label} failed in cross-validation ({row.error}); left out"
        for row in rows
        if row.error
    )
    if balanced and "class_weight" not in pipeline.named_steps["model"].get_params():
        notes.append(
            f"{best.label} was fitted without class weights (only models with a class_weight "
            "setting get them): the shipped model is unweighted"
        )
    notes.extend(_worse_than_the_mean(task, best.mean.get("r2"), options.target))
    holdout = None
    if held_x is not None and held_y is not None:
        scores = metrics.scorer(task, len(classes))(pipeline, held_x, held_y)
        holdout = Holdout(held_x, held_y, options.holdout, scores)
    return TrainResult(
        task=task,
        target=options.target,
        schema=schema,
        leaderboard=leaderboard,
        sort_by=sort_by,
        best=best.name,
        pipeline=pipeline,
        validator=validator,
        candidate=chosen,
        classes=classes,
        label_type=label_type(frame[options.target]) if task == "classification" else "string",
        warnings=notes,
        train_seconds=time.perf_counter() - started,
        holdout=holdout,
        tuning=tuning,
    )


def _worse_than_the_mean(task: str, r2: float | None, target: str) -> list[str]:
    """A note when the best regressor's CV R2 is below 0: it predicts worse than the mean,
    and shipped silently (six target values of 1e9 among values near 10 made every row's
    prediction about -1e9)."""
    if task != "regression" or r2 is None or not r2 < 0:
        return []
    return [
        f"the best model's cross-validated R2 is {r2:.3f}, worse than predicting the mean of "
        f"{target!r}: a few extreme values can dominate squared error (check the target for "
        "outliers or unit mix-ups), or the features hold no signal for it"
    ]
