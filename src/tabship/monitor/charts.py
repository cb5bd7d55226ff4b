"""Charts as server-rendered SVG: no script, no CDN, so pages work offline under a strict CSP.

Every label is a user's string (a level, a column name): it is escaped here, where it enters
the SVG text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

TRAINING = "#8a94a6"
LIVE = "#1f6feb"
WIDTH = 420
BAR_HEIGHT = 14
LABEL_WIDTH = 130
MAX_LABEL = 20


def _short(text: str) -> str:
    """A label that fits its column (wide letters too, mostly); spaces at its ends shown by
    quotes, so `a`, `a ` and ` a` are three labels."""
    if text != text.strip():
        text = f'"{text}"'
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def bars(
    title: str,
    labels: Sequence[str],
    training: Sequence[float],
    live: Sequence[float] | None = None,
) -> str:
    """Horizontal bars of shares per bin: training grey, live blue beside it when given."""
    per_row = BAR_HEIGHT * (2 if live is not None else 1) + 6
    height = 24 + per_row * len(labels) + 18
    span = WIDTH - LABEL_WIDTH - 60
    top = max([*training, *(live or []), 1e-9])
    parts = [
        f'<svg class="chart" role="img" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for row, label in enumerate(labels):
        y = 20 + row * per_row
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT - 3}" text-anchor="end" '
            f'font-size="11"><title>{escape(str(label))}</title>'
            f"{escape(_short(str(label)))}</text>"
        )
        series = [(training[row], TRAINING, "training")]
        if live is not None:
            series.append((live[row], LIVE, "live"))
        for offset, (share, colour, name) in enumerate(series):
            width = span * share / top
            by = y + offset * BAR_HEIGHT
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{by}" width="{width:.1f}" height="{BAR_HEIGHT - 2}" '
                f'fill="{colour}"><title>{name} {share * 100:.1f} %</title></rect>'
                f'<text x="{LABEL_WIDTH + width + 4:.1f}" y="{by + BAR_HEIGHT - 3}" '
                f'font-size="10">{share * 100:.1f}%</text>'
            )
    legend_y = height - 6
    parts.append(
        f'<rect x="{LABEL_WIDTH}" y="{legend_y - 9}" width="10" height="10" fill="{TRAINING}"/>'
        f'<text x="{LABEL_WIDTH + 14}" y="{legend_y}" font-size="10">training</text>'
    )
    if live is not None:
        parts.append(
            f'<rect x="{LABEL_WIDTH + 80}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{LIVE}"/><text x="{LABEL_WIDTH + 94}" y="{legend_y}" font-size="10">live</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def line(
    title: str,
    times: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    reference: float | None = None,
) -> str:
    """A small line chart over time buckets; `reference` draws a dashed level (a CV score)."""
    width, height, left, bottom = 560, 170, 56, 34
    values = [v for _, points in series for v in points if v is not None and math.isfinite(v)]
    if reference is not None:
        values.append(reference)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 1.0, high + 1.0
    count = max(len(times), 2)
    plot_w, plot_h = width - left - 10, height - bottom - 14

    def xy(index: int, value: float) -> tuple[float, float]:
        x = left + plot_w * index / (count - 1)
        return x, 14 + plot_h * (1 - (value - low) / (high - low))

    parts = [
        f'<svg class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{14 + plot_h}" x2="{left + plot_w}" y2="{14 + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="18" text-anchor="end" font-size="10">{high:.4g}</text>',
        f'<text x="{left - 4}" y="{14 + plot_h}" text-anchor="end" font-size="10">{low:.4g}</text>',
    ]
    if times:
        parts.append(
            f'<text x="{left}" y="{height - 18}" font-size="10">{escape(times[0])}</text>'
            f'<text x="{left + plot_w}" y="{height - 18}" text-anchor="end" font-size="10">'
            f"{escape(times[-1])}</text>"
        )
    if reference is not None:
        _, ry = xy(0, reference)
        parts.append(
            f'<line x1="{left}" y1="{ry:.1f}" x2="{left + plot_w}" y2="{ry:.1f}" '
            f'stroke="{TRAINING}" stroke-dasharray="4 3"><title>training CV '
            f"{reference:.4g}</title></line>"
        )
    colours = (LIVE, "#d97706", "#15803d")
    for number, (name, points) in enumerate(series):
        colour = colours[number % len(colours)]
        for run in _runs(points, xy):
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
                )
            parts.extend(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in run
            )
        parts.append(
            f'<text x="{left + 4 + 110 * number}" y="{height - 4}" font-size="10" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _runs(
    points: Sequence[float | None], xy: Callable[[int, float], tuple[float, float]]
) -> list[list[tuple[float, float]]]:
    """The points as runs of buckets with a value, one line each: a bucket without one (no
    traffic, no feedback) is a gap, not a straight line from the point before to the next."""
    runs: list[list[tuple[float, float]]] = [[]]
    for index, value in enumerate(points):
        if value is not None and math.isfinite(float(value)):
            runs[-1].append(xy(index, value))
        elif runs[-1]:
            runs.append([])
    return runs
