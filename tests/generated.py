"""Generated tables for training tests: every kind of column a real table brings, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_mixed_table(rows: int = 600, seed: int = 11, *, task: str = "regression") -> pd.DataFrame:
    """Numbers with gaps, a few-valued category, a many-valued code and a target driven by all.

    The code column has 120 levels with a long tail (most seen a handful of times), so it is
    pooled, yet under half of the rows are distinct, so it is kept.
    """
    rng = np.random.default_rng(seed)
    size = rng.uniform(10, 200, rows)
    size[rng.random(rows) < 0.05] = np.nan
    rooms = rng.integers(1, 6, rows)
    area = rng.choice(["north", "south", "east", "west"], rows)
    weights = 1.0 / np.arange(1, 121) ** 1.1
    code_index = rng.choice(120, rows, p=weights / weights.sum())
    code = np.array([f"K{i:03d}" for i in code_index])
    value = (
        3.0 * np.nan_to_num(size, nan=100.0)
        + 40.0 * rooms
        + 150.0 * (area == "south")
        + 200.0 * (code_index % 3 == 0)
        + rng.normal(0, 30, rows)
    )
    frame = pd.DataFrame({"size": size, "rooms": rooms, "area": area, "code": code})
    if task == "regression":
        frame["value"] = value
    else:
        frame["value"] = np.where(value > np.median(value), "high", "low")
    return frame


def with_unseen_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with values training never saw in every text column, every other row."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype.kind not in "iufb":
            out[name] = out[name].astype(object)
            out.loc[out.index[::2], name] = [f"new-{name}-{i}" for i in range(len(out[::2]))]
    return out
