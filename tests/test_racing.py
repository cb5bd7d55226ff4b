from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabship.candidates import Candidate, select
from tabship.crossval import CrossValidator, Row, rank
from tabship.racing import FIRST_RUNG_ROWS, RACE_MIN_ROWS, compare, rungs
from tabship.train import TrainOptions, train
from tabship.trainset import prepare

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


class _Clock:
    """A test's clock: it moves only when a candidate is scored (see `_Costed`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class _Costed(CrossValidator):
    """Scores for real, but each candidate takes the seconds its cost says on `clock`."""

    clock: _Clock = field(default_factory=_Clock)
    per_thousand_rows: dict[str, float] = field(default_factory=dict)

    def score(self, candidate: Candidate, **kwargs: Any) -> Row:
        self.clock.now += self.per_thousand_rows[candidate.name] * len(self.features) / 1000
        return super().score(candidate, **kwargs)


def _costed(rows: int, **per_thousand_rows: float) -> _Costed:
    plain = _validator(_step_table(rows))
    fields = {name: getattr(plain, name) for name in CrossValidator.__dataclass_fields__}
    return _Costed(**fields, per_thousand_rows=per_thousand_rows)


def test_an_exhausted_budget_starts_no_further_candidate() -> None:
    validator = _validator(_step_table(300))
    pool = select("regression", ["linear", "ridge", "decision_tree"], None)
    result = compare(validator, pool, "mae", deadline=5.0, clock=lambda: 10.0)
    assert [row.name for row in result.rows] == ["linear"]
    assert result.notes == [
        "the time budget left no time to compare Ridge regression, Decision tree"
    ]


@pytest.mark.parametrize(("deadline", "forest"), [(8.0, False), (10.0, True)])
def test_a_costly_candidate_starts_only_if_it_may_end_in_time(
    deadline: float, forest: bool
) -> None:
    # A forest first in the pool used to take the budget from the boosters behind it; last,
    # and started with a second left, it still ran 19 s past a 10 s budget.
    judge = _costed(300, ridge=10, decision_tree=10, random_forest=60)  # 3, 3 and 18 s
    pool = select("regression", ["random_forest", "ridge", "decision_tree"], None)
    result = compare(judge, pool, "mae", deadline=deadline, clock=judge.clock)
    assert {row.name for row in result.rows} == {"ridge", "decision_tree"} | (
        {"random_forest"} if forest else set()
    )
    # Expected to take at least the 3 s of the slowest before it: with 2 s left it is skipped.
    assert judge.clock.now == (24.0 if forest else 6.0)


@pytest.mark.parametrize(("deadline", "whole"), [(20.0, False), (30.0, True)])
def test_a_rung_is_entered_only_if_the_rows_growth_fits_the_time_left(
    deadline: float, whole: bool
) -> None:
    judge = _costed(12_000, ridge=1, decision_tree=1, lightgbm=1)  # 4 s each on 4,000 rows
    pool = select("regression", ["ridge", "decision_tree", "lightgbm"], None)
    raced = compare(judge, pool, "mae", deadline=deadline, clock=judge.clock)
    # After 12 s, the survivor's 4 s times three more rows: 24 s, past a 20 s deadline.
    assert max(row.rows for row in raced.rows) == (12_000 if whole else 4_000)
    assert judge.clock.now == (24.0 if whole else 12.0)
    if not whole:
        assert raced.notes == [
            "the time budget left no time to compare LightGBM on the whole table; they are "
            "ranked on the sample they reached"
        ]


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
