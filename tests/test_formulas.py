"""The CSV formula guard: text a spreadsheet would run is prefixed, numbers never are."""

from __future__ import annotations

import pyarrow as pa

from tabship.formulas import guard_formulas, guard_text


def test_guard_reads_every_text_layout_and_leaves_numbers() -> None:
    cells = ["=1", "ok", None, "-4"]
    table = pa.table(
        {
            "plain": pa.array(cells, pa.string()),
            "large": pa.array(cells, pa.large_string()),
            "view": pa.array(cells, pa.string_view()),
            "levels": pa.array(cells).dictionary_encode(),
            "-1": pa.array([-1, 2, None, -3]),
        }
    )
    guarded = guard_formulas(table)
    assert guarded.column_names == ["plain", "large", "view", "levels", "-1"]
    for name in ("plain", "large", "view", "levels"):
        assert guarded[name].to_pylist() == ["'=1", "ok", None, "-4"], name
    assert guarded["-1"].to_pylist() == [-1, 2, None, -3]


def test_numbers_as_any_locale_writes_them_are_no_formulas() -> None:
    for number in ("-3", "+1.5e3", "-1,5", "-1.234,5"):
        assert guard_text(number) == number
    for formula in ("=1+1", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "+A1"):
        assert guard_text(formula) == f"'{formula}"
