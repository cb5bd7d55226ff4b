from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tabship.candidates import select
from tabship.crossval import CrossValidator, rank
from tabship.racing import FIRST_RUNG_ROWS, RACE_MIN_ROWS, compare, rungs
from tabship.train import TrainOptions, prepare, train

from .conftest import make_tiny_table


def test_rungs_grow_to_the_whole_table() -> None:
    assert rungs(RACE_MIN_ROWS) == [RACE_MIN_ROWS]
    assert rungs(50_000) == [5_555, 16_666, 50_000]
    sizes = rungs(1_000_000)
    assert sizes[-1] == 1_000_000 and sizes[0] >= FIRST_RUNG_ROWS
    assert all(b == a * 3 or b // 3 == a for a, b in itertools.pairwise(sizes))


def _step_table(rows: int, seed: int = 5) -> pd.DataFrame:
    """A target made of steps: trees fit it, straight lines cannot, so the margin is clear."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0, 10, rows), rng.uniform(0, 10, rows)
    kind = rng.choice(["a", "b", "c"], rows)
    value = 50 * (x1 > 5) * (x2 > 3) + 30 * (kind == "b") * (x1 < 2) + rng.normal(0, 2, rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "kind": kind, "value": value})


def _validator(frame: pd.DataFrame) -> CrossValidator:
    task, schema, features, labels, *_ = prepare(frame, TrainOptions(target="value"))
    return CrossValidator(
        schema=schema,
        task=task,
        features=features,
        labels=labels,
        folds=3,
        seed=123,
        n_jobs=1,
        n_classes=0,
    )


def test_race_picks_the_winner_of_the_full_comparison() -> None:
    validator = _validator(_step_table(12_000))
    pool = select("regression", ["linear", "ridge", "decision_tree", "lightgbm", "knn"], None)
    raced = rank(compare(validator, pool, "mae").rows, "mae")
    full = rank([validator.score(c) for c in pool], "mae")
    assert raced[0].name == full[0].name == "lightgbm"
    assert raced[0].rows == 12_000
    scored_on = {row.name: row.rows for row in raced}
    assert sorted(scored_on.values()) == [4_000, 4_000, 4_000, 12_000, 12_000]
    # Every candidate is still on the leaderboard, the dropped ones below the carried ones.
    assert [row.rows for row in raced] == sorted(scored_on.values(), reverse=True)


def test_an_exhausted_budget_starts_no_further_candidate() -> None:
    validator = _validator(_step_table(300))
    pool = select("regression", ["linear", "ridge", "decision_tree"], None)
    result = compare(validator, pool, "mae", deadline=5.0, clock=lambda: 10.0)
    assert [row.name for row in result.rows] == ["linear"]
    assert result.notes == [
        "time budget spent before Ridge regression, Decision tree could be compared"
    ]


def test_under_a_deadline_the_cheap_candidates_run_first() -> None:
    # A forest first in the pool used to take the budget from the boosters behind it.
    validator = _validator(_step_table(300))
    pool = select("regression", ["random_forest", "knn", "ridge", "decision_tree"], None)
    result = compare(validator, pool, "mae", deadline=5.0, clock=lambda: 10.0)
    assert [row.name for row in result.rows] == ["ridge"]
    # Past the first rung, by the seconds each took; one judged on a sample is said so.
    ticks = itertools.chain([0.0] * 2, itertools.repeat(10.0))
    raced = compare(
        _validator(_step_table(12_000)),
        select("regression", ["ridge", "decision_tree", "lightgbm"], None),
        "mae",
        deadline=5.0,
        clock=lambda: next(ticks),
    )
    assert [row.rows for row in raced.rows] == [4_000] * 3
    assert raced.notes == [raced.notes[-1]] and raced.notes[-1].endswith(
        "could be compared on the whole table; they are ranked on the sample they reached"
    )


def test_same_seed_same_leaderboard() -> None:
    options = TrainOptions(target="charges", folds=3, models=["ridge", "lightgbm", "xgboost"])
    first = train(make_tiny_table(), options).leaderboard
    second = train(make_tiny_table(), options).leaderboard
    assert [row.to_dict() | {"fit_seconds": 0} for row in first] == [
        row.to_dict() | {"fit_seconds": 0} for row in second
    ]


@pytest.mark.parametrize("budget", [None, 30.0])
def test_time_budget_is_recorded_on_the_run(budget: float | None) -> None:
    options = TrainOptions(target="charges", folds=3, models=["ridge"], time_budget=budget)
    result = train(make_tiny_table(), options)
    assert result.train_seconds < 30 and result.leaderboard[0].rows == 120
