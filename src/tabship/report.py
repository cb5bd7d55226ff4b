"""The training report: one self-contained HTML file with the leaderboard and the plots."""

from __future__ import annotations

import base64
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from tabship import metrics, plots
from tabship.artifact import library_versions
from tabship.evaluation import Evaluation, evaluate
from tabship.schema import MISSING_LEVEL
from tabship.summary import Summary, summarise
from tabship.train import TrainResult

if TYPE_CHECKING:
    from tabship.monitor.profile import ReferenceProfile

# The plot ids a reader (and the browser test) can rely on, per task.
# The explanations' global view follows (dependence on the top three features).
SUMMARY_PLOTS = ("contributions", "dependence-first", "dependence-second", "dependence-third")
REGRESSION_PLOTS = ("predicted-vs-actual", "residuals", "importance", "target", *SUMMARY_PLOTS)
CLASSIFICATION_PLOTS = (
    "confusion",
    "roc",
    "precision-recall",
    "importance",
    "target",
    *SUMMARY_PLOTS,
)


@dataclass(frozen=True)
class Plot:
    """One embedded figure: a stable id, its caption and the PNG as a data URI."""

    id: str
    title: str
    caption: str
    uri: str


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _summary_plots(summary: Summary) -> list[Plot]:
    """The explanations' global view: mean |contribution|, then the top features' dependence."""
    source = (
        f"Shapley contributions to the {summary.output} of {summary.rows} sampled training "
        "rows, against the baseline sealed in the model folder"
    )
    found = [
        Plot(
            "contributions",
            "Mean |contribution|",
            f"{source}: how far each feature moves a prediction on average.",
            _png(plots.contributions(summary.ranking, summary.output)),
        )
    ]
    for item, plot_id in zip(summary.dependence, SUMMARY_PLOTS[1:], strict=False):
        found.append(
            Plot(
                plot_id,
                f"Dependence on {item.feature}",
                f"{source}: each point is a row, its {item.feature} against what it adds.",
                _png(plots.dependence(item.feature, item.kind, item.values, item.contributions)),
            )
        )
    return found


def _plots(result: TrainResult, evaluation: Evaluation, labels: np.ndarray) -> list[Plot]:
    source = f"On {evaluation.source}."
    target = result.target
    found: list[Plot] = []
    if result.task == "regression":
        found += [
            Plot(
                "predicted-vs-actual",
                "Predicted vs actual",
                source + " Points on the line are perfect predictions.",
                _png(plots.predicted_vs_actual(evaluation.actual, evaluation.predicted, target)),
            ),
            Plot(
                "residuals",
                "Residuals",
                source + " A band around zero with no shape means the model missed no pattern.",
                _png(plots.residuals(evaluation.actual, evaluation.predicted, target)),
            ),
        ]
    else:
        assert evaluation.proba is not None
        classes = result.classes
        found += [
            Plot(
                "confusion",
                "Confusion matrix",
                source + " Rows are the true class, columns the predicted one.",
                _png(plots.confusion(evaluation.actual, evaluation.predicted, classes)),
            ),
            Plot(
                "roc",
                "ROC curve",
                source + " One curve per class against the rest (the positive class if two).",
                _png(plots.roc(evaluation.actual, evaluation.proba, classes)),
            ),
            Plot(
                "precision-recall",
                "Precision-recall curve",
                source + " Precision and recall at every probability threshold.",
                _png(plots.precision_recall(evaluation.actual, evaluation.proba, classes)),
            ),
        ]
    found += [
        Plot(
            "importance",
            "Permutation feature importance",
            f"{source} How much {evaluation.importance_metric} drops when one feature's values "
            f"are shuffled ({len(evaluation.importance)} features, mean and spread of repeats).",
            _png(plots.importance(evaluation.importance, evaluation.importance_metric)),
        ),
        Plot(
            "target",
            f"Distribution of {target}",
            f"All {len(labels):,} rows with a target.",
            _png(plots.target_distribution(labels, target, result.classes)),
        ),
    ]
    return found


def _columns(result: TrainResult, features: pd.DataFrame) -> list[dict[str, Any]]:
    summary = []
    for feature in result.schema.features:
        column = features[feature.inputs[0]]
        if feature.kind == "date":
            parts = [name.removeprefix(f"{feature.name}.") for name in feature.inputs]
            missing = int(column.isna().sum())
            seen = "expanded into " + ", ".join(part.replace("_", " ") for part in parts)
        elif feature.kind == "numeric":
            missing = int(column.isna().sum())
            seen = f"{feature.minimum:,.4g} to {feature.maximum:,.4g}"
        else:
            missing = int((column == MISSING_LEVEL).sum())
            known = [level for level in feature.levels if level != MISSING_LEVEL]
            seen = (
                f"{len(known)} levels: " + ", ".join(known[:8]) + (" …" if len(known) > 8 else "")
            )
        summary.append(
            {
                "name": feature.name,
                "kind": feature.kind,
                "dtype": feature.dtype,
                "missing": missing,
                "seen": seen,
            }
        )
    return summary


def _leaderboard(result: TrainResult) -> list[dict[str, Any]]:
    names = metrics.names(result.task)
    rows = []
    for position, row in enumerate(result.leaderboard, start=1):
        cells = [
            {
                "text": metrics.format_score(row.mean.get(m), row.std.get(m)),
                "value": row.mean.get(m) if np.isfinite(row.mean.get(m, np.nan)) else "",
            }
            for m in names
        ]
        rows.append(
            {
                "rank": position,
                "label": row.label,
                "name": row.name,
                "chosen": row.name == result.best,
                "tuned": row.tuned,
                "trials": row.trials,
                "cells": cells,
                "fit_seconds": row.fit_seconds,
                "rows": row.rows,
                "error": row.error,
            }
        )
    return rows


def _profile_charts(profile: ReferenceProfile | None) -> list[dict[str, Any]]:
    """One SVG of the sealed training distribution per profiled feature and the prediction."""
    if profile is None:
        return []
    from markupsafe import Markup

    from tabship.monitor.charts import bars
    from tabship.monitor.profile import NumericProfile

    out = []
    for item in (*profile.features, profile.prediction):
        if isinstance(item, NumericProfile):
            labels, shares = item.labels(), list(item.shares)
        else:
            labels, shares = item.bins(), list(item.reference())
        out.append(
            {
                "name": item.name,
                "kind": item.kind,
                "missing": f"{item.missing * 100:.1f} %",
                "svg": Markup(bars(f"{item.name}: training distribution", labels, shares)),  # noqa: S704 - escaped by bars()
            }
        )
    return out


def render_report(
    result: TrainResult,
    metadata: dict[str, Any],
    evaluation: Evaluation,
    summary: Summary | None = None,
    profile: ReferenceProfile | None = None,
) -> str:
    """The report's HTML for a trained result and the metadata written beside it."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    features = result.features
    labels = result.labels
    if result.holdout is not None:
        features = pd.concat([features, result.holdout.features], ignore_index=True)
        labels = np.concatenate([labels, result.holdout.labels])
    names = metrics.names(result.task)
    chosen = result.chosen
    holdout = result.holdout
    environment = Environment(
        loader=PackageLoader("tabship", "templates"), autoescape=select_autoescape(["html"])
    )
    return environment.get_template("report.html").render(
        result=result,
        metadata=metadata,
        evaluation=evaluation,
        metric_names=names,
        sort_by=result.sort_by,
        leaderboard=_leaderboard(result),
        chosen=chosen,
        comparison=[
            {
                "metric": m,
                "cv": metrics.format_score(chosen.mean.get(m), chosen.std.get(m)),
                "holdout": metrics.format_score(holdout.scores.get(m)) if holdout else None,
            }
            for m in names
        ],
        plots=_plots(result, evaluation, labels) + (_summary_plots(summary) if summary else []),
        summary=summary,
        columns=_columns(result, features),
        total_rows=len(labels),
        tuning=result.tuning,
        versions=library_versions(),
        profile=_profile_charts(profile),
        profile_skipped=profile.skipped if profile else (),
    )


def build_report(
    result: TrainResult, metadata: dict[str, Any], profile: ReferenceProfile | None = None
) -> str:
    """Evaluate the chosen model on unseen rows and render the report around it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        evaluation = evaluate(result)
    summary = summarise(result, metadata) if metadata.get("explanation") else None
    return render_report(result, metadata, evaluation, summary, profile)
