"""The report's figures as PNG bytes, drawn with matplotlib's file-only backend."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn import metrics as skm

from tabship.evaluation import Importance

WIDTH, HEIGHT, DPI = 6.0, 4.2, 100
ACCENT = "#1f5fae"
MUTED = "#9aa7b8"
# Past these many classes a confusion matrix names every n-th class and shows no counts,
# and the ROC and precision-recall plots draw the commonest classes only.
MAX_TICKS = 30
MAX_COUNTED = 15
MAX_CURVES = 10


@contextmanager
def _figure(title: str, xlabel: str, ylabel: str) -> Iterator[tuple[Any, Any, io.BytesIO]]:
    import matplotlib

    matplotlib.use("Agg")  # no display here or on a server; only files are drawn
    from matplotlib import pyplot

    # Every text drawn is the user's (column names, labels, categories) and is drawn as
    # written: matplotlib would read `$...$` in it as a formula, and fail on most of them.
    with matplotlib.rc_context({"text.parse_math": False}):
        figure, axes = pyplot.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)
        buffer = io.BytesIO()
        try:
            axes.set_title(title)
            axes.set_xlabel(xlabel)
            axes.set_ylabel(ylabel)
            axes.grid(alpha=0.3)
            yield figure, axes, buffer
            with warnings.catch_warnings():  # long names: the plot is drawn as it fits
                warnings.filterwarnings("ignore", "Tight layout not applied")
                # A label in a script the bundled font lacks (日本) is drawn as boxes; the
                # eight warnings per plot on stderr told the user nothing more.
                warnings.filterwarnings("ignore", "Glyph .* missing from")
                figure.tight_layout()
                figure.savefig(buffer, format="png")
        finally:
            pyplot.close(figure)


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, target: str) -> bytes:
    """Scatter of predictions against truth with the identity line."""
    with _figure(f"Predicted vs actual {target}", f"actual {target}", "predicted") as (
        _,
        axes,
        buffer,
    ):
        axes.scatter(actual, predicted, s=8, alpha=0.5, color=ACCENT, linewidths=0)
        low = float(min(actual.min(), predicted.min()))
        high = float(max(actual.max(), predicted.max()))
        axes.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
        axes.legend(loc="upper left")
    return buffer.getvalue()


def residuals(actual: np.ndarray, predicted: np.ndarray, target: str) -> bytes:
    """Residuals (actual - predicted) against the prediction, with the zero line."""
    with _figure("Residuals", f"predicted {target}", "actual - predicted") as (_, axes, buffer):
        axes.scatter(predicted, actual - predicted, s=8, alpha=0.5, color=ACCENT, linewidths=0)
        axes.axhline(0.0, color="black", linewidth=1)
    return buffer.getvalue()


def confusion(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> bytes:
    """Confusion matrix with counts in the cells."""
    matrix = skm.confusion_matrix(actual, predicted, labels=list(range(len(classes))))
    with _figure("Confusion matrix", "predicted class", "actual class") as (figure, axes, buffer):
        axes.grid(False)
        image = axes.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=axes)
        # Many classes: every label still named, smaller; counts only where they fit.
        step = max(1, len(classes) // MAX_TICKS)
        ticks = range(0, len(classes), step)
        size = 10 if len(classes) <= 12 else 6
        axes.set_xticks(ticks, classes[::step], rotation=45, ha="right", fontsize=size)
        axes.set_yticks(ticks, classes[::step], fontsize=size)
        if len(classes) <= MAX_COUNTED:
            threshold = matrix.max() / 2
            for (row, column), count in np.ndenumerate(matrix):
                colour = "white" if count > threshold else "black"
                axes.text(column, row, str(count), ha="center", va="center", color=colour)
    return buffer.getvalue()


def _one_vs_rest(
    actual: np.ndarray, proba: np.ndarray, classes: list[str]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, is-this-class, score) per curve: the positive class alone when there are two."""
    if len(classes) == 2:
        return [(classes[1], actual == 1, proba[:, 1])]
    # A legend of sixty curves covered the plot: the commonest classes, said in the title.
    common = np.argsort(-np.bincount(actual, minlength=len(classes)), kind="stable")[:MAX_CURVES]
    return [(classes[index], actual == index, proba[:, index]) for index in sorted(common)]


def _curves_title(name: str, classes: list[str]) -> str:
    if len(classes) <= MAX_CURVES:
        return name
    return f"{name} ({MAX_CURVES} commonest of {len(classes)} classes)"


def roc(actual: np.ndarray, proba: np.ndarray, classes: list[str]) -> bytes:
    """ROC curve per class (one for binary), with its AUC in the legend."""
    title = _curves_title("ROC curve", classes)
    with _figure(title, "false positive rate", "true positive rate") as (_, axes, buffer):
        for name, truth, score in _one_vs_rest(actual, proba, classes):
            if truth.all() or not truth.any():
                continue
            fpr, tpr, _ = skm.roc_curve(truth, score)
            axes.plot(fpr, tpr, label=f"{name} (AUC {skm.auc(fpr, tpr):.3f})")
        axes.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="chance")
        axes.legend(loc="lower right", fontsize="small")
    return buffer.getvalue()


def precision_recall(actual: np.ndarray, proba: np.ndarray, classes: list[str]) -> bytes:
    """Precision-recall curve per class (one for binary), with average precision."""
    title = _curves_title("Precision-recall curve", classes)
    with _figure(title, "recall", "precision") as (_, axes, buffer):
        for name, truth, score in _one_vs_rest(actual, proba, classes):
            if not truth.any():
                continue
            precision, recall, _ = skm.precision_recall_curve(truth, score)
            average = skm.average_precision_score(truth, score)
            axes.plot(recall, precision, label=f"{name} (AP {average:.3f})")
        axes.set_ylim(0.0, 1.05)
        axes.legend(loc="lower left", fontsize="small")
    return buffer.getvalue()


def importance(items: list[Importance], metric: str) -> bytes:
    """Horizontal bars: drop in the metric when each feature is shuffled, biggest on top."""
    shown = list(reversed(items[:20]))
    with _figure("Permutation feature importance", f"drop in {metric} when shuffled", "") as (
        _,
        axes,
        buffer,
    ):
        axes.barh(
            [item.feature for item in shown],
            [item.mean for item in shown],
            xerr=[item.std for item in shown],
            color=ACCENT,
        )
        axes.axvline(0.0, color="black", linewidth=1)
    return buffer.getvalue()


def target_distribution(labels: np.ndarray, target: str, classes: list[str]) -> bytes:
    """Histogram of a numeric target, or the count of each class."""
    with _figure(f"Distribution of {target}", target, "rows") as (_, axes, buffer):
        if classes:
            counts = np.bincount(labels, minlength=len(classes))
            axes.bar(classes, counts, color=ACCENT)
            axes.tick_params(axis="x", labelrotation=45)
        else:
            axes.hist(labels, bins=40, color=ACCENT)
    return buffer.getvalue()


def contributions(ranking: list[tuple[str, float]], output: str) -> bytes:
    """Horizontal bars: mean |Shapley contribution| per feature, biggest on top."""
    shown = list(reversed(ranking[:20]))
    with _figure("Mean |contribution|", f"mean |contribution| to {output}", "") as (
        _,
        axes,
        buffer,
    ):
        axes.barh([name for name, _ in shown], [value for _, value in shown], color=ACCENT)
    return buffer.getvalue()


def dependence(feature: str, kind: str, values: np.ndarray, found: np.ndarray) -> bytes:
    """A feature's value against its contribution, one point per explained row."""
    with _figure(f"Dependence: {feature}", feature, "contribution") as (_, axes, buffer):
        if kind == "categorical":
            levels = sorted({str(v) for v in values})[:20]
            position = {level: index for index, level in enumerate(levels)}
            keep = np.array([str(v) in position for v in values])
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, int(keep.sum()))
            x = np.array([position[str(v)] for v in values[keep]]) + jitter
            axes.scatter(x, found[keep], s=10, alpha=0.6, color=ACCENT, linewidths=0)
            axes.set_xticks(range(len(levels)), [level or "(empty)" for level in levels])
            axes.tick_params(axis="x", labelrotation=45)
        else:
            axes.scatter(values.astype(float), found, s=10, alpha=0.6, color=ACCENT, linewidths=0)
        axes.axhline(0.0, color="black", linewidth=1)
    return buffer.getvalue()
