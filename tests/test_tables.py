"""Tables as users save them: headers, separators and encodings get one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tabship.datasets import read_table
from tabship.errors import DatasetError
from tabship.trainset import prepare

from .conftest import make_tiny_table
from .test_train import quick


def test_two_columns_of_one_name_are_refused_by_position(tmp_path: Path) -> None:
    # The reader would call the second `a.1`, a name the user never wrote.
    (tmp_path / "dup.csv").write_text("a,a,a.1,y\n1,2,3,4\n")
    with pytest.raises(DatasetError, match="columns 1 and 2 are both called 'a'"):
        read_table(tmp_path / "dup.csv")


def test_an_unnamed_column_is_said_with_the_name_it_was_given(tmp_path: Path) -> None:
    make_tiny_table().to_csv(tmp_path / "indexed.csv")  # pandas' default: the index, unnamed
    frame = read_table(tmp_path / "indexed.csv")
    notes = prepare(frame, quick())[-1]
    assert notes[0].startswith("column 1 has no name in the header; it is called 'Unnamed: 0'")


def test_another_separator_and_another_encoding_are_read_and_said(tmp_path: Path) -> None:
    make_tiny_table().to_csv(tmp_path / "semi.csv", sep=";", index=False)
    frame = read_table(tmp_path / "semi.csv")
    assert list(frame.columns) == list(make_tiny_table().columns)
    assert prepare(frame, quick())[-1][0] == "read with semicolons between values"
    (tmp_path / "latin1.csv").write_bytes("name,y\ncaf\xe9,1\n".encode("latin-1"))
    assert read_table(tmp_path / "latin1.csv")["name"][0] == "caf\xe9"


def test_codes_written_with_leading_zeros_are_categories(tmp_path: Path) -> None:
    table = make_tiny_table()
    table["zip"] = [["02134", "10001", "00501"][i % 3] for i in range(len(table))]
    table.to_csv(tmp_path / "zips.csv", index=False)
    schema = prepare(read_table(tmp_path / "zips.csv"), quick())[1]
    kinds = {f.name: (f.kind, f.known_levels) for f in schema.features}
    assert kinds["zip"] == ("categorical", ("00501", "02134", "10001"))
    assert kinds["children"][0] == "numeric"  # 0, 1, 2: a lone zero is a number


def test_missing_texts_are_the_csv_readers_own() -> None:
    from pandas._libs.parsers import STR_NA_VALUES  # type: ignore[import-not-found]

    from tabship.feature import NA_TEXTS

    assert NA_TEXTS == STR_NA_VALUES  # read_csv's defaults, which training reads with


def test_a_missing_text_is_missing_in_a_request_as_in_a_file(tmp_path: Path) -> None:
    from tabship.feature import MISSING_LEVEL, Feature

    feature = Feature("mix", "categorical", "string", True, levels=(MISSING_LEVEL, "12", "7"))
    for text in ("n/a", "NA", "null", ""):
        assert feature.read(text) == (MISSING_LEVEL, None, None)
    kept = Feature("country", "categorical", "string", False, levels=("NA", "US"))
    assert kept.read("NA") == ("NA", None, None)  # a level trained as written still wins
