"""The monitor's renderings: the /monitor page (also `tabship monitor --format html`) and a table.

The HTML holds its charts as inline SVG and its style inline, so the page served under the
server's CSP and the file written by the CLI both work with no network.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup

from tabship.card import ModelCard
from tabship.monitor import charts
from tabship.monitor.drift import Drift
from tabship.monitor.summary import Summary

_SCORE_NAMES = {
    "regression": ("mae", "rmse", "r2"),
    "classification": ("accuracy", "f1", "auc", "log_loss"),
}


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


# The model's answer in the drift table: a feature may be called `prediction` too.
OUTPUT_LABEL = "(the model's prediction)"


def _feature_view(item: Drift, output: bool = False) -> dict[str, Any]:
    live = item.live if item.live else None
    label = OUTPUT_LABEL if output else item.name
    title = f"{label}: training and live distributions"
    return {
        "name": item.name,
        "label": label,
        "output": output,
        "kind": item.kind,
        "rows": item.rows,
        "status": item.status,
        "statistics": {k: _number(v) for k, v in item.statistics.items()},
        "svg": Markup(charts.bars(title, item.bins, item.training, live)),  # noqa: S704 - escaped by charts
    }


def _traffic_charts(summary: Summary) -> list[Markup]:
    times = [b.label for b in summary.buckets]
    out = [
        charts.line(
            "Requests and predictions per bucket",
            times,
            [
                ("predictions", [float(b.predictions) for b in summary.buckets]),
                ("requests", [float(b.requests) for b in summary.buckets]),
                ("with warnings", [float(b.warned) for b in summary.buckets]),
            ],
        ),
        charts.line(
            "Latency (ms)",
            times,
            [
                ("p50 ms", [b.latency_p50 for b in summary.buckets]),
                ("p95 ms", [b.latency_p95 for b in summary.buckets]),
            ],
        ),
    ]
    for name in _SCORE_NAMES[summary.task]:
        points = [b.scores.get(name) for b in summary.buckets]
        if any(p is not None for p in points):
            out.append(
                charts.line(
                    f"Live {name} (dashed: CV)", times, [(name, points)], summary.cv.get(name)
                )
            )
    return [Markup(svg) for svg in out]  # noqa: S704 - escaped by charts


def render_monitor(
    summary: Summary, card: ModelCard, title: str, window: str, notice: str = ""
) -> str:
    """The whole monitor page; `notice` says what of the request was not taken."""
    from tabship.serve.pages import render

    drift = summary.drift
    scores = [
        {
            "metric": name,
            "live": _number(summary.scores.get(name)),
            "cv": _number(summary.cv.get(name)),
        }
        for name in _SCORE_NAMES[summary.task]
    ]
    return render(
        "monitor.html",
        title=title,
        window=window,
        notice=notice,
        summary=summary,
        card=card,
        features=[_feature_view(d) for d in drift.features] if drift else [],
        prediction=_feature_view(drift.prediction, output=True) if drift else None,
        traffic=_traffic_charts(summary) if summary.buckets else [],
        scores=scores,
        no_feedback=no_feedback(summary),
    )


def render_table(summary: Summary) -> str:
    """The drift table and live scores as plain text for a terminal."""
    lines = [
        f"model {summary.model_sha256[:12]}  rows {summary.rows:,}  "
        f"labelled {summary.labelled:,}{'  (window truncated)' if summary.truncated else ''}"
    ]
    if summary.note:
        lines.append(f"note: {summary.note}")
    if summary.drift:
        lines.append(f"{'feature':<24} {'kind':<12} {'status':<18} statistics")
        output = summary.drift.prediction
        for item in [*summary.drift.features, output]:
            stats = "  ".join(f"{k} {_number(v)}" for k, v in item.statistics.items())
            name = OUTPUT_LABEL if item is output else _cell(item.name)
            lines.append(f"{name:<24} {item.kind:<12} {item.status:<18} {stats}")
    if summary.scores:
        lines.append("live scores (CV at training):")
        for name in _SCORE_NAMES[summary.task]:
            live, cv = summary.scores.get(name), summary.cv.get(name)
            lines.append(f"  {name:<10} {_number(live):>10}   ({_number(cv)})")
    elif not summary.labelled:
        lines.append(f"live scores: {no_feedback(summary)}")
    return "\n".join(lines) + "\n"


def no_feedback(summary: Summary) -> str:
    """Why a window has no live scores: no feedback in it, or none yet at all."""
    if summary.feedback_outside:
        return (
            "no feedback in this window (the log holds feedback for this model outside it; "
            "widen the window)"
        )
    return 'no feedback yet: POST /v1/feedback with {"id": ..., "actual": ...}'


def _cell(text: str) -> str:
    """A user's column name on one terminal line: control characters shown escaped."""
    shown = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return shown if len(shown) <= 24 else shown[:23] + "~"
