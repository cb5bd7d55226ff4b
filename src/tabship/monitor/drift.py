"""Drift of live inputs and predictions against the sealed reference profile.

PSI (population stability index) for every feature and the prediction, over the profile's own
bins. Beside it:
- categoricals: Jensen-Shannon distance (base 2, so 0 to 1), symmetric and finite even when a
  level is absent on one side, which PSI needs a floor for;
- numbers: the Wasserstein-1 distance in units of the training standard deviation, computed
  from 101 quantiles of each side (the profile keeps the training ones, no rows). It reads
  as "how far the values moved, in standard deviations", does not saturate with large samples
  the way a KS test's p-value does, and sees a shift inside one wide bin that PSI misses.
The status reads PSI against fixed thresholds, but only once the live counts differ from
training's by more than sampling noise (a chi-square test of homogeneity, `SIGNIFICANCE`):
in a small window PSI is mostly noise, and an alert there paged someone for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tabship.feature import BOOL_SPELLINGS, MISSING_LEVEL, NA_TEXTS
from tabship.monitor.handover import hand_over, pieces
from tabship.monitor.profile import (
    MISSING,
    QUANTILES,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    ReferenceProfile,
)

WARN = 0.1
ALERT = 0.25
# Fewer live rows than this give "insufficient data": PSI over ten bins is noise below it.
MIN_ROWS = 100
# Shares are floored before the logarithm: a bin empty on one side would make PSI infinite.
FLOOR = 1e-4
INSUFFICIENT = "insufficient data"
# Training rows for a profile whose shares are taken as exact (a test's, a hand-made one).
EXACT = 1e12
# A status other than ok also needs the live counts to differ from training's by more than
# sampling noise: a chi-square test of homogeneity below this p-value. Noise alone gives a
# PSI of about (bins - 1) / rows: 0.2 for a 20-level column at 100 rows, where slices of the
# training table itself came out alert in 4 windows of 6 (and warn for a number in 1 of 3).
SIGNIFICANCE = 0.001
MIN_EXPECTED = 5.0


def status_of(psi: float, p_value: float = 0.0) -> str:
    """ok below 0.1, warn to 0.25, alert from 0.25; ok whatever the PSI when the difference
    is within sampling noise (`p_value` at or above SIGNIFICANCE)."""
    if p_value >= SIGNIFICANCE:
        return "ok"
    return "alert" if psi >= ALERT else "warn" if psi >= WARN else "ok"


def homogeneity_p(training: np.ndarray, live: np.ndarray) -> float:
    """The chi-square test of homogeneity of two count vectors over the same bins: how likely
    counts this different are when both sides come from one distribution. Bins expecting
    fewer than MIN_EXPECTED rows on a side are tested as one (the test's usual condition: a
    rare level's one row weighed as much as a common level's shift)."""
    t = np.asarray(training, dtype=np.float64)
    v = np.asarray(live, dtype=np.float64)
    used = (t + v) > 0
    t, v = t[used], v[used]
    if t.sum() <= 0 or v.sum() <= 0:
        return 1.0
    share = v.sum() / (t.sum() + v.sum())
    small = (t + v) * min(share, 1 - share) < MIN_EXPECTED
    if small.any():
        t = np.append(t[~small], t[small].sum())
        v = np.append(v[~small], v[small].sum())
    if len(t) < 2:
        return 1.0
    total = t + v
    expected_t, expected_v = total * (1 - share), total * share
    statistic = np.sum((t - expected_t) ** 2 / expected_t + (v - expected_v) ** 2 / expected_v)
    return chi2_survival(len(t) - 1, float(statistic))


def chi2_survival(dof: int, x: float) -> float:
    """P(X >= x) for a chi-square variable of `dof` degrees of freedom: the regularized upper
    incomplete gamma function Q(dof / 2, x / 2), summed in closed form (its terms in logs, so
    a thousand degrees of freedom do not underflow). Here, not SciPy's `chdtrc`: a served
    model's process imports no SciPy (0.17 s and 27 MB of a pod's start, here, for one
    function)."""
    if not x > 0:  # 0, or NaN: no evidence of a difference
        return 1.0
    y, log_y = x / 2, math.log(x / 2)
    if dof % 2 == 0:  # Q(n, y) = sum of e^-y y^i / i! for i < n
        logs = [i * log_y - y - math.lgamma(i + 1) for i in range(dof // 2)]
        return min(1.0, _sum_of_exps(logs))
    # Q(n + 1/2, y) = erfc(sqrt(y)) + sum of e^-y y^(i - 1/2) / Gamma(i + 1/2), i = 1..n
    logs = [(i - 0.5) * log_y - y - math.lgamma(i + 0.5) for i in range(1, (dof - 1) // 2 + 1)]
    return min(1.0, math.erfc(math.sqrt(y)) + (_sum_of_exps(logs) if logs else 0.0))


def _sum_of_exps(logs: list[float]) -> float:
    top = max(logs)
    return math.exp(top) * sum(math.exp(value - top) for value in logs)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), FLOOR, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of two share vectors: 0 identical, 1 disjoint."""
    p = np.asarray(expected, dtype=np.float64)
    q = np.asarray(actual, dtype=np.float64)
    p, q = p / max(p.sum(), 1e-300), q / max(q.sum(), 1e-300)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def wasserstein_std(reference: NumericProfile, values: np.ndarray) -> float | None:
    """W1 between the training and live distributions, divided by the training std."""
    if not reference.quantiles or not len(values):
        return None
    grid = np.linspace(0, 1, QUANTILES)
    live = np.quantile(values, grid)
    distance = float(np.trapezoid(np.abs(live - np.asarray(reference.quantiles)), grid))
    scale = reference.std or 0.0
    return distance / scale if scale > 0 else distance


@dataclass(frozen=True)
class Drift:
    """One feature's (or the prediction's) drift: statistics, status and both distributions."""

    name: str
    kind: str
    rows: int
    status: str
    statistics: dict[str, float] = field(default_factory=dict)
    bins: list[str] = field(default_factory=list)
    training: list[float] = field(default_factory=list)
    live: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (bins included, so a reader can redraw both distributions)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "status": self.status,
            "statistics": self.statistics,
            "bins": self.bins,
            "training": self.training,
            "live": self.live,
        }


def _numbers(values: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Finite numbers among `values` and the count of missing ones (None, NaN, text)."""
    out = np.empty(len(values), dtype=np.float64)
    for start, piece in pieces(values):
        for i, value in enumerate(piece, start):
            out[i] = (
                float(value)
                if isinstance(value, int | float) and not isinstance(value, bool)
                else math.nan
            )
    present = out[np.isfinite(out)]
    return present, len(values) - len(present)


def numeric_drift(
    reference: NumericProfile, values: Sequence[Any], training_rows: float = EXACT
) -> Drift:
    """PSI over the training bins (missing as its own bin) and the Wasserstein distance;
    `training_rows`, the rows the profile's shares came from, for the status's test."""
    present, missing = _numbers(values)
    bins = [*reference.labels(), MISSING]
    training = [s * (1 - reference.missing) for s in reference.shares] + [reference.missing]
    rows = len(values)
    if rows < MIN_ROWS:
        return Drift(reference.name, "numeric", rows, INSUFFICIENT, {}, bins, training, [])
    counts = np.append(reference.bin_counts(present), missing)
    live = counts / rows
    value = psi(np.array(training), live)
    statistics = {"psi": value}
    moved = wasserstein_std(reference, present)
    if moved is not None:
        statistics["wasserstein_std"] = moved
    statistics["p_value"] = homogeneity_p(np.array(training) * training_rows, counts)
    status = status_of(value, statistics["p_value"])
    return Drift(reference.name, "numeric", rows, status, statistics, bins, training, live.tolist())


def categorical_drift(
    reference: CategoricalProfile,
    values: Sequence[Any],
    training_rows: float = EXACT,
    boolean: bool = False,
) -> Drift:
    """PSI and Jensen-Shannon distance over the training levels, other and missing;
    `boolean`: a boolean feature's, which takes `true` for its level `True`."""
    bins = reference.bins()
    training = reference.reference().tolist()
    rows = len(values)
    if rows < MIN_ROWS:
        return Drift(reference.name, "categorical", rows, INSUFFICIENT, {}, bins, training, [])
    index = {level: i for i, level in enumerate(reference.levels)}
    other, missing = len(reference.levels), len(reference.levels) + 1
    counts = np.zeros(len(bins), dtype=np.float64)
    # Each value as the model read it (feature.read): `true` is a boolean's `True` (a text
    # feature's `true` is a level of its own), and an `NA` that is not a level is missing;
    # the log keeps the request's own spelling.
    for text in NA_TEXTS | {MISSING_LEVEL}:
        index.setdefault(text, missing)
    for spelling, level in BOOL_SPELLINGS.items() if boolean else ():
        if level in index:
            index.setdefault(spelling, index[level])
    for _, piece in pieces(values):
        for value in piece:
            if value is None:
                counts[missing] += 1
            else:
                counts[index.get(value if isinstance(value, str) else str(value), other)] += 1
    live = counts / rows
    value = psi(np.array(training), live)
    statistics = {"psi": value, "jensen_shannon": jensen_shannon(np.array(training), live)}
    statistics["p_value"] = homogeneity_p(np.array(training) * training_rows, counts)
    return Drift(
        reference.name,
        "categorical",
        rows,
        status_of(value, statistics["p_value"]),
        statistics,
        bins,
        training,
        live.tolist(),
    )


def drift_of(
    reference: FeatureProfile,
    values: Sequence[Any],
    training_rows: float = EXACT,
    boolean: bool = False,
) -> Drift:
    """Drift of one column of live values against its profile."""
    if isinstance(reference, NumericProfile):
        return numeric_drift(reference, values, training_rows)
    return categorical_drift(reference, values, training_rows, boolean)


@dataclass(frozen=True)
class DriftReport:
    """Every profiled feature's drift and the prediction's, over one window of live rows."""

    rows: int
    features: list[Drift]
    prediction: Drift

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "rows": self.rows,
            "features": [d.to_dict() for d in self.features],
            "prediction": self.prediction.to_dict(),
        }


def compare(
    profile: ReferenceProfile,
    records: Sequence[Mapping[str, Any]],
    predictions: Sequence[Any],
    booleans: Collection[str] = (),
) -> DriftReport:
    """Drift of logged input records and their predictions against the training profile;
    `booleans`, the names of the boolean features (the card's schema says)."""
    columns = {f.name: [record.get(f.name) for record in records] for f in profile.features}
    return compare_columns(profile, columns, predictions, booleans)


def compare_columns(
    profile: ReferenceProfile,
    columns: Mapping[str, Sequence[Any]],
    predictions: Sequence[Any],
    booleans: Collection[str] = (),
) -> DriftReport:
    """Drift of live values given by feature name (and their predictions) against the profile."""
    features = []
    for reference in profile.features:
        values = columns[reference.name]
        features.append(drift_of(reference, values, profile.rows, reference.name in booleans))
        hand_over()  # in a server's writer thread: let the event loop in between features
    predicted = drift_of(profile.prediction, list(predictions), profile.rows)
    return DriftReport(len(predictions), features, predicted)
