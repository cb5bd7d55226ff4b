"""The form's charts as plain geometry the template draws as inline SVG (no script, no CDN).

Pure functions: numbers in, rows and points out. The template escapes every text; the
coordinates are numbers computed here. The contribution chart is a waterfall from the base
value to the prediction, biggest moves first; each what-if is a line over the feature's
training range (or a bar per level) with the record's own value marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The waterfall's bars live in a 0..100 wide box; each row is its own small SVG.
SPAN = 100.0
# What-if line charts: the plot box inside a 320 x 150 view.
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 320.0, 150.0, 8.0, 312.0, 12.0, 122.0
MAX_ROWS = 20


@dataclass(frozen=True)
class Bar:
    """One row of the waterfall: a label, where its bar starts and ends, and its signed text."""

    label: str
    start: float
    width: float
    positive: bool
    text: str


def amount(value: float, probability: bool, signed: bool = False) -> str:
    """A value in the target's unit (probabilities as percent)."""
    if probability:
        return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"
    if value != 0 and abs(value) < 0.01:  # a target in millionths is not "0.00"
        return f"{value:+.3g}" if signed else f"{value:.3g}"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def waterfall(
    labels: list[str], contributions: list[float], base: float, probability: bool
) -> dict[str, Any]:
    """Rows from the base to the prediction, sorted by size; small ones folded into one row."""
    ranked = sorted(zip(labels, contributions, strict=True), key=lambda item: -abs(item[1]))
    if len(ranked) > MAX_ROWS:
        rest = sum(value for _, value in ranked[MAX_ROWS - 1 :])
        ranked = [*ranked[: MAX_ROWS - 1], (f"{len(ranked) - MAX_ROWS + 1} other features", rest)]
    running = [base]
    for _, value in ranked:
        running.append(running[-1] + value)
    low, high = min(running), max(running)
    scale = SPAN / (high - low) if high > low else 0.0
    bars = []
    for (label, value), before in zip(ranked, running, strict=False):
        after = before + value
        start = (min(before, after) - low) * scale
        bars.append(
            Bar(
                label=label,
                start=round(start, 3),
                width=round(max(abs(value) * scale, 0.4), 3),
                positive=value >= 0,
                text=amount(value, probability, signed=True),
            )
        )
    return {
        "bars": bars,
        "base": amount(base, probability),
        "prediction": amount(running[-1], probability),
        "base_at": round((base - low) * scale, 3),
        "prediction_at": round((running[-1] - low) * scale, 3),
    }


def _ticks(low: float, high: float) -> tuple[float, float]:
    if high > low:
        pad = (high - low) * 0.05
        return low - pad, high + pad
    return low - 1.0, high + 1.0


def line(
    values: list[float],
    outputs: list[float],
    current: float | None,
    current_output: float,
) -> dict[str, Any]:
    """A what-if line: SVG points over the grid, and the record's own point."""
    x_low, x_high = values[0], values[-1]
    every = [*outputs, current_output]
    y_low, y_high = _ticks(min(every), max(every))
    x_span = (x_high - x_low) or 1.0

    def x_at(value: float) -> float:
        clamped = min(max(value, x_low), x_high)
        return round(LEFT + (clamped - x_low) / x_span * (RIGHT - LEFT), 2)

    def y_at(value: float) -> float:
        return round(BOTTOM - (value - y_low) / (y_high - y_low) * (BOTTOM - TOP), 2)

    points = " ".join(f"{x_at(v)},{y_at(o)}" for v, o in zip(values, outputs, strict=True))
    marker = None
    if current is not None:
        marker = {
            "x": x_at(current),
            "y": y_at(current_output),
            "outside": not x_low <= current <= x_high,
        }
    return {"points": points, "marker": marker, "bottom": BOTTOM, "top": TOP}


def levels(names: list[str], outputs: list[float], current: str) -> list[dict[str, Any]]:
    """One bar per level. Predictions that are never negative (an amount, a probability) are
    measured from zero, so a bar twice as long is a prediction twice as large: measured from
    below the least, 12,000 against 12,400 drew one bar five times the other. Others are
    measured from a quarter of their spread below the least."""
    low, high = min(outputs), max(outputs)
    if low >= 0:
        floor = 0.0
    else:
        floor = low - (high - low) * 0.25 if high > low else low - abs(low) * 0.25 - 1e-12
    span = (high - floor) or 1.0
    return [
        {
            "name": name,
            "width": round(max((value - floor) / span * SPAN, 0.5), 3),
            "current": name == current,
            "value": value,
        }
        for name, value in zip(names, outputs, strict=True)
    ]
