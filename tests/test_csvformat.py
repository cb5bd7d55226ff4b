"""CSV files as spreadsheets in other locales save them: read as written, and said."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabship import datasets
from tabship.batch import predict_file
from tabship.csvformat import CsvFormat, sniff
from tabship.errors import DatasetError
from tabship.predictor import Predictor
from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model

from .conftest import make_tiny_table


def test_the_format_is_found_from_the_files_start(tmp_path: Path) -> None:
    cases = {
        "euro.csv": ("alter;bmi;region\n57;32,81;süd\n47;28,5;nord\n".encode(), ";", ",", "."),
        "grouped.csv": (b"a;b\n1.234,5;2\n10,25;3\n", ";", ",", "."),
        "dots.csv": (b"a;b\n1.5;2\n2.25;3\n", ";", ".", None),
        "tabs.txt": (b"a\tb\n1.5\t2\n", "\t", ".", None),
        "bars.csv": (b"a|b\n1|2\n", "|", ".", None),
        "quoted.csv": (b'"a;b",c\n1,2\n', ",", ".", None),  # the comma outside the quotes
        "one.csv": (b"a\n1\n", ",", ".", None),
        "tabs.tsv": (b"a b\tc\n1\t2\n", "\t", ".", None),
        # A comma in a tab-separated header's name; a semicolon in a comma file's text.
        "named.txt": (b"Cost, USD\tage\tregion\n1.5\t30\tnorth\n", "\t", ".", None),
        "tags.csv": (b"name,tags\nA,x;y\nB,z\n", ",", ".", None),
        "multiline.csv": (b'a;b\n"two\nlines";2\n3;4\n', ";", ".", None),
    }
    for name, (content, separator, decimal, thousands) in cases.items():
        (tmp_path / name).write_bytes(content)
        found = sniff(tmp_path / name)
        assert (found.separator, found.decimal, found.thousands) == (
            separator,
            decimal,
            thousands,
        ), name
        assert found.encoding == "utf-8"
    (tmp_path / "latin.csv").write_bytes("âge,région\n1,Besançon\n".encode("latin-1"))
    (tmp_path / "wide.csv").write_text("âge,région\n1,Besançon\n", encoding="utf-16")
    assert sniff(tmp_path / "latin.csv").encoding == "cp1252"
    assert sniff(tmp_path / "wide.csv").encoding == "utf-16"
    # A UTF-8 character cut at the sample's end is not a failure.
    cut = b"a,b\n" + b"1,\xc3\xa9\n" * 20_000
    assert sniff(io.BytesIO(cut)).encoding == "utf-8"
    assert CsvFormat().note is None


def test_a_german_excel_file_trains_and_predicts_as_written(tmp_path: Path) -> None:
    table = make_tiny_table(rows=80)
    table["region"] = table["region"].map({"north": "Nürnberg", "south": "Köln", "east": "Jena"})
    german = table.to_csv(sep=";", decimal=",", index=False)
    (tmp_path / "train.csv").write_bytes(german.encode("cp1252"))
    frame = datasets.read_table(tmp_path / "train.csv")
    assert list(frame.columns) == list(table.columns)
    assert np.allclose(frame["bmi"], table["bmi"]) and set(frame["region"]) == set(table["region"])
    assert frame.attrs[datasets.NOTES] == [
        "read as Windows-1252 (Latin-1) text, not being UTF-8, with semicolons between "
        "values, decimal commas (29,5) and dots between thousands"
    ]
    options = TrainOptions(target="charges", folds=2, models=["ridge"])
    trained = train_model(str(tmp_path / "train.csv"), options, tmp_path / "m")
    predictor = Predictor.load(trained.artifact.directory)
    rows = table.drop(columns="charges").head(5)
    (tmp_path / "new.csv").write_bytes(
        rows.to_csv(sep=";", decimal=",", index=False).encode("cp1252")
    )
    done = predict_file(predictor, tmp_path / "new.csv", tmp_path / "out.csv")
    assert done.warnings[0].startswith("read as Windows-1252") and not done.unseen
    out = pd.read_csv(tmp_path / "out.csv")
    direct = predictor.predict(rows.to_dict(orient="records")).values
    assert np.allclose(out["predicted_charges"], direct, rtol=1e-6)
    assert list(out["region"]) == list(rows["region"])  # Köln, not K\xf6ln


def test_a_file_whose_non_utf8_text_comes_late_is_read_whole(tmp_path: Path) -> None:
    # Past the sampled start: the reader fails there, and the file is read again.
    lines = "".join(f"{i},{i * 2.5},a\n" for i in range(8000))
    content = b"x,y,g\n" + lines.encode() + "8000,1.0,Besançon\n".encode("latin-1")
    (tmp_path / "late.csv").write_bytes(content)
    assert sniff(tmp_path / "late.csv").encoding == "utf-8"
    frame = datasets.read_table(tmp_path / "late.csv")
    assert frame["g"].iloc[-1] == "Besançon" and len(frame) == 8001
    assert frame.attrs[datasets.NOTES][0].startswith("read as Windows-1252")


def test_a_row_with_a_value_too_many_is_named_in_plain_words(tmp_path: Path) -> None:
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9,10\n")
    with pytest.raises(DatasetError, match="line 4 has 4 values where the header has 3"):
        datasets.read_table(tmp_path / "ragged.csv")


def test_dots_between_thousands_are_read_without_touching_dotted_dates(tmp_path: Path) -> None:
    # pandas' own `thousands` made 31.05.2024 the number 31052024.
    grouped = [f"{d:02d}.05.2024;{d}.{234 + d:03d},5;{d % 3}" for d in range(1, 29)]
    (tmp_path / "de.csv").write_text("datum;betrag;x\n" + "\n".join(grouped) + "\n")
    form = sniff(tmp_path / "de.csv")
    assert (form.separator, form.decimal, form.thousands) == (";", ",", ".")
    frame = datasets.read_table(tmp_path / "de.csv")
    assert frame["datum"].iloc[0] == "01.05.2024"  # text, for the date reader
    assert frame["betrag"].dtype == np.float64 and frame["betrag"].iloc[0] == 1235.5


def test_predict_reads_grouped_numbers_as_training_did(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    amounts = rng.uniform(500, 90_000, 80).round(2)
    kinds = rng.choice(["a", "b"], 80)
    target = amounts / 100 + (kinds == "a") * 50 + rng.normal(0, 5, 80)

    def german(value: float) -> str:  # 12.345,67
        return f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")

    lines = [f"{german(a)};{k};{german(y)}" for a, k, y in zip(amounts, kinds, target, strict=True)]
    (tmp_path / "t.csv").write_text("betrag;art;y\n" + "\n".join(lines) + "\n")
    options = TrainOptions(target="y", folds=2, models=["ridge"])
    predictor = Predictor.load(
        train_model(str(tmp_path / "t.csv"), options, tmp_path / "m").artifact.directory
    )
    assert {f.name: f.kind for f in predictor.schema.features}["betrag"] == "numeric"
    done = predict_file(predictor, tmp_path / "t.csv", tmp_path / "out.csv")
    assert done.warnings[0].startswith("read with semicolons between values, decimal commas")
    records = [{"betrag": float(a), "art": str(k)} for a, k in zip(amounts, kinds, strict=True)]
    direct = predictor.predict(records).values
    assert np.allclose(pd.read_csv(tmp_path / "out.csv")["predicted_y"], direct, rtol=1e-6)


def test_a_stray_byte_in_a_utf8_file_is_replaced_not_the_whole_file_re_read(
    tmp_path: Path,
) -> None:
    # Past the sampled start: re-read as Windows-1252, every Köln became KÃ¶ln.
    lines = "".join(f"{i},{['Köln', 'München', 'Berlin'][i % 3]},{i * 1.5}\n" for i in range(4000))
    content = b"x,stadt,y\n" + lines.encode() + b"4000,caf\xe9,1.0\n"
    (tmp_path / "stray.csv").write_bytes(content)
    frame = datasets.read_table(tmp_path / "stray.csv")
    assert set(frame["stadt"].head(3)) == {"Köln", "München", "Berlin"}
    assert frame["stadt"].iloc[-1] == "caf\ufffd"
    assert frame.attrs[datasets.NOTES][0].startswith("read as UTF-8 text, its bytes that are not")


def test_more_values_than_the_header_is_named_not_read_as_a_row_label(tmp_path: Path) -> None:
    # pandas made the first value the index: a one-column file's 1,5 was read as 5.
    (tmp_path / "two.csv").write_text("x,y\n1,5,7\n2,5,8\n")
    with pytest.raises(DatasetError, match="its first row has one value more than its header"):
        datasets.read_table(tmp_path / "two.csv")
    # A one-column file's commas separate nothing: decimal commas.
    (tmp_path / "one.csv").write_text("x\n1,5\n2,5;3\n")
    one = datasets.read_table(tmp_path / "one.csv")
    assert list(one["x"]) == ["1,5", "2,5;3"]  # a semicolon in a cell is no separator
    (tmp_path / "one.csv").write_text("x\n1,5\n2,5\n")
    one = datasets.read_table(tmp_path / "one.csv")
    assert list(one["x"]) == [1.5, 2.5]
    assert one.attrs[datasets.NOTES][0].startswith("read with decimal commas (29,5)")  # no ";"
    # Every row ending with a separator the header lacks (some exports): one empty value.
    (tmp_path / "trailing.csv").write_text("a,b\n1,2,\n3,4,\n5,6,\n")
    trailing = datasets.read_table(tmp_path / "trailing.csv")
    assert list(trailing.columns) == ["a", "b"] and list(trailing["b"]) == [2, 4, 6]
    # A semicolon file with one row a value too many: that line, not "save it with commas".
    rows = "".join(f"{i};{i * 2};{i * 3}\n" for i in range(20))
    (tmp_path / "semi.csv").write_text("a;b;y\n" + rows + "1;2;3;4\n")
    with pytest.raises(DatasetError, match="line 22 has 4 values where the header has 3"):
        datasets.read_table(tmp_path / "semi.csv")
    (tmp_path / "nomark.csv").write_bytes("city,y\nKöln,1\n".encode("utf-16-le"))
    assert list(datasets.read_table(tmp_path / "nomark.csv").columns) == ["city", "y"]


def test_a_predict_file_whose_numbers_do_not_say_takes_the_training_files_marks(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(9)
    amounts = rng.uniform(500, 9_000, 60).round(2)
    german = [f"{a:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".") for a in amounts]
    lines = [
        f"{g};{a / 100 + rng.normal():.2f}".replace(".", ",")
        for g, a in zip(german, amounts, strict=True)
    ]
    lines = [f"{g};{line.split(';')[1]}" for g, line in zip(german, lines, strict=True)]
    (tmp_path / "t.csv").write_text("betrag;y\n" + "\n".join(lines) + "\n")
    options = TrainOptions(target="y", folds=2, models=["ridge"])
    trained = train_model(str(tmp_path / "t.csv"), options, tmp_path / "m")
    predictor = Predictor.load(trained.artifact.directory)
    assert predictor.card.number_marks == (",", ".")
    # Whole amounts only: 1.234 is 1234 in this model's files, not 1.234.
    (tmp_path / "new.csv").write_text("betrag\n1.234\n5.000\n")
    done = predict_file(predictor, tmp_path / "new.csv", tmp_path / "out.csv")
    direct = predictor.predict([{"betrag": 1234.0}, {"betrag": 5000.0}]).values
    assert np.allclose(pd.read_csv(tmp_path / "out.csv")["predicted_y"], direct, rtol=1e-6)
    assert not any("outside the training range" in w for w in done.warnings)
    # A one-column file's decimal commas: one and a half, not a row labelled 1 holding 5.
    (tmp_path / "one.csv").write_text("betrag\n1234,5\n5000,25\n")
    predict_file(predictor, tmp_path / "one.csv", tmp_path / "one-out.csv")
    direct = predictor.predict([{"betrag": 1234.5}, {"betrag": 5000.25}]).values
    assert np.allclose(pd.read_csv(tmp_path / "one-out.csv")["predicted_y"], direct, rtol=1e-6)


def test_an_empty_file_is_said_to_be_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "blank.csv").write_bytes(b"\xef\xbb\xbf\n\n")
    for name in ("empty.csv", "blank.csv"):
        with pytest.raises(DatasetError, match="it is empty"):
            datasets.read_table(tmp_path / name)


def test_round_three_numbers_are_read_as_the_whole_file_writes_them(tmp_path: Path) -> None:
    # Fractions only after the sample's rows: read past it.
    whole = "".join(f"{1 + i % 20}.{i % 1000:03d};{i % 9};{i}\n" for i in range(8000))
    late = "".join(f"{1 + i % 20}.{i % 1000:03d};{i % 9},5;{i}\n" for i in range(50))
    (tmp_path / "late.csv").write_text("betrag;gewicht;y\n" + whole + late)
    frame = datasets.read_table(tmp_path / "late.csv")
    assert frame["betrag"].min() >= 1000 and frame["gewicht"].dtype == np.float64
    # A version column written with dots beside prices with commas: the prices are numbers.
    rows = "".join(
        f"{i};{['2.1', '3.0', '1.4'][i % 3]};{i + 0.5:.1f}\n".replace(".5", ",5") for i in range(30)
    )
    (tmp_path / "ver.csv").write_text("id;version;preis\n" + rows)
    assert datasets.read_table(tmp_path / "ver.csv")["preis"].dtype == np.float64
    # 0.125 is an eighth, never a thousands group; one data row with a value too many.
    assert sniff_marks(tmp_path, "a;b\n0.125;1\n0.500;2\n") == (".", None)
    (tmp_path / "one.csv").write_text("a,b\n1,5,2\n")
    with pytest.raises(DatasetError, match="its first row has one value more"):
        datasets.read_table(tmp_path / "one.csv")


def sniff_marks(folder: Path, text: str) -> tuple[str, str | None]:
    (folder / "marks.csv").write_text(text)
    found = sniff(folder / "marks.csv", trained=(",", "."))
    return found.decimal, found.thousands


def test_a_file_in_a_chinese_encoding_is_not_taken_for_utf8_and_is_said_doubtful(
    tmp_path: Path,
) -> None:
    rows = "".join(f"{c},{i}\n" for i, c in enumerate(["北京", "广州", "上海"] * 10))
    (tmp_path / "gbk.csv").write_bytes(b"city,y\n" + rows.encode("gbk"))
    note = sniff(tmp_path / "gbk.csv").note or ""
    assert note.startswith("read as Windows-1252") and "another encoding's (GBK" in note
    latin = "".join(f"{c},{i}\n" for i, c in enumerate(["Köln", "München", "Besançon"] * 10))
    (tmp_path / "latin.csv").write_bytes(b"city,y\n" + latin.encode("latin-1"))
    assert (
        sniff(tmp_path / "latin.csv").note == "read as Windows-1252 (Latin-1) text, not being UTF-8"
    )


def test_excels_separator_line_names_the_separator_and_is_not_the_header(
    tmp_path: Path, tiny_model: TrainedModel
) -> None:
    table = make_tiny_table(rows=30)
    for name, line, separator in [
        ("semi.csv", "sep=;", ";"),
        ("quoted.csv", '"sep=;"', ";"),
        ("tabs.csv", "sep=\t", "\t"),
        ("commas.csv", "SEP=,", ","),
    ]:
        body = table.to_csv(sep=separator, decimal="," if separator == ";" else ".", index=False)
        (tmp_path / name).write_text(f"{line}\n{body}", encoding="utf-8-sig")
        frame = datasets.read_table(tmp_path / name)
        assert list(frame.columns) == list(table.columns), name
        assert np.allclose(frame["bmi"], table["bmi"]) and len(frame) == len(table), name
    predictor = Predictor.load(tiny_model.artifact.directory)
    rows = table.drop(columns="charges").head(4).to_csv(sep=";", decimal=",", index=False)
    (tmp_path / "new.csv").write_text(f"sep=;\n{rows}")
    done = predict_file(predictor, tmp_path / "new.csv", tmp_path / "out.csv")
    assert done.rows == 4


def test_title_lines_above_the_header_are_left_out_and_said(
    tmp_path: Path, tiny_model: TrainedModel
) -> None:
    table = make_tiny_table(rows=30)
    body = table.to_csv(index=False)
    semi = table.to_csv(sep=";", decimal=",", index=False)
    for name, text in [
        ("title.csv", f"Insurance export\n2024-05-01\n\n{body}"),
        ("padded.csv", f"Insurance export;;;;;\n{semi}"),  # Excel pads a title cell
        ("excel.csv", f"sep=;\nInsurance export\n{semi}"),
        ("comment.csv", f"# Insurance export, 2024-05-01, by team A\n# rows: 30\n{body}"),
        ("quoted.csv", f'"Insurance export, May"\n{body}'),
        ("bom.csv", f"\ufeff# Insurance export, 2024\n{body}"),  # Excel's UTF-8 mark first
        ("listed.csv", f"# Insurance export: age, sex, bmi, charges\n{body}"),
        ("bomquoted.csv", f'\ufeff"Insurance export, May",,\r\n{body}'),
    ]:
        (tmp_path / name).write_text(text)
        frame = datasets.read_table(tmp_path / name, expected=["charges"])
        assert list(frame.columns) == list(table.columns), name
        assert np.allclose(frame["bmi"], table["bmi"]) and len(frame) == len(table), name
        assert (
            "without the lines above its header ('Insurance export"
            in frame.attrs[datasets.NOTES][0]
        ), name
    # Not titles: a first line naming an expected column (a header naming only its first
    # column, a one-column file whose values hold a bar), or part of a header cell written
    # over two lines (Excel's Alt+Enter); and without names to look for, no line is a title.
    (tmp_path / "named.csv").write_text("id,,\n1,2,3\n4,5,6\n")
    assert sniff(tmp_path / "named.csv", expected=["id"]).skipped == 0
    (tmp_path / "bars.csv").write_text("variant\nXL|blue\nS|red\n")
    assert sniff(tmp_path / "bars.csv", expected=["variant"]).skipped == 0
    (tmp_path / "two.csv").write_text('"Patient age\n(years)",charges\n1,2\n3,4\n')
    assert sniff(tmp_path / "two.csv", expected=["charges"]).skipped == 0
    (tmp_path / "hash.csv").write_text("#,age,charges\n1,2,3\n")  # a header naming `#`
    assert sniff(tmp_path / "hash.csv", expected=["charges"]).skipped == 0
    (tmp_path / "plain.csv").write_text("Insurance export\n" + body)
    assert sniff(tmp_path / "plain.csv").skipped == 0
    predictor = Predictor.load(tiny_model.artifact.directory)
    rows = table.drop(columns="charges").head(3).to_csv(index=False)
    (tmp_path / "new.csv").write_text(f"Rows to score\n\n{rows}")
    done = predict_file(predictor, tmp_path / "new.csv", tmp_path / "out.csv")
    assert done.rows == 3 and "Rows to score" in done.warnings[0]
    assert list(pd.read_csv(tmp_path / "out.csv").columns)[:2] == ["age", "bmi"]
