"""The comparison: every candidate by CV, raced on growing subsamples when the table is large."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tabship.candidates import Candidate
from tabship.cluster import scattered
from tabship.crossval import CrossValidator, Row, rank

# Below this many rows every candidate is cross-validated on every row: it is cheap enough.
RACE_MIN_ROWS = 10_000
# The first rung of a race; smaller samples rank candidates too noisily to drop any.
FIRST_RUNG_ROWS = 3_000
# Each rung has this many times the rows of the one before and keeps this share of candidates.
RUNG_GROWTH = 3
KEEP_SHARE = 1 / 3

# The families that cost the most to fit, run last on the first rung (later rungs go by the
# seconds each took on the rung before): under a time budget a forest started just before
# the deadline ran for 20 s and kept the boosters, ten times better and faster, from running.
COSTLY = frozenset(
    {"random_forest", "extra_trees", "gradient_boosting", "gradient_boosting_huber", "knn"}
)

Clock = Callable[[], float]
Progress = Callable[[str, int, int], None]


def rungs(rows: int) -> list[int]:
    """Row counts of the race's rungs, smallest first, the last one the whole table."""
    if rows <= RACE_MIN_ROWS:
        return [rows]
    sizes = [rows]
    while sizes[-1] // RUNG_GROWTH >= FIRST_RUNG_ROWS:
        sizes.append(sizes[-1] // RUNG_GROWTH)
    return sizes[::-1]


@dataclass
class Comparison:
    """Every candidate's best-informed row, the seconds each took, and what was skipped."""

    rows: list[Row]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def compare(
    validator: CrossValidator,
    pool: list[Candidate],
    sort_by: str,
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
    clock: Clock = time.monotonic,
) -> Comparison:
    """Score the pool rung by rung, keeping the best third at each; one row per candidate.

    A candidate's row is from the largest rung it reached, so the leaderboard says on how many
    rows each was judged. Each rung runs the cheapest first; under a deadline a candidate
    starts only if the time left covers what it is expected to take (`_expected`), so none
    runs far past the budget (the first always starts, so there is a model to ship).
    """
    sizes = rungs(len(validator.features))
    latest: dict[str, Row] = {}
    result = Comparison(rows=[])
    alive = list(pool)
    skipped: list[str] = []
    judged: list[str] = []  # past the deadline with a row from a smaller rung
    steps = sum(len(pool) for _ in sizes)
    done = 0
    for number, size in enumerate(sizes):
        if number and len(alive) == 1 and size != sizes[-1]:
            continue  # one survivor: go straight to the whole table
        judge = validator if size == len(validator.features) else validator.subset(size)
        scored: list[Row] = []
        # A sample is sent to the workers once for the rung, not with every fold.
        order = sorted(alive, key=lambda c: result.seconds.get(c.name, float(c.name in COSTLY)))
        growth = size / sizes[number - 1] if number else 1.0
        longest = 0.0  # the slowest candidate so far on this rung
        with scattered(judge.features, judge.labels):
            for candidate in order:
                expected = _expected(candidate.name, result.seconds, growth, longest)
                if deadline is not None and latest and clock() + expected >= deadline:
                    (judged if candidate.name in latest else skipped).append(candidate.label)
                    continue
                if progress:
                    progress(f"comparing on {size:,} rows: {candidate.label}", done, steps)
                done += 1
                started = clock()
                row = judge.score(candidate)
                seconds = clock() - started
                longest = max(longest, seconds)
                result.seconds[candidate.name] = seconds
                latest[candidate.name] = row
                scored.append(row)
        if size == sizes[-1] or not scored:
            break
        ranked = [row for row in rank(scored, sort_by) if not row.error]
        keep = max(1, math.ceil(len(ranked) * KEEP_SHARE)) if ranked else 0
        names = {row.name for row in ranked[:keep]}
        alive = [c for c in alive if c.name in names]
        steps = done + len(alive) * (len(sizes) - number - 1)
    if skipped:
        result.notes.append(
            f"the time budget left no time to compare {', '.join(dict.fromkeys(skipped))}"
        )
    if judged:  # compared, on a sample: the leaderboard's rows say how many
        result.notes.append(
            f"the time budget left no time to compare {', '.join(dict.fromkeys(judged))} "
            "on the whole table; they are ranked on the sample they reached"
        )
    result.rows = [latest[c.name] for c in pool if c.name in latest]
    return result


def _expected(name: str, before: dict[str, float], growth: float, longest: float) -> float:
    """Seconds a candidate is expected to take on this rung, for the deadline's check.

    A candidate that ran on the rung before takes about its seconds there times the rows'
    growth (fitting is at least linear in rows). On the first rung a costly family is
    expected to be at least as slow as the slowest candidate so far: they run last there, and
    a forest started with a second left ran for 19 s. Others are not expected to cost
    anything worth a check.
    """
    if name in before:
        return before[name] * growth
    return longest if name in COSTLY else 0.0


def fit_estimate(row: Row, rows: int) -> float:
    """Seconds a refit of `row`'s pipeline on `rows` rows may take, from its CV fit time."""
    scored = max(row.rows, 1)
    return row.fit_seconds * max(rows / scored, 1.0)
