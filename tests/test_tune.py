from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabship.candidates import select
from tabship.crossval import CrossValidator, Row, rank
from tabship.train import TrainOptions, train
from tabship.trainset import prepare
from tabship.tune import tune, work

MODELS = ["ridge", "decision_tree", "random_forest"]


@dataclass
class VirtualClock:
    """Seconds that pass only when a trial runs, so the budget logic is checked exactly."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class PacedValidator(CrossValidator):
    """Real cross-validation; each trial advances the virtual clock by its modelled cost."""

    clock: VirtualClock = field(default_factory=VirtualClock)
    seconds_per_work: float = 0.5

    def score(self, candidate: Any, **kwargs: Any) -> Row:
        row = super().score(candidate, **kwargs)
        cost = work(kwargs.get("params") or {}, bool(kwargs.get("expand")))
        self.clock.now += self.seconds_per_work * cost
        return row


def setup(table: pd.DataFrame) -> tuple[PacedValidator, list[Any], list[Row]]:
    options = TrainOptions(target="charges", folds=3, models=MODELS)
    task, schema, features, labels, _, _ = prepare(table, options)
    validator = PacedValidator(schema, task, features, labels, 3, 123, 1, 0)
    pool = select(task, MODELS, None)
    rows = rank([validator.score(c) for c in pool], "r2")
    validator.clock.now = 0.0
    return validator, pool, rows


def test_search_shares_the_budget_and_never_starts_a_trial_it_cannot_finish(
    tiny_table: pd.DataFrame,
) -> None:
    validator, pool, rows = setup(tiny_table)
    base = {c.name: 0.5 for c in pool}
    tuned, summary = tune(
        validator,
        pool,
        rows,
        sort_by="r2",
        budget=20.0,
        base_seconds=base,
        expandable=True,
        clock=validator.clock,
    )
    assert summary.seconds <= 20.0
    assert set(summary.trials) == set(MODELS)
    assert all(count >= 2 for count in summary.trials.values()), summary.trials
    assert {row.candidate for row in tuned} == set(MODELS)
    for row in tuned:
        assert row.tuned and row.trials == summary.trials[row.candidate]
        assert row.name == f"{row.candidate}_tuned" and row.label.endswith(", tuned")
        assert np.isfinite(row.mean["r2"])


def test_a_budget_below_one_trial_runs_none_and_says_so(tiny_table: pd.DataFrame) -> None:
    validator, pool, rows = setup(tiny_table)
    tuned, summary = tune(
        validator,
        pool,
        rows,
        sort_by="r2",
        budget=0.1,
        base_seconds={c.name: 5.0 for c in pool},
        expandable=True,
        clock=validator.clock,
    )
    assert tuned == [] and summary.seconds == 0.0
    assert summary.trials == dict.fromkeys(MODELS, 0)
    assert "Random forest: no trial fitted in the 0.1 s budget" in " ".join(summary.notes)


def test_work_scales_with_trees_depth_and_expansion() -> None:
    assert work({}, False) == 1.0
    assert work({"n_estimators": 300}, False) == 3.0
    assert work({"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1}, False) == 2.0
    assert work({"alpha": 1.0}, True) == 3.0


def test_tuned_rows_join_the_leaderboard_and_the_winner_is_refit(
    tiny_table: pd.DataFrame,
) -> None:
    result = train(
        tiny_table,
        TrainOptions(
            target="charges", folds=3, models=["ridge", "decision_tree"], tune=True, time_budget=4
        ),
    )
    assert result.tuning is not None and sum(result.tuning.trials.values()) > 0
    tuned = [row for row in result.leaderboard if row.tuned]
    assert tuned and all(row.params for row in tuned)
    assert result.leaderboard == rank(result.leaderboard, "r2")
    chosen = result.chosen
    model = result.pipeline.named_steps["model"]
    for key, value in chosen.params.items():
        assert model.get_params()[key] == value
    assert ("expand" in result.pipeline.named_steps) == bool(
        chosen.expand if chosen.expand is not None else result.candidate.expand
    )


@pytest.mark.parametrize("budget", [0.0, -5.0])
def test_cli_refuses_a_budget_below_one_second(budget: float, tiny_csv: Any) -> None:
    from typer.testing import CliRunner

    from tabship.cli import app

    outcome = CliRunner().invoke(
        app, ["train", str(tiny_csv), "-t", "charges", "--tune", "--time-budget", str(budget)]
    )
    assert outcome.exit_code == 2 and "--time-budget" in outcome.output
