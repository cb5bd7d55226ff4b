from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabship.candidates import candidates
from tabship.preparation import POOLED_LEVELS, build_pipeline, encoded_width, is_pooled
from tabship.profile import infer_feature, infer_schema
from tabship.schema import Feature


def _codes(rows: int, distinct: int, seed: int = 1) -> pd.Series:
    """`distinct` codes over `rows` rows, every code present at least once."""
    rng = np.random.default_rng(seed)
    index = np.concatenate([np.arange(distinct), rng.integers(0, distinct, rows - distinct)])
    return pd.Series([f"N{i:04d}" for i in rng.permutation(index)])


def test_a_text_column_mostly_distinct_is_dropped_as_id_like() -> None:
    # Most values distinct but some repeating: a name column, not a category.
    described = infer_feature("name", _codes(400, 300))
    assert isinstance(described, str)
    assert "'name' looks like an ID or a name (300 distinct values in 400 rows" in described


def test_a_text_column_under_half_distinct_is_kept_and_pooled() -> None:
    described = infer_feature("code", _codes(400, 150))
    assert isinstance(described, Feature) and described.kind == "categorical"
    assert len(described.levels) == 150 and is_pooled(described)


def test_numbers_with_many_values_are_not_id_like() -> None:
    values = pd.Series(np.random.default_rng(2).normal(size=400))
    described = infer_feature("reading", values)
    assert isinstance(described, Feature) and described.kind == "numeric"


@pytest.mark.parametrize(
    ("cells", "said"),
    [
        # Numbers but for a few cells: "looks like an ID" sent users looking for the wrong thing.
        (
            lambda v: [*map(str, v[:-3]), "?", "-", "?"],
            "column 'x' holds numbers but for 3 cells ('?', '-'); ignored: empty those cells",
        ),
        (
            lambda v: [f"${n:,.2f}" for n in v * 1000],
            "column 'x' holds numbers written with signs or separators (such as '$",
        ),
        (lambda v: [f"{n:.1f}%" for n in v], "holds numbers written with signs or separators"),
        # float32, which the model computes in, reads them all as 0.
        (lambda v: v * 1e-50, "holds numbers too small for the model's 32-bit floats"),
    ],
)
def test_numbers_the_model_cannot_read_are_said_to_be_numbers(cells: Any, said: str) -> None:
    values = np.round(np.random.default_rng(4).uniform(1, 90, 400), 2)
    described = infer_feature("x", pd.Series(cells(values)))
    assert isinstance(described, str) and said in described
    # Few distinct values: a category, as before, bad cells and all.
    few = infer_feature("x", pd.Series(["1", "2", "3", "n/a"] * 100))
    assert isinstance(few, Feature) and few.kind == "categorical"


def test_decimal_commas_with_a_bad_cell_are_said_to_be_numbers() -> None:
    """pandas leaves a decimal-comma column text at its first `abc`: read by the file's mark,
    it is numbers but for that cell, said as such (it was a silent category of 500 values)."""
    from tabship.datasets import MARKS

    values = np.round(np.random.default_rng(4).uniform(1, 90, 400), 2)
    many = [f"{v:.2f}".replace(".", ",") for v in values[:-1]] + ["abc"]
    few = [f"{v:.1f}".replace(".", ",") for v in values[:39]] * 10 + ["abc"] * 10
    frame = pd.DataFrame({"many": many, "few": few, "y": np.arange(400.0)})
    frame.attrs[MARKS] = (",", ".")
    schema, notes = infer_schema(frame, "y")
    assert list(schema.names) == ["few"]
    assert notes[0].startswith("column 'many' holds numbers but for 1 cells ('abc'); ignored")
    assert re.match(r"column 'few' holds numbers but for 1 of its \d+ values \('abc'\)", notes[1])
    # In a file of decimal points `27,9` is a number written with a separator, as before.
    frame.attrs[MARKS] = (".", None)
    assert "holds numbers written with signs or separators" in infer_schema(frame, "y")[1][0]


def test_a_date_whose_part_is_named_by_a_column_is_left_out() -> None:
    days = pd.Series(pd.date_range("2021-01-01", periods=50).astype(str))
    year = np.random.default_rng(3).normal(size=50)
    frame = pd.DataFrame({"d": days, "d.year": year, "y": np.arange(50.0)})
    schema, notes = infer_schema(frame, "y")
    assert list(schema.names) == ["d.year"]
    assert notes == [
        "date column 'd' ignored: its calendar part 'd.year' is also a column of the table; "
        "rename that column to use both"
    ]


def test_pooled_levels_keep_the_encoded_width_bounded() -> None:
    frame = pd.DataFrame({"code": _codes(2_000, 500), "size": np.arange(2_000.0) % 7})
    frame["target"] = np.arange(2_000.0)
    schema, warnings = infer_schema(frame, "target")
    assert warnings == []
    assert encoded_width(schema) == POOLED_LEVELS + 1
    ridge = next(c for c in candidates("regression") if c.name == "ridge")
    features = frame.drop(columns=["target"])
    encoded = build_pipeline(schema, ridge, 0)[:-1].fit_transform(features, frame["target"])
    assert encoded.shape[1] <= POOLED_LEVELS + 1


def test_times_of_day_are_said_to_be_times_not_ids() -> None:
    import datetime

    minutes = np.random.default_rng(2).permutation(24 * 60)[:300]
    texts = pd.Series([f"{m // 60:02d}:{m % 60:02d}" for m in minutes])
    typed = pd.Series([datetime.time(m // 60, m % 60) for m in minutes], dtype=object)
    for column in (texts, typed):
        described = infer_feature("time", column)
        assert isinstance(described, str)
        assert described.startswith("column 'time' holds times of day without dates")


def test_a_category_of_percentages_is_said_to_be_numbers_kept_as_text() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "discount": rng.choice([f"{p}%" for p in range(0, 30, 2)], 200),
            "version": rng.choice(["1.2.3", "1.2.4", "2.0.1"], 200),  # digits, no sign
            "y": rng.normal(size=200),
        }
    )
    schema, warnings = infer_schema(frame, "y")
    assert schema.names == ["discount", "version"]
    assert warnings == [
        "column 'discount' holds numbers written with signs or separators (such as '0%'); "
        "used as a category of 15 values, not as numbers: write them as plain numbers (12 or "
        "0.12) to use their size"
    ]


def test_a_category_of_numbers_but_for_a_few_is_said() -> None:
    rng = np.random.default_rng(6)
    values = [str(v) for v in rng.integers(0, 40, 200)]
    values[150] = "0,2"  # a decimal comma late in a file of whole numbers
    frame = pd.DataFrame({"x": values, "y": rng.normal(size=200)})
    schema, warnings = infer_schema(frame, "y")
    assert schema.names == ["x"] and len(warnings) == 1
    assert warnings[0].startswith("column 'x' holds numbers but for 1 of its ")
    assert "('0,2'); used as a category, not as numbers" in warnings[0]


def test_ids_with_gaps_repeats_or_a_telling_name_are_ignored() -> None:
    rng = np.random.default_rng(11)
    rows = 400
    kept = np.sort(rng.choice(np.arange(1, rows + 1), rows - 20, replace=False))
    repeated = np.append(np.arange(1, rows), 3)  # one duplicated row
    random_ids = rng.choice(np.arange(10_000, 99_999), rows, replace=False)
    for name, values in [("id", kept), ("customer_id", repeated), ("CustomerID", random_ids)]:
        described = infer_feature(name, pd.Series(values))
        assert described == (
            f"column {name!r} looks like an ID (a different whole number in nearly every row, "
            "and its name says so); ignored: rename it if it is a measure"
        )
    # Measures as distinct and as run-like stay: income in dollars, years with gaps, an index.
    for name, values in [("income", random_ids), ("year", kept + 1900), ("price_index", kept)]:
        measure = infer_feature(name, pd.Series(values))
        assert isinstance(measure, Feature) and measure.kind == "numeric", name


def test_numbers_with_a_unit_are_said_to_be_so() -> None:
    values = np.round(np.random.default_rng(1).uniform(40, 120, 400), 1)
    said = infer_feature("weight", pd.Series([f"{v} kg" for v in values]))
    assert isinstance(said, str) and said.startswith("column 'weight' holds numbers with a unit")
    # A code of a number and a letter is no measure: an ID or a name, as before.
    code = infer_feature("flat", pd.Series([f"{i}A" for i in range(400)]))
    assert isinstance(code, str) and "looks like an ID or a name" in code


def test_nearly_empty_columns_and_dates_in_formats_that_disagree_are_said() -> None:
    rng = np.random.default_rng(5)
    sparse = np.full(400, np.nan)
    sparse[:7] = rng.normal(size=7)
    days = pd.date_range("2020-01-01", periods=400)
    mixed = [d.strftime("%d/%m/%Y" if i % 2 else "%m/%d/%Y") for i, d in enumerate(days)]
    frame = pd.DataFrame({"sparse": sparse, "signup": mixed, "y": rng.normal(size=400)})
    schema, notes = infer_schema(frame, "y")
    assert list(schema.names) == ["sparse"]
    assert notes[0].startswith("column 'sparse' is empty in 98% of rows (a value in 7 of 400)")
    assert notes[1].startswith("column 'signup' holds dates written in formats that disagree")


def test_an_empty_text_in_a_parquet_column_is_a_gap_training_had() -> None:
    # Read as missing (the model learned it so), then warned "training had no gaps here".
    described = infer_feature("kind", pd.Series(["a", "b", ""] * 40))
    assert isinstance(described, Feature)
    assert described.allow_missing and described.known_levels == ("a", "b")
    assert described.read("", False) == ("", None, None)  # no warning, no problem


def test_a_single_value_with_gaps_is_not_said_to_fill_every_row() -> None:
    said = infer_feature("flag", pd.Series(["a"] * 3 + [None] * 97, dtype=object))
    assert said == (
        "column 'flag' has the single value 'a' in 3% of its rows and is empty in the rest; "
        "ignored (add a column saying whether it is filled, if that matters)"
    )
