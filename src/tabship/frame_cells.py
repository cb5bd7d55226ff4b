"""A table chunk's columns read as the engine takes them: the vectorised twin of
`Feature.read`, for `Schema.validate_frame` (batch scoring).

Each reader gives the engine's column and a mask of the cells the feature refuses; the
message for a refused cell still comes from the feature, cell by cell, so it reads as a JSON
request's would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tabship import dates
from tabship.feature import (
    BOOL_SPELLINGS,
    FLOAT32_MAX,
    MISSING_LEVEL,
    NA_TEXTS,
    UNSEEN_LEVEL,
    Feature,
)

if TYPE_CHECKING:
    import pandas as pd


def empty_cells(feature: Feature, raw: pd.Series) -> np.ndarray:
    """Missing cells: NaN or None, and text spelling a missing value (`NA`, `null`, ...).

    A predict file's text cells arrive as written (so the output copies `NA` as `NA`); here
    they are read as training's reader and a request's `"NA"` read them, unless training
    saw the spelling as a level.
    """
    empty = raw.isna().to_numpy()
    if feature.kind == "numeric" or raw.dtype.kind not in "OUS":
        return empty
    spellings = sorted(NA_TEXTS - set(feature.known_levels))
    return empty | raw.isin(spellings).to_numpy(dtype=bool)


def column_cells(
    feature: Feature,
    raw: pd.Series,
    empty: np.ndarray,
    strict_categories: bool,
    outside: dict[str, int],
    unseen: dict[str, int],
    codes: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """One feature's column for the engine and the mask of cells it refuses (not empty ones).

    Rows outside the range and unseen categories are counted into `outside` and `unseen`, not
    warned per chunk: the caller sums a file's chunks.
    """
    if feature.kind == "numeric":
        return _numeric_column(feature, raw, empty, outside)
    if feature.kind == "date":
        return _date_column(feature, raw, empty, outside)
    column, unknown, codes[feature.name] = _categorical_column(feature, raw, empty)
    count = int(unknown.sum())
    if count and not strict_categories:
        unseen[feature.name] = count
    return column, unknown if strict_categories else np.zeros(len(raw), dtype=bool)


def _numeric_column(
    feature: Feature, raw: pd.Series, empty: np.ndarray, outside: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The column as float64 and the mask of cells the feature refuses (not empty ones)."""
    import pandas as pd

    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        refused = (~empty & np.isnan(numbers)) | (np.abs(numbers) > FLOAT32_MAX)
        if feature.integer:
            refused |= np.isfinite(numbers) & (numbers != np.round(numbers))
    _count_outside(feature, numbers, ~refused & ~np.isnan(numbers), outside)
    return numbers, refused


def _count_outside(
    feature: Feature, values: np.ndarray, usable: np.ndarray, outside: dict[str, int]
) -> None:
    """Count the rows outside the training range (numbers or dates) in `outside`."""
    low, high = feature.bounds
    with np.errstate(invalid="ignore"):
        count = int((usable & ((values < low) | (values > high))).sum())
    if count:
        outside[feature.name] = count


def _date_column(
    feature: Feature, raw: pd.Series, empty: np.ndarray, outside: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The column as datetime64[s] and the mask of cells that are not dates."""
    if raw.dtype.kind == "M":
        from tabship.columnar import wall_clock

        stamps = wall_clock(raw)
    else:
        stamps = dates.parse(raw.to_numpy(dtype=object), feature.day_first)
    known = ~np.isnat(stamps)
    _count_outside(feature, stamps.astype(np.int64).astype(np.float64), known, outside)
    return stamps, ~empty & ~known


def _categorical_column(
    feature: Feature, raw: pd.Series, empty: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The column as the engine's text, the mask of values not seen in training, and codes.

    A code is the level's index among the known levels, then one for missing, one for unseen.
    """
    allowed = list(feature.known_levels)
    if feature.dtype == "bool" and raw.dtype.kind != "b":
        raw = raw.replace(BOOL_SPELLINGS)  # a text column's true/TRUE, as training read them
    codes = _level_codes(raw, allowed)
    unknown = ~empty & (codes < 0)
    codes[codes < 0] = len(allowed)
    codes[unknown] = len(allowed) + 1
    text = np.array([*allowed, MISSING_LEVEL, UNSEEN_LEVEL], dtype=object)[codes]
    return text, unknown, codes


def _level_codes(raw: pd.Series, allowed: list[str]) -> np.ndarray:
    """Each row's index in `allowed`, -1 for empty or unknown: one hashed lookup per column.

    Arrow-backed text (what pandas and our CSV reader give) is looked up in Arrow itself;
    turning a million strings into Python objects first would cost more than the model.
    """
    import pandas as pd

    if hasattr(raw.array, "__arrow_array__") and raw.dtype.kind in "OUT":
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.index_in(pa.array(raw.array), value_set=pa.array(allowed, pa.string()))
        return np.array(pc.fill_null(found, -1).to_numpy(), dtype=np.intp)
    labels = raw if raw.dtype.kind in "OUT" or str(raw.dtype) == "str" else raw.astype(str)
    return np.array(pd.Index(allowed, dtype=object).get_indexer(pd.Index(labels)), dtype=np.intp)
