"""The report's global view of the explanations: mean |contribution| and dependence.

The same explainer and sealed background as the server, run on a seeded sample of the
training rows with the fitted scikit-learn pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tabship.background import Background
from tabship.engines import SklearnEngine
from tabship.explain import Explainer
from tabship.schema import Batch
from tabship.train import TrainResult

MAX_ROWS = 200
# Engine rows the summary may cost; a wide model explains fewer sample rows.
ROW_BUDGET = 400_000
MIN_ROWS = 20
DEPENDENCE = 3


@dataclass(frozen=True)
class Dependence:
    """One feature's values across the sample beside its contributions."""

    feature: str
    kind: str
    values: np.ndarray
    contributions: np.ndarray


@dataclass(frozen=True)
class Summary:
    """Mean |contribution| per feature (largest first) and the top features' dependence."""

    output: str
    rows: int
    method: str
    ranking: list[tuple[str, float]]
    dependence: list[Dependence]


def summarise(result: TrainResult, metadata: dict[str, Any]) -> Summary:
    """Explain a sample of the training rows and sum the contributions up per feature."""
    schema = result.schema
    background = Background.from_dict(metadata["explanation"], schema)
    engine = SklearnEngine(result.pipeline, schema, result.task)

    def outputs(columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
        values, proba = engine.run(columns, rows)
        return proba if proba is not None else values.reshape(-1, 1)

    explainer = Explainer(schema, background, outputs)
    count = max(MIN_ROWS, min(MAX_ROWS, ROW_BUDGET // explainer.rows_per_record))
    if not explainer.exact and count * explainer.rows_per_record > ROW_BUDGET:
        # A wide model: fewer feature orders per row keep the report within its budget.
        per_pair = 2 * (len(schema.features) + 1) * background.rows
        pairs = max(2, ROW_BUDGET // (count * per_pair))
        explainer = Explainer(schema, background, outputs, pairs=pairs)
    rng = np.random.default_rng(result.seed)
    picked = np.sort(rng.choice(len(result.features), min(count, len(result.features)), False))
    sample = result.features.iloc[picked]
    batch = Batch(
        columns={
            name: sample[name].to_numpy(dtype=object if text else np.float64).reshape(-1, 1)
            for name, text in schema.inputs
        },
        rows=len(sample),
        warnings=[],
        unseen={},
    )
    found = explainer.explain(batch)
    # Binary: the positive class; several classes: each row's predicted class; else the value.
    if len(result.classes) == 2:
        chosen, output = np.ones(batch.rows, dtype=int), f"probability of {result.classes[1]}"
    elif result.classes:
        chosen, output = found.prediction.argmax(axis=1), "probability of the predicted class"
    else:
        chosen, output = np.zeros(batch.rows, dtype=int), result.target
    contributions = found.contributions[np.arange(batch.rows), :, chosen]
    mean_abs = np.abs(contributions).mean(axis=0)
    order = np.argsort(-mean_abs)
    ranking = [(schema.features[i].name, float(mean_abs[i])) for i in order]
    dependence = [
        Dependence(
            feature=schema.features[i].name,
            kind=schema.features[i].kind,
            values=sample[schema.features[i].inputs[0]].to_numpy(),
            contributions=contributions[:, i],
        )
        for i in order[:DEPENDENCE]
    ]
    return Summary(output, batch.rows, found.method, ranking, dependence)
