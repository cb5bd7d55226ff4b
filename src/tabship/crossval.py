"""Cross-validation shared by the comparison and the tuning: one splitter, one scorer, one row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline

from tabship import metrics
from tabship.candidates import Candidate, Task
from tabship.preparation import TargetType, build_pipeline
from tabship.schema import Schema


def _finite_or_none(values: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: a metric that is undefined for a table (RMSLE of negatives) is null."""
    return {key: (value if np.isfinite(value) else None) for key, value in values.items()}


@dataclass(frozen=True)
class Row:
    """One leaderboard row: a candidate (or a tuned variant of one) and its CV scores.

    `candidate` names the family it was built from; `expand` says whether degree-2 features
    were added, and `params` what tuning changed (empty for the candidate as defined).
    """

    name: str
    label: str
    mean: dict[str, float]
    std: dict[str, float]
    fit_seconds: float
    error: str | None = None
    candidate: str = ""
    expand: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    rows: int = 0

    @property
    def tuned(self) -> bool:
        """Whether tuning produced this row."""
        return self.trials > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for tabship.json."""
        return {
            "name": self.name,
            "label": self.label,
            "mean": _finite_or_none(self.mean),
            "std": _finite_or_none(self.std),
            "fit_seconds": self.fit_seconds,
            "error": self.error,
            "candidate": self.candidate or self.name,
            "tuned": self.tuned,
            "trials": self.trials,
            "expand": self.expand,
            "params": {key: _plain(value) for key, value in self.params.items()},
            "rows": self.rows,
        }


def _plain(value: Any) -> Any:
    """numpy scalars from the samplers as JSON numbers."""
    return value.item() if isinstance(value, np.generic) else value


def splitter(task: Task, folds: int, seed: int) -> KFold | StratifiedKFold:
    """Stratified folds for labels (every fold sees every class), shuffled folds for numbers."""
    if task == "classification":
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return KFold(n_splits=folds, shuffle=True, random_state=seed)


@dataclass(frozen=True)
class CrossValidator:
    """Scores pipelines on one table with one set of folds, so every row is comparable."""

    schema: Schema
    task: Task
    features: pd.DataFrame
    labels: np.ndarray
    folds: int
    seed: int
    n_jobs: int
    n_classes: int
    balanced: bool = False

    def pipeline(
        self, candidate: Candidate, expand: bool | None = None, params: dict[str, Any] | None = None
    ) -> Pipeline:
        """The candidate's unfitted pipeline, with tuned parameters if given.

        A plain name is the model's parameter; a `step__param` path reaches the preparation.
        """
        built = build_pipeline(
            self.schema,
            candidate,
            self.seed,
            expand=expand,
            balanced=self.balanced,
            target_type=self.target_type,
        )
        if params:
            built.set_params(
                **{key if "__" in key else f"model__{key}": value for key, value in params.items()}
            )
        return built

    def score(
        self,
        candidate: Candidate,
        *,
        name: str | None = None,
        label: str | None = None,
        expand: bool | None = None,
        params: dict[str, Any] | None = None,
        trials: int = 0,
    ) -> Row:
        """Cross-validate one pipeline; a candidate that cannot fit this table gets an error row."""
        identity = Row(
            name=name or candidate.name,
            label=label or candidate.label,
            mean={},
            std={},
            fit_seconds=0.0,
            candidate=candidate.name,
            # Recorded resolved, so the row alone says what was fitted.
            expand=candidate.expand if expand is None else expand,
            params=dict(params or {}),
            trials=trials,
            rows=len(self.features),
        )
        try:
            scores = cross_validate(
                self.pipeline(candidate, expand, params),
                self.features,
                self.labels,
                cv=splitter(self.task, self.folds, self.seed),
                scoring=metrics.scorer(self.task, self.n_classes),
                n_jobs=self.n_jobs,
                error_score="raise",
            )
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            return replace(identity, error=f"{type(exc).__name__}: {exc}")
        names = metrics.names(self.task)
        return replace(
            identity,
            mean={m: float(np.mean(scores[f"test_{m}"])) for m in names},
            std={m: float(np.std(scores[f"test_{m}"])) for m in names},
            fit_seconds=float(np.mean(scores["fit_time"])),
        )

    @property
    def target_type(self) -> TargetType | None:
        """The target encoding this task allows: numbers and two classes, not more."""
        if self.task == "regression":
            return "continuous"
        return "binary" if self.n_classes == 2 else None

    def subset(self, rows: int) -> CrossValidator:
        """The same folds and seed on a seeded sample of `rows` rows (stratified for labels)."""
        features, _, labels, _ = train_test_split(
            self.features,
            self.labels,
            train_size=rows,
            random_state=self.seed,
            stratify=self.labels if self.task == "classification" else None,
        )
        return replace(self, features=features.reset_index(drop=True), labels=np.asarray(labels))

    def timed_score(self, candidate: Candidate, **kwargs: Any) -> tuple[Row, float]:
        """`score` and the wall-clock seconds it took (tuning plans its budget with them)."""
        started = time.perf_counter()
        row = self.score(candidate, **kwargs)
        return row, time.perf_counter() - started


def rank(rows: list[Row], sort_by: str) -> list[Row]:
    """Best first by `sort_by`; failed candidates last; ties keep candidate order.

    Rows scored on more rows come first: a candidate a race dropped on a sample ranks below
    those it carried to larger ones, whatever its noisier small-sample score says.
    """
    sign = 1.0 if metrics.higher_is_better(sort_by) else -1.0

    def key(row: Row) -> tuple[int, int, float]:
        value = row.mean.get(sort_by, float("nan"))
        return (1, 0, 0.0) if row.error or np.isnan(value) else (0, -row.rows, -sign * value)

    return sorted(rows, key=key)
