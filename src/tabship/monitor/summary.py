"""What the log says over a window: drift, traffic over time and live scores from feedback.

Read by /monitor (the whole database, every pod) and by `tabship monitor`. Scores are computed
with numpy, the same definitions as training's (F1 binary for two classes with the second class
positive, weighted otherwise), because the serving image may hold no scikit-learn.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tabship.card import ModelCard
from tabship.errors import shown_field
from tabship.feature import listed
from tabship.monitor.drift import MIN_ROWS, DriftReport, compare
from tabship.monitor.profile import ReferenceProfile
from tabship.monitor.store import LoggedRow, LogStore

DEFAULT_SINCE_SECONDS = 24 * 3600.0
MAX_ROWS = 100_000
# Scores need at least this many labelled rows in a bucket to be shown.
MIN_SCORED = 5
# The longest window: its start is still a date every platform's calendar can show.
MAX_SINCE_SECONDS = 3650 * 86400


_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?")


def parse_since(text: str) -> float:
    """'7d', '24h', '30m', '90s' (or a bare number of hours) as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    unit = units.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    # ASCII digits only: float() also reads '1_000' and other scripts' digits, which no one
    # types as a window on purpose and the page then showed back as given.
    if not _NUMBER.fullmatch(number):
        raise ValueError(f"--since {text!r} is not a duration; use e.g. 30m, 24h or 7d")
    value = float(number) * (unit or 3600)
    if value <= 0:
        raise ValueError(f"--since {text!r} must be a positive duration such as 24h")
    # Infinite too (1e308h overflows): its start would be before any log and any calendar.
    if value > MAX_SINCE_SECONDS:
        raise ValueError(f"--since {text!r} is over 3650d (ten years), which covers any log")
    return value


def regression_scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R2 (R2 is NaN for a constant target)."""
    error = predicted - actual
    total = float(np.sum((actual - actual.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(math.sqrt(np.mean(error**2))),
        "r2": 1 - float(np.sum(error**2)) / total if total > 0 else math.nan,
    }


def classification_scores(
    actual: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> dict[str, float]:
    """Accuracy and F1 (binary on the second class for two classes, weighted otherwise)."""
    a, p = np.asarray(actual, dtype=object), np.asarray(predicted, dtype=object)
    scores = {"accuracy": float(np.mean(a == p))}
    if len(classes) == 2:
        scores["f1"] = _f1(a, p, classes[1])
        return scores
    present, support = np.unique(a, return_counts=True)
    weighted = sum(_f1(a, p, label) * count for label, count in zip(present, support, strict=True))
    scores["f1"] = float(weighted / len(a))
    return scores


def _f1(actual: np.ndarray, predicted: np.ndarray, positive: Any) -> float:
    tp = float(np.sum((actual == positive) & (predicted == positive)))
    fp = float(np.sum((actual != positive) & (predicted == positive)))
    fn = float(np.sum((actual == positive) & (predicted != positive)))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0


def live_scores(task: str, classes: Sequence[str], rows: Sequence[LoggedRow]) -> dict[str, float]:
    """Scores of the rows that have feedback of this model's kind.

    The feedback table is shared by every model logging to the database, and a server once
    stored answers for any model's ids: an answer that cannot be this model's (text for a
    regression, a label outside its classes) is left out, never a crash of the whole page.
    """
    if task == "regression":
        pairs = [(_number(r.actual), _number(r.prediction)) for r in rows if r.actual is not None]
        kept = [(a, p) for a, p in pairs if a is not None and p is not None]
        if not kept:
            return {}
        actual, predicted = np.array(kept).T
        return regression_scores(actual, predicted)
    known = set(classes)
    labelled = [r for r in rows if r.actual is not None and str(r.actual) in known]
    if not labelled:
        return {}
    actual = [str(r.actual) for r in labelled]
    scores = classification_scores(actual, [str(r.prediction) for r in labelled], classes)
    shares = [r.probabilities for r in labelled]
    if all(isinstance(row, Mapping) for row in shares):  # rows logged before had none
        table = np.array([[_number(_share(row, c)) or 0.0 for c in classes] for row in shares])
        scores |= probability_scores(actual, table, classes)
    return scores


def _share(probabilities: Mapping[str, Any], label: str) -> Any:
    """A class's logged probability: a boolean class is keyed `true` in answers, `True` in
    rows logged before that."""
    if label in probabilities or label not in ("True", "False"):
        return probabilities.get(label)
    return probabilities.get(label.lower())


def probability_scores(
    actual: Sequence[str], probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """AUC and log loss, as training's CV defines them (scikit-learn's roc_auc_score, binary
    on the second class or one-vs-rest weighted by support, and log_loss), in numpy."""
    truth = np.asarray(actual, dtype=object)
    if len(classes) == 2:
        auc = _auc(probabilities[:, 1], truth == classes[1])
    else:
        weighted = [
            (_auc(probabilities[:, k], truth == label), int(np.sum(truth == label)))
            for k, label in enumerate(classes)
            if np.any(truth == label)
        ]
        kept = [(value, count) for value, count in weighted if math.isfinite(value)]
        total = sum(count for _, count in kept)
        auc = sum(value * count for value, count in kept) / total if total else math.nan
    rows = probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-300)
    given = rows[np.arange(len(truth)), [list(classes).index(a) for a in truth]]
    eps = np.finfo(np.float64).eps  # scikit-learn's clip
    return {"auc": auc, "log_loss": float(-np.mean(np.log(np.clip(given, eps, 1 - eps))))}


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The area under the ROC curve: the Mann-Whitney statistic, ties counted half; NaN
    when one side has no rows (undefined, as scikit-learn says)."""
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if not positives or not negatives:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    # Tied scores share the mean of their ranks (1-based).
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return float(
        (ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def _number(value: Any) -> float | None:
    """A finite number, or None for text or anything else."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Bucket:
    """Traffic in one time bucket."""

    start: float
    predictions: int
    requests: int
    warned: int
    latency_p50: float | None
    latency_p95: float | None
    labelled: int
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The bucket's start as UTC text."""
        return datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Summary:
    """The monitor's view of one window of the log."""

    model_sha256: str
    since: float
    until: float
    rows: int
    truncated: bool
    drift: DriftReport | None
    buckets: list[Bucket]
    scores: dict[str, float]
    labelled: int
    cv: dict[str, float | None]
    task: str
    note: str = ""
    # No feedback in the window, but the log holds some for this model outside it.
    feedback_outside: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every feature with its statistics and status, traffic and scores."""
        return {
            "model_sha256": self.model_sha256,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "rows": self.rows,
            "truncated": self.truncated,
            "note": self.note,
            "drift": self.drift.to_dict() if self.drift else None,
            "traffic": [
                {
                    "start": _iso(b.start),
                    "predictions": b.predictions,
                    "requests": b.requests,
                    "warned": b.warned,
                    "latency_ms_p50": b.latency_p50,
                    "latency_ms_p95": b.latency_p95,
                    "labelled": b.labelled,
                    "scores": _clean(b.scores),
                }
                for b in self.buckets
            ],
            "live_scores": _clean(self.scores),
            "labelled": self.labelled,
            "feedback_outside_window": self.feedback_outside,
            "cv_scores": _clean(self.cv),
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _clean(scores: dict[str, Any]) -> dict[str, float | None]:
    return {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in scores.items()}


def _bucket_seconds(span: float) -> float:
    for size in (60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0):
        if span / size <= 48:
            return size
    return 7 * 86400.0


def buckets(
    rows: Sequence[LoggedRow], since: float, until: float, task: str, classes: Sequence[str]
) -> list[Bucket]:
    """Traffic, latency, warnings and scores per time bucket (at most about 48 buckets).

    Buckets start at whole multiples of their size (the same on every reload), and the empty
    ones between the first and the last are kept: a chart drawn by bucket shows an outage
    as the gap it was, not as a line from the hour before to the day after.
    """
    size = _bucket_seconds(until - since)
    # Only the window's buckets: one row stamped three years ahead (a pod's wrong clock)
    # made millions of empty ones, and a page of hundreds of megabytes.
    first, last = int(since // size), int(until // size)
    grouped: dict[int, list[LoggedRow]] = {}
    for row in rows:
        index = int(row.ts // size)
        if first <= index <= last:
            grouped.setdefault(index, []).append(row)
    out = []
    for index in range(min(grouped, default=0), max(grouped, default=-1) + 1):
        group = grouped.get(index)
        if not group:
            out.append(Bucket(max(index * size, since), 0, 0, 0, None, None, 0))
            continue
        # A request's rows share its id, time and latency: a 300-row batch is one request of
        # one latency, not 300 that set both percentiles. Its time tells apart the requests of
        # a client that sends one X-Request-Id again.
        requests = {(r.request_id, r.ts): r.latency_ms for r in group}
        latency = np.array(list(requests.values()))
        labelled = sum(1 for r in group if r.actual is not None)
        out.append(
            Bucket(
                # The window's first bucket starts where the window does, not before it.
                start=max(index * size, since),
                predictions=len(group),
                requests=len(requests),
                warned=sum(1 for r in group if r.warnings),
                latency_p50=float(np.percentile(latency, 50)),
                latency_p95=float(np.percentile(latency, 95)),
                labelled=labelled,
                scores=live_scores(task, classes, group) if labelled >= MIN_SCORED else {},
            )
        )
    return out


def summarize(
    store: LogStore,
    card: ModelCard,
    profile: ReferenceProfile | None,
    since_seconds: float = DEFAULT_SINCE_SECONDS,
    max_rows: int = MAX_ROWS,
    now: float | None = None,
) -> Summary:
    """Read the window from the log and compute the monitor's view of it."""
    until = now or time.time()
    since = until - since_seconds
    rows = list(store.rows(card.sha256, since, max_rows))
    drift = None
    notes = []
    if profile is None:
        notes.append(
            "this model folder has no reference profile (trained before tabship 0.2): no drift"
        )
    else:
        inputs, predicted = [r.input for r in rows], [r.prediction for r in rows]
        drift = compare(profile, inputs, predicted, card.schema.boolean_names)
        if profile.skipped:  # dates move with the calendar: their drift would always fire
            notes.append(f"not checked for drift (dates): {listed(list(profile.skipped))}")
    others = "" if rows else other_models_note(store, card.sha256, since)
    if others:
        notes.append(others)
    elif drift is not None and len(rows) < MIN_ROWS:
        notes.append(f"{len(rows)} rows in the window; drift needs at least {MIN_ROWS}")
    classes = list(card.classes)
    scores = live_scores(card.task, classes, rows)
    labelled = sum(1 for r in rows if r.actual is not None)
    return Summary(
        model_sha256=card.sha256,
        since=since,
        until=until,
        rows=len(rows),
        truncated=len(rows) >= max_rows,
        drift=drift,
        buckets=buckets(rows, since, until, card.task, classes),
        scores=scores,
        labelled=labelled,
        cv=dict(card.model.cv.mean),
        task=card.task,
        note="; ".join(notes),
        feedback_outside=not labelled and store.has_feedback(card.sha256),
    )


def other_models_note(store: LogStore, model_sha256: str, since: float) -> str:
    """What the log holds of other models from `since` on ('' if nothing): a model retrained
    into its folder has a new sha256, and its window was said to be empty, no more."""
    others = {m: n for m, n in store.counts(since).items() if m != model_sha256}
    if not others:
        return ""
    named = sorted(others, key=lambda m: (-others[m], m))
    listed = ", ".join(shown_field(m[:12]) for m in named[:3])
    if len(named) > 3:
        listed += f" and {len(named) - 3} more"
    rows = sum(others.values())
    whose = "another model" if len(named) == 1 else f"{len(named)} other models"
    return (
        f"the log holds {rows:,} row{'s' if rows != 1 else ''} of {whose} ({listed}) in this "
        f"window and none of this one ({model_sha256[:12]}): was the model retrained into this "
        "folder?"
    )
