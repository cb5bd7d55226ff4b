from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabship.batch import predict_file
from tabship.errors import ConfigError, DatasetError, OutputExistsError, RecordError
from tabship.outputs import PUBLISHED_MODE
from tabship.predictor import Predictor
from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model

from .conftest import make_tiny_table


@pytest.fixture
def predictor(tiny_model: TrainedModel) -> Predictor:
    return Predictor.load(tiny_model.artifact.directory)


@pytest.fixture
def new_rows(tmp_path: Path) -> Path:
    path = tmp_path / "new.csv"
    make_tiny_table(rows=250, seed=99).drop(columns="charges").to_csv(path, index=False)
    return path


def test_scores_csv_in_chunks_like_one_batch(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    chunked = predict_file(predictor, new_rows, tmp_path / "a.csv", chunk_rows=40)
    whole = predict_file(predictor, new_rows, tmp_path / "b.csv", chunk_rows=10_000)
    assert chunked.rows == whole.rows == 250
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["age", "bmi", "children", "smoker", "region", "predicted_charges"]
    records = pd.read_csv(new_rows).head(5).to_dict(orient="records")
    assert np.allclose(a["predicted_charges"].head(5), predictor.predict(records).values, rtol=1e-5)


def test_the_header_comes_out_as_it_went_in(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    """An unnamed column keeps its empty name in a CSV (not the reader's `Unnamed: 0`); two
    columns of one name are refused, not scored by the first and renamed `age.1`; a file of
    a header only, or an output that is neither CSV nor Parquet, is said as such."""
    lines = new_rows.read_text().splitlines()
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text(
        "\n".join(["," + lines[0], *(f"{n}," + line for n, line in enumerate(lines[1:]))])
    )
    predict_file(predictor, unnamed, tmp_path / "out.csv", chunk_rows=40)
    header = (tmp_path / "out.csv").read_text().splitlines()[0]
    assert header == '"","age","bmi","children","smoker","region","predicted_charges"'
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join([lines[0] + ",age", *(line + ",1" for line in lines[1:])]))
    with pytest.raises(DatasetError, match="columns 1 and 6 are both called 'age'"):
        predict_file(predictor, twice, tmp_path / "twice-out.csv")
    header_only = tmp_path / "header.csv"
    header_only.write_text(lines[0] + "\n")
    with pytest.raises(DatasetError, match="header.csv has no rows to predict"):
        predict_file(predictor, header_only, tmp_path / "header-out.csv")
    with pytest.raises(ConfigError, match="written as .csv or .parquet"):
        predict_file(predictor, new_rows, tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out.csv"]


def test_scores_parquet_to_parquet(predictor: Predictor, new_rows: Path, tmp_path: Path) -> None:
    source = tmp_path / "new.parquet"
    pd.read_csv(new_rows).to_parquet(source)
    predict_file(predictor, source, tmp_path / "out.parquet", chunk_rows=64)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 250 and out["predicted_charges"].notna().all()


def test_refuses_to_overwrite_unless_forced(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("keep me\n")
    with pytest.raises(OutputExistsError, match="pass --force"):
        predict_file(predictor, new_rows, target)
    assert target.read_text() == "keep me\n"
    with pytest.raises(OutputExistsError, match="is the input file"):
        predict_file(predictor, new_rows, new_rows, force=True)
    predict_file(predictor, new_rows, target, force=True)
    assert len(pd.read_csv(target)) == 250


def test_bad_row_names_its_file_row_and_leaves_no_output(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(new_rows)
    frame["age"] = frame["age"].astype(object)
    frame.loc[130, "age"] = "old"
    frame.to_csv(new_rows, index=False)
    with pytest.raises(RecordError) as caught:
        predict_file(predictor, new_rows, tmp_path / "out.csv", chunk_rows=50)
    assert [str(p) for p in caught.value.problems] == ["row 131: age: must be a number, got 'old'"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


def test_unseen_categories_are_counted_over_chunks_or_refused_when_strict(
    tiny_model: TrainedModel, new_rows: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(new_rows)
    frame.loc[[3, 130, 131, 249], "region"] = "west"
    frame.loc[7, "smoker"] = "often"
    frame.to_csv(new_rows, index=False)
    lenient = Predictor.load(tiny_model.artifact.directory)
    summary = predict_file(lenient, new_rows, tmp_path / "out.csv", chunk_rows=50)
    assert summary.rows == 250 and summary.unseen == {"region": 4, "smoker": 1}
    assert pd.read_csv(tmp_path / "out.csv")["predicted_charges"].notna().all()
    strict = Predictor.load(tiny_model.artifact.directory, strict_categories=True)
    with pytest.raises(RecordError) as caught:
        predict_file(strict, new_rows, tmp_path / "strict.csv", chunk_rows=50)
    problems = [str(problem) for problem in caught.value.problems]
    assert "row 8: smoker: 'often' is not one of the 2 values seen in training" in problems[0]
    assert any(p.startswith("row 4: region: 'west' is not one of the 3 values") for p in problems)
    assert not (tmp_path / "strict.csv").exists()


def test_rows_outside_the_training_range_are_warned_once_per_column_for_a_file(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(new_rows)
    frame.loc[[3, 60, 130, 249], "bmi"] = 500.0  # in four of the five chunks
    frame.loc[[10, 200], "age"] = 130
    frame.to_csv(new_rows, index=False)
    chunked = predict_file(predictor, new_rows, tmp_path / "out.csv", chunk_rows=50)
    whole = predict_file(predictor, new_rows, tmp_path / "whole.csv", chunk_rows=10_000)
    assert chunked.warnings == whole.warnings  # summed over the chunks, one line per column
    assert [note.split(":")[0] for note in chunked.warnings] == ["age", "bmi"]
    bmi = chunked.warnings[1]
    assert int(bmi.split()[1]) >= 4 and bmi.endswith("their predictions are extrapolations")


HOSTILE_CELLS = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "safe", "-3", "+1.5e3", None]


def test_formula_cells_are_guarded_in_csv_only(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(new_rows).head(len(HOSTILE_CELLS))
    frame["note"] = HOSTILE_CELLS
    frame["=HYPERLINK()"] = "x"
    frame["balance"] = [-5.0, 1.0, -2.5, 0.0, 3.0, -1.0, 2.0, -3.0, 4.0, 5.0]
    source = tmp_path / "in.parquet"  # Parquet keeps the tab and CR cells exactly
    frame.to_parquet(source)
    predict_file(predictor, source, tmp_path / "out.csv", chunk_rows=4)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out["note"]) == [
        "'=1+2", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\rx", "safe", "-3", "+1.5e3", "",
    ]  # fmt: skip
    assert "'=HYPERLINK()" in out.columns and "=HYPERLINK()" not in out.columns
    assert list(out["balance"]) == list(frame["balance"])  # numbers untouched
    raw = predict_file(predictor, source, tmp_path / "raw.csv", formula_guard=False)
    verbatim = pd.read_csv(raw.output, keep_default_na=False)
    assert list(verbatim["note"])[:6] == HOSTILE_CELLS[:6] and "=HYPERLINK()" in verbatim.columns
    assert list(verbatim["predicted_charges"]) == list(out["predicted_charges"])
    predict_file(predictor, source, tmp_path / "out.parquet")
    assert list(pd.read_parquet(tmp_path / "out.parquet")["note"])[:9] == HOSTILE_CELLS[:9]


def test_predicted_labels_are_guarded(tmp_path: Path) -> None:
    frame = make_tiny_table()
    frame["charges"] = np.where(frame["smoker"] == "yes", "=HIGH()", "@low")
    frame.to_csv(tmp_path / "t.csv", index=False)
    options = TrainOptions(target="charges", folds=2, models=["logistic"])
    model = train_model(str(tmp_path / "t.csv"), options, tmp_path / "m")
    predictor = Predictor.load(model.artifact.directory)
    predict_file(predictor, tmp_path / "t.csv", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert set(out["predicted_charges"]) == {"'=HIGH()", "'@low"}
    assert set(out["charges"]) == {"'=HIGH()", "'@low"}
    assert {"'probability_=HIGH()", "probability_@low"} & set(out.columns) == {"probability_@low"}


def test_classification_adds_probability_columns(
    cancer_model: TrainedModel, cancer_csv: Path, tmp_path: Path
) -> None:
    predictor = Predictor.load(cancer_model.artifact.directory)
    predict_file(predictor, cancer_csv, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert {"predicted_diagnosis", "probability_benign", "probability_malignant"} <= set(
        out.columns
    )
    assert (out["predicted_diagnosis"] == out["diagnosis"]).mean() > 0.9


def test_an_output_that_is_a_folder_or_a_link_is_refused_by_name(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "scores"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder; give a file name"):
        predict_file(predictor, new_rows, folder, force=True)
    # A dangling link is a file the user made: a write would create its target unasked.
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(OutputExistsError, match="pass --force"):
        predict_file(predictor, new_rows, link)
    assert link.is_symlink() and not (tmp_path / "elsewhere.csv").exists()


def test_the_predictions_file_is_readable_like_any_written_file(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    predict_file(predictor, new_rows, out)
    assert out.stat().st_mode & 0o777 == PUBLISHED_MODE  # not the temporary file's 0600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """A linear model with a boolean column, trained from a CSV that spells it true/false."""
    folder = tmp_path_factory.mktemp("flagged")
    table = make_tiny_table()
    table["insured"] = np.where(table.index % 3 == 0, "true", "false")
    table.to_csv(folder / "flagged.csv", index=False)
    options = TrainOptions(target="charges", folds=2, models=["ridge"])
    trained = train_model(str(folder / "flagged.csv"), options, folder / "m")
    return Predictor.load(trained.artifact.directory)


def test_a_boolean_column_is_read_in_every_spelling_training_read(
    flagged: Predictor, tmp_path: Path
) -> None:
    assert {f.name: f.dtype for f in flagged.schema.features}["insured"] == "bool"
    rows = make_tiny_table(rows=4, seed=5).drop(columns="charges")
    spelled = rows.assign(insured=["true", "TRUE", "false", "FALSE"])
    (tmp_path / "spelled.csv").write_text(spelled.to_csv(index=False))
    done = predict_file(flagged, tmp_path / "spelled.csv", tmp_path / "out.csv")
    assert done.unseen == {} and done.warnings == []
    typed = flagged.predict(rows.assign(insured=[True, True, False, False]).to_dict("records"))
    assert np.allclose(pd.read_csv(done.output)["predicted_charges"], typed.values, rtol=1e-6)
    texts = flagged.predict(spelled.to_dict("records"))  # a request's strings, the same
    assert texts.warnings == [] and np.allclose(texts.values, typed.values)


def test_columns_the_model_does_not_use_are_copied_exactly(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=5, seed=3).drop(columns="charges").astype(str)
    rows["zip"] = ["02134", "00501", "007", "NA", ""]
    rows["note"] = ["None", "#N/A", "n/a", "1e3", "1,5"]
    source = tmp_path / "rows.csv"
    rows.to_csv(source, index=False)
    predict_file(predictor, source, tmp_path / "out.csv")
    written = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(written["zip"]) == ["02134", "00501", "007", "NA", ""]
    assert list(written["note"]) == ["None", "#N/A", "n/a", "1e3", "1,5"]
    predict_file(predictor, source, tmp_path / "out.parquet")
    assert list(pd.read_parquet(tmp_path / "out.parquet")["zip"]) == list(rows["zip"])


def test_a_category_spelled_missing_is_predicted_as_missing_and_copied_as_written(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=4, seed=6).drop(columns="charges")
    spelled = rows.assign(region=["NA", "None", "null", rows["region"][3]])
    source = tmp_path / "rows.csv"
    spelled.to_csv(source, index=False)
    done = predict_file(predictor, source, tmp_path / "out.csv")
    written = pd.read_csv(done.output, dtype=str, keep_default_na=False)
    assert list(written["region"]) == list(spelled["region"])
    requested = predictor.predict(spelled.to_dict("records"))  # a request's "NA" is missing too
    records = rows.to_dict("records")
    blank = predictor.predict([{**r, "region": None} for r in records[:3]] + records[3:])
    assert np.allclose(written["predicted_charges"].astype(float), blank.values, rtol=1e-6)
    assert np.allclose(requested.values, blank.values)
    assert done.unseen == {} and done.warnings[-1] == (
        "region: 3 cells empty, though training had no gaps here; predicted as for a value "
        "unseen in training"
    )


def test_a_column_that_changes_type_between_chunks_still_makes_one_parquet_file(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=6, seed=4).drop(columns="charges")
    rows["bmi"] = [30, 31, 32, 30.5, 31.5, 29]  # whole numbers in the first chunk only
    rows["note"] = ["5", "6", "7", "abc", "5.5", ""]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    done = predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.parquet", chunk_rows=3)
    out = pd.read_parquet(done.output)
    assert list(out["note"]) == ["5", "6", "7", "abc", "5.5", ""]
    assert list(out["bmi"]) == [30, 31, 32, 30.5, 31.5, 29]


def test_a_labelled_csv_scored_into_parquet_keeps_its_target_as_numbers(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=6, seed=4)
    rows["charges"] = ["1200.5", "", "NA", "abc", "980", "1e3"]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    done = predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.parquet", chunk_rows=3)
    out = pd.read_parquet(done.output)
    # Typed as `predicted_charges` is, so the two compare; the one cell that is not a number
    # is said, by row, never dropped silently, and a CSV output keeps it as written.
    assert out["charges"].dtype == out["predicted_charges"].dtype == np.float64
    assert out["charges"].tolist()[:1] + out["charges"].tolist()[4:] == [1200.5, 980, 1000]
    assert out["charges"].isna().tolist() == [False, True, True, True, False, False]
    assert done.warnings == [
        "the input's 'charges' column is written as number values, as the predictions are; "
        "1 cell that is not (row 4 'abc') left empty there (a CSV output keeps every cell as "
        "written)"
    ]
    kept = predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.csv")
    assert pd.read_csv(kept.output, dtype=str, keep_default_na=False)["charges"].tolist() == [
        "1200.5", "", "NA", "abc", "980", "1e3"
    ]  # fmt: skip
    assert kept.warnings == []


def test_a_column_named_like_the_prediction_is_kept_and_the_new_one_named_beside_it(
    predictor: Predictor, new_rows: Path, tmp_path: Path
) -> None:
    scored = pd.read_csv(new_rows).assign(predicted_charges="last month's")
    scored.to_csv(tmp_path / "scored.csv", index=False)
    done = predict_file(predictor, tmp_path / "scored.csv", tmp_path / "again.csv")
    out = pd.read_csv(done.output)
    assert (out["predicted_charges"] == "last month's").all()
    assert out["predicted_charges_2"].notna().all()
    assert done.warnings[0] == (
        "the input has a column 'predicted_charges', kept as it is; the predictions are in "
        "'predicted_charges_2'"
    )


def test_an_answer_past_float32_names_the_file_row(flagged: Predictor, tmp_path: Path) -> None:
    rows = make_tiny_table(rows=5, seed=6).drop(columns="charges").assign(insured="true")
    rows["bmi"] = rows["bmi"].astype(float)
    rows.loc[2, "bmi"] = 3e38  # within the inputs' bound; the linear model's answer is not
    rows.to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(
        RecordError, match=r"rows.csv: row 3: \(record\): the model gives no finite"
    ):
        predict_file(flagged, tmp_path / "rows.csv", tmp_path / "out.csv", chunk_rows=2)


def test_a_file_that_is_no_text_gets_advice(predictor: Predictor, tmp_path: Path) -> None:
    rows = make_tiny_table(rows=3, seed=2).drop(columns="charges").assign(note="x")
    # Bytes that neither UTF-8 nor Windows-1252 (the fallback for Latin-1 files) can read.
    content = rows.to_csv(index=False).encode().replace(b"x", b"\x81\x8d")
    (tmp_path / "binary.csv").write_bytes(content)
    with pytest.raises(DatasetError, match="it is not UTF-8 text; save it as UTF-8"):
        predict_file(predictor, tmp_path / "binary.csv", tmp_path / "out.csv")


def test_a_file_with_another_separator_is_read_as_written(
    predictor: Predictor, tmp_path: Path
) -> None:
    make_tiny_table(rows=3).to_csv(tmp_path / "semi.csv", sep=";", index=False)
    done = predict_file(predictor, tmp_path / "semi.csv", tmp_path / "out.csv")
    assert done.rows == 3 and done.warnings == ["read with semicolons between values"]


def test_a_boolean_column_is_documented_as_the_booleans_and_texts_it_takes(
    flagged: Predictor,
) -> None:
    from jsonschema import Draft4Validator
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV30SpecValidator

    from tabship.serve.app import create_app
    from tabship.serve.contract import example_record, feature_schema

    insured = {f.name: f for f in flagged.schema.features}["insured"]
    for strict in (False, True):
        documented = Draft4Validator(feature_schema(insured, strict))
        for taken in (True, False, "True", "false", "FALSE"):
            assert documented.is_valid(taken), (strict, taken)
            assert flagged.predict([{**example_record(flagged.schema), "insured": taken}])
        assert not documented.is_valid(1)
        # A gap is filled (OpenAPI 3.0's nullable, which Draft 4 does not read), on either form.
        assert all(form["nullable"] for form in feature_schema(insured, strict)["anyOf"])
    assert Draft4Validator(feature_schema(insured, strict=True)).is_valid("maybe") is False
    assert example_record(flagged.schema)["insured"] is False
    gap = flagged.predict([{**example_record(flagged.schema), "insured": None}])
    assert gap.warnings[0].startswith("insured: empty")
    with pytest.raises(RecordError, match="insured: must be true or false, got 1"):
        flagged.predict([{**example_record(flagged.schema), "insured": 1}])
    docs = create_app(flagged).context.docs
    assert docs.table is not None
    validate(docs.render(docs.table), cls=OpenAPIV30SpecValidator)


def test_a_parquet_files_column_keeps_its_arrow_type_across_chunks(
    predictor: Predictor, tmp_path: Path
) -> None:
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_tiny_table(rows=5, seed=4).drop(columns="charges")
    table = pa.Table.from_pandas(rows, preserve_index=False).append_column(
        "amount",
        pa.array(
            [decimal.Decimal("1.00")] * 4 + [decimal.Decimal("123456.78")], pa.decimal128(18, 2)
        ),
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    # A chunk's decimals were typed by their own values: 1.00 then 123456.78 did not fit.
    predict_file(predictor, tmp_path / "rows.parquet", tmp_path / "out.parquet", chunk_rows=2)
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.schema.field("amount").type == pa.decimal128(18, 2)
    assert written.column("amount").to_pylist() == table.column("amount").to_pylist()


def test_a_csvs_whole_number_features_stay_integers_in_a_parquet_output(
    predictor: Predictor, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    rows = make_tiny_table(rows=6, seed=8).drop(columns="charges")
    text = rows.to_csv(index=False).splitlines()
    text[4] = ",".join(["", *text[4].split(",")[1:]])  # a gap in age: floats to pandas
    (tmp_path / "rows.csv").write_text("\n".join(text) + "\n")
    predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.parquet", chunk_rows=2)
    written = pq.read_table(tmp_path / "out.parquet")
    assert str(written.schema.field("age").type) == "int64"  # was double
    assert str(written.schema.field("bmi").type) == "double"
    ages = written.column("age").to_pylist()
    assert ages[3] is None and ages[:3] == rows["age"].head(3).tolist()


def test_a_file_that_cannot_be_read_is_said_so(predictor: Predictor) -> None:
    from .test_monitor_store import as_another_user, shared_folder

    with shared_folder() as folder:
        source = folder / "rows.csv"
        make_tiny_table(rows=3).drop(columns="charges").to_csv(source, index=False)
        source.chmod(0o000)
        with as_another_user(), pytest.raises(DatasetError, match="rows.csv: Permission denied"):
            predict_file(predictor, source, folder / "out.csv")


def test_one_bad_cell_among_decimal_commas_is_the_only_one_named(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=4).drop(columns="charges")
    text = rows.astype(str).assign(bmi=rows["bmi"].map(lambda v: f"{v:.1f}".replace(".", ",")))
    text.loc[2, "bmi"] = "abc"
    text.to_csv(tmp_path / "rows.csv", sep=";", index=False)
    # pandas left the column text at the one `abc`, and every `27,9` was refused too.
    with pytest.raises(RecordError) as refused:
        predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.csv")
    assert str(refused.value) == f"{tmp_path / 'rows.csv'}: row 3: bmi: must be a number, got 'abc'"


def test_a_csv_output_writes_numbers_plainly_and_parquet_types_them(
    predictor: Predictor, tmp_path: Path
) -> None:
    """The model's numbers as it read them (`030` as 30, `27,9` as 27.9): one decimal mark in
    the whole output, so a reader gets number columns."""
    rows = make_tiny_table(rows=3).drop(columns="charges").astype(str)
    rows["bmi"] = rows["bmi"].str.replace(".", ",")
    rows.loc[0, "age"], rows.loc[1, "bmi"], rows.loc[2, "bmi"] = "030", "31,50", "NA"
    rows.to_csv(tmp_path / "rows.csv", sep=";", index=False)
    predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.csv")
    written = pd.read_csv(tmp_path / "out.csv")
    assert written["age"].tolist()[0] == 30 and written["bmi"].tolist()[1] == 31.5
    assert written["bmi"].dtype.kind == "f" and pd.isna(written["bmi"].tolist()[2])
    predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.parquet")
    typed = pd.read_parquet(tmp_path / "out.parquet")
    assert typed["age"].tolist()[0] == 30 and str(typed["age"].dtype) == "Int64"
    assert typed["bmi"].tolist()[1] == 31.5 and pd.isna(typed["bmi"].tolist()[2])


def test_a_negative_decimal_comma_is_not_taken_for_a_formula(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=2).drop(columns="charges").astype(str)
    rows["amount"] = ["-1,5", "-1.234,5"]  # not the model's: copied as written
    rows.to_csv(tmp_path / "rows.csv", sep=";", index=False)
    predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.csv")
    written = pd.read_csv(tmp_path / "out.csv", dtype=str)
    assert written["amount"].tolist() == ["-1,5", "-1.234,5"]


def test_a_whole_number_past_int64_in_a_parquet_output_is_a_float_not_a_crash(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=2).drop(columns="charges").astype(str)
    rows.loc[0, "age"] = "12345678901234567890"  # read as uint64: no Int64 holds it
    rows.to_csv(tmp_path / "rows.csv", index=False)
    done = predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.parquet")
    assert done.rows == 2
    assert pd.read_parquet(tmp_path / "out.parquet")["age"].tolist()[0] == 1.2345678901234567e19


def test_a_bad_cell_in_a_whole_number_column_is_named_for_a_parquet_output(
    predictor: Predictor, tmp_path: Path
) -> None:
    rows = make_tiny_table(rows=2).drop(columns="charges").astype(str)
    rows.loc[0, "age"] = "old"
    rows.to_csv(tmp_path / "rows.csv", index=False)
    # Typing the column for Parquet failed first: "could not convert string to float: 'old'".
    with pytest.raises(RecordError, match="row 1: age: must be a number, got 'old'"):
        predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.parquet")
