"""Columns that give the target away: a copy of it, a code or amount made from it.

A model trained on one scores almost perfectly in cross-validation and fails in service,
where the column is not known before the outcome is. tabship still trains on it (a column can
be legitimately that strong) but says which and how, so that the user decides.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabship.schema import MISSING_LEVEL, Schema

# Fewer rows than this prove nothing either way.
MIN_ROWS = 30
# A sample is enough to see a column that tracks the target exactly.
SAMPLE_ROWS = 200_000
# Regression: how closely a column must follow the target (rank correlation, or the share of
# the target's variance its levels explain) to be named.
FOLLOWS = 0.9999
# Classification: at most this share of rows may disagree with the column's own rule, and
# the rule must make ten times fewer errors than always answering the commonest class.
DISAGREE = 0.001


def leak_warnings(
    features: pd.DataFrame, schema: Schema, labels: np.ndarray, task: str, target: str
) -> list[str]:
    """One warning per feature that predicts the target (almost) exactly on its own."""
    if len(labels) < MIN_ROWS:
        return []
    if len(labels) > SAMPLE_ROWS:
        picked = np.random.default_rng(0).choice(len(labels), SAMPLE_ROWS, replace=False)
        features, labels = features.iloc[picked], labels[picked]
    found = []
    for feature in schema.features:
        if feature.kind == "date":
            continue  # a date's parts are not the target; a date made from it is rare
        column = features[feature.name].to_numpy()
        if feature.kind == "numeric":
            how = _numeric(column.astype(np.float64), labels, task)
        else:
            how = _levels(column.astype(str), labels, task)
        if how:
            found.append(
                f"column {feature.name!r} gives {target!r} away ({how}): if it is not known "
                "before the target is, drop it; cross-validation scores it, service will not "
                "have it"
            )
    return found


def _numeric(values: np.ndarray, labels: np.ndarray, task: str) -> str | None:
    present = ~np.isnan(values)
    if present.sum() < MIN_ROWS:
        return None
    values, labels = values[present], labels[present]
    if task == "regression":
        with np.errstate(invalid="ignore"):
            rho = np.corrcoef(_ranks(values), _ranks(labels))[0, 1]
        if np.isfinite(rho) and abs(rho) >= FOLLOWS:
            return f"rank correlation {rho:.4f}"
        return None
    order = np.argsort(values, kind="stable")
    # Classes that thresholds on this one column separate: the sorted labels change class
    # no more often than there are classes to part.
    changes = int(np.count_nonzero(np.diff(labels[order])))
    if changes < len(np.unique(labels)) and _beats_majority(0, labels):
        return "thresholds on it separate the classes"
    return None


def _levels(text: np.ndarray, labels: np.ndarray, task: str) -> str | None:
    present = text != MISSING_LEVEL
    if present.sum() < MIN_ROWS:
        return None
    text, labels = text[present], labels[present]
    codes, inverse, sizes = np.unique(text, return_inverse=True, return_counts=True)
    # A level met once agrees with itself: only levels of several rows are evidence, and
    # they must hold most of the rows.
    shared = sizes[inverse] > 1
    if len(codes) < 2 or shared.sum() < max(MIN_ROWS, len(text) / 2):
        return None
    codes, inverse = np.unique(text[shared], return_inverse=True)
    labels = labels[shared]
    if task == "regression":
        counts = np.bincount(inverse)
        means = np.bincount(inverse, weights=labels) / counts
        total = float(np.sum((labels - labels.mean()) ** 2))
        within = float(np.sum((labels - means[inverse]) ** 2))
        if total > 0 and 1 - within / total >= FOLLOWS:
            return f"its values explain {1 - within / total:.2%} of the target's variance"
        return None
    table = np.zeros((len(codes), int(labels.max()) + 1), dtype=np.int64)
    np.add.at(table, (inverse, labels.astype(np.int64)), 1)
    errors = len(labels) - int(table.max(axis=1).sum())
    if errors <= DISAGREE * len(labels) and _beats_majority(errors, labels):
        return f"each value holds one class in {1 - errors / len(labels):.1%} of rows"
    return None


def _beats_majority(errors: int, labels: np.ndarray) -> bool:
    """Whether a rule making `errors` mistakes is far better than the commonest class."""
    baseline = len(labels) - int(np.bincount(labels.astype(np.int64)).max())
    return errors * 10 < baseline


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share theirs), for a rank correlation without scipy."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def repeated_rows_note(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """A note when rows repeat an earlier row in every column the model uses (the target
    too): kept, but a fold may then score copies of rows it trained on."""
    repeated = int(frame[columns].duplicated().sum())
    if not repeated:
        return []
    return [
        f"{repeated:,} of {len(frame):,} rows repeat an earlier row in every column used (the "
        "target too); kept: cross-validation may score copies of rows it trained on, so the "
        "scores flatter the model if the copies are not real repeats"
    ]
