"""The library functions behind each CLI command: train to a folder, score a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tabship import datasets
from tabship.artifact import (
    ONNX_FILE,
    PIPELINE_FILE,
    PROFILE_FILE,
    REPORT_FILE,
    Artifact,
    check_output_free,
    write_artifact,
)
from tabship.config import Settings
from tabship.errors import ConfigError
from tabship.train import Progress, TrainOptions, TrainResult


@dataclass(frozen=True)
class TrainedModel:
    """The outcome of `tabship train`: the result, where it was saved and which engine serves."""

    result: TrainResult
    artifact: Artifact
    engine: str


def _json_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters that JSON can hold (nested objects are named, not dumped)."""
    out: dict[str, Any] = {}
    for key, value in sorted(estimator.get_params(deep=False).items()):
        if isinstance(value, str) and value == "deprecated":
            continue  # scikit-learn's placeholder for a parameter on its way out
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            out[key] = None  # JSON has no NaN; XGBoost's `missing` marker is one
        elif value is None or isinstance(value, bool | int | float | str):
            out[key] = value
        else:
            out[key] = repr(value)
    return out


def _holdout(result: TrainResult) -> dict[str, Any] | None:
    """The holdout's size and the chosen model's scores on it, or None when none was kept."""
    if result.holdout is None:
        return None
    return {
        "fraction": result.holdout.fraction,
        "rows": len(result.holdout.labels),
        "seed": result.seed,
        "scores": {k: (v if np.isfinite(v) else None) for k, v in result.holdout.scores.items()},
    }


def train_model(
    data: str,
    options: TrainOptions,
    output: Path,
    *,
    target_label: str | None = None,
    unit: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    settings: Settings | None = None,
    keep_background: int | None = None,
    builtin: bool = False,
) -> TrainedModel:
    """Load a table (file or built-in name), train, export ONNX if it matches, write the folder.

    `keep_background` seals that many sampled training rows as the explanations' baseline
    instead of k-means centroids.
    """
    import skops.io
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from tabship.background import build_background
    from tabship.export import export
    from tabship.monitor.profile import render_profile, training_profile
    from tabship.report import build_report
    from tabship.train import train

    for value, flag in ((target_label, "--target-label"), (unit, "--unit")):
        if value and not value.isprintable():  # before the training, not at `build`
            raise ConfigError(
                f"{flag} {value!r} holds a newline or control character; give one line of text"
            )
    check_output_free(output, force)
    path = datasets.fetch(data, settings) if builtin else datasets.resolve(data, settings)
    frame = datasets.read_table(path, expected=[options.target])
    written = datasets.written_column(path, options.target, len(frame))
    result = train(frame, options, progress, written)
    if progress:
        progress("ONNX export and parity check", 1, 1)
    with threadpool_limits(limits=1, user_api="openmp"):  # see train(): no spin-waiting
        onnx_model, parity = export(result.pipeline, result.schema, result.task, result.features)
    files = {PIPELINE_FILE: skops.io.dumps(result.pipeline)}
    if onnx_model is not None:
        files[ONNX_FILE] = onnx_model
    engine = "onnx" if onnx_model is not None else "sklearn"
    best = result.chosen
    row = best.to_dict()  # JSON-ready: a metric undefined for this table is null, not NaN
    metadata = {
        "task": result.task,
        "target": result.target,
        "target_label": target_label or result.target,
        "unit": unit or "",
        "classes": result.classes,
        "label_type": result.label_type,
        "schema": result.schema.to_dict(),
        "ignored_columns": sorted(result.schema.ignored),
        # A CSV's decimal comma and thousands dot, for predict files whose numbers do not say.
        "csv_number_marks": list(frame.attrs.get(datasets.MARKS, (".", None))),
        "model": {
            "name": best.name,
            "label": best.label,
            "params": _json_params(result.pipeline.named_steps["model"]),
            "candidate": best.candidate or best.name,
            "tuned": best.tuned,
            "expand": best.expand,
            # What the fitted model really does: k-NN and naive Bayes take no weights.
            "class_weight": result.pipeline.named_steps["model"].get_params().get("class_weight"),
            "cv": {
                "folds": result.folds,
                "seed": result.seed,
                "mean": row["mean"],
                "std": row["std"],
            },
            "holdout": _holdout(result),
        },
        "tuning": result.tuning.to_dict() if result.tuning else None,
        "engine": engine,
        "onnx": parity.to_dict(),
        "leaderboard": [row.to_dict() for row in result.leaderboard],
        "sort_by": result.sort_by,
        "training": {
            "source": path.name,
            "sha256": datasets.file_sha256(path),
            "rows": len(result.features),
            "seconds": round(result.train_seconds, 3),
            "time_budget_seconds": options.time_budget,
            "warnings": result.warnings,
        },
        # Explanations' baseline and what-if ranges: its own entry, sealed with the card.
        "explanation": build_background(
            result.features, result.schema, keep_background, result.seed
        ).to_dict(),
    }
    if progress:
        progress("report", 1, 1)
    with threadpool_limits(limits=1, user_api="openmp"):
        profile = training_profile(result)
        files[PROFILE_FILE] = render_profile(profile)
        files[REPORT_FILE] = build_report(result, metadata, profile).encode("utf-8")
    write_artifact(output, metadata, files, force=force)
    return TrainedModel(result=result, artifact=Artifact.open(output), engine=engine)
