"""Tuning: randomised search over the best candidates' parameters inside a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sklearn.model_selection import ParameterSampler

from tabship.candidates import Candidate
from tabship.crossval import CrossValidator, Row, rank
from tabship.preparation import POOLED_LEVELS_SPACE, POOLED_PARAM, is_pooled

TOP_CANDIDATES = 3
# A trial's cost is predicted from the slowest seconds-per-unit-of-work seen so far for its
# family, with this margin, so the last trial ends inside the budget rather than past it.
SAFETY = 1.25
# Draws per turn before a family that only samples too-expensive settings gives up its turn.
REDRAWS = 8
# Parameters whose value scales the fitting work linearly, and their defaults.
_WORK_PARAMS = {"n_estimators": 100, "max_iter": 100}

Clock = Callable[[], float]
Progress = Callable[[str, int, int], None]


@dataclass
class TuningSummary:
    """What the search did: its budget, the time it took and the trials per candidate."""

    budget: float
    seconds: float = 0.0
    trials: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for tabship.json."""
        return {
            "budget_seconds": self.budget,
            "seconds": round(self.seconds, 3),
            "trials": self.trials,
            "notes": self.notes,
        }


def work(params: dict[str, Any], expand: bool) -> float:
    """Relative fitting cost of a setting against the candidate's defaults (1.0)."""
    cost = 1.0
    for name, default in _WORK_PARAMS.items():
        if name in params:
            cost *= params[name] / default
    depth = params.get("max_depth")
    if isinstance(depth, int) and "learning_rate" in params:
        cost *= depth / 3  # boosting: default depth 3, cost grows with the depth
    if expand:
        cost *= 3.0
    return max(cost, 0.05)


@dataclass
class _Family:
    """One candidate under search: its sampler, the best row so far and its cost rate."""

    candidate: Candidate
    base: Row
    draws: Iterator[dict[str, Any]]
    seconds_per_work: float
    best: Row | None = None
    trials: int = 0


def _sampler(
    candidate: Candidate, seed: int, expandable: bool, pooled: bool
) -> Iterator[dict[str, Any]]:
    space = dict(candidate.space)
    if expandable and not candidate.expand:
        # Feature engineering is one more dimension of the search: CV decides if it helps.
        space["expand"] = [False, True]
    if pooled:
        # So does how many levels of a many-valued column keep a column of their own.
        space[POOLED_PARAM] = POOLED_LEVELS_SPACE
    return iter(ParameterSampler(space, n_iter=10_000, random_state=seed))


def tune(
    validator: CrossValidator,
    pool: list[Candidate],
    leaderboard: list[Row],
    *,
    sort_by: str,
    budget: float,
    base_seconds: dict[str, float],
    expandable: bool,
    progress: Progress | None = None,
    clock: Clock = time.monotonic,
) -> tuple[list[Row], TuningSummary]:
    """Search the top candidates in turn until the budget is spent; one best row per candidate."""
    started = clock()
    deadline = started + budget
    by_name = {c.name: c for c in pool}
    families: list[_Family] = []
    for row in leaderboard:
        candidate = by_name.get(row.candidate or row.name)
        if row.error or row.tuned or candidate is None or not candidate.space:
            continue
        families.append(
            _Family(
                candidate,
                row,
                _sampler(
                    candidate,
                    validator.seed + len(families),
                    expandable,
                    any(is_pooled(f) for f in validator.schema.features),
                ),
                base_seconds.get(candidate.name, 1.0) / work({}, candidate.expand),
            )
        )
        if len(families) == TOP_CANDIDATES:
            break
    summary = TuningSummary(budget=budget)
    # Round robin, so the budget is shared even when the first family's trials are slow.
    while families and any([_turn(f, validator, sort_by, deadline, clock) for f in families]):
        if progress:
            spent = int(clock() - started)
            progress("tuning " + ", ".join(f.candidate.label for f in families), spent, int(budget))
    summary.seconds = clock() - started
    rows: list[Row] = []
    for family in families:
        summary.trials[family.candidate.name] = family.trials
        if family.best is None:
            summary.notes.append(
                f"{family.candidate.label}: no trial fitted in the {budget:g} s budget "
                f"(one takes about {family.seconds_per_work * SAFETY:.1f} s)"
            )
            continue
        rows.append(family.best)
    return rank(rows, sort_by), summary


def _turn(
    family: _Family, validator: CrossValidator, sort_by: str, deadline: float, clock: Clock
) -> bool:
    """One trial for `family` if a drawn setting fits before the deadline; False if none does."""
    for _ in range(REDRAWS):
        params = dict(next(family.draws))
        expand = bool(params.pop("expand", family.candidate.expand))
        cost = work(params, expand)
        if clock() + family.seconds_per_work * cost * SAFETY > deadline:
            continue
        started = clock()
        row = validator.score(
            family.candidate,
            name=f"{family.candidate.name}_tuned",
            label=f"{family.candidate.label}, tuned",
            expand=expand,
            params=params,
        )
        elapsed = clock() - started
        family.seconds_per_work = max(family.seconds_per_work, elapsed / cost)
        family.trials += 1
        if not row.error:
            candidates = [row] if family.best is None else [family.best, row]
            family.best = rank(candidates, sort_by)[0]
        if family.best is not None:
            family.best = replace(family.best, trials=family.trials)
        return True
    return False
