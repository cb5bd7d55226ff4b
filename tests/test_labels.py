"""Classes come back with the type the target had: 0/1 as numbers, a flag as a boolean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tabship.batch import predict_file
from tabship.predictor import Predictor
from tabship.serve.app import create_app
from tabship.train import TrainOptions
from tabship.workflow import train_model

from .conftest import make_tiny_table
from .test_serve_v2 import request

CLASSIFIERS = ["logistic", "decision_tree"]


def _trained(tmp: Path, name: str, target: pd.Series, suffix: str = ".csv") -> Predictor:
    frame = make_tiny_table(rows=120, seed=9).drop(columns="charges").assign(label=target)
    path = tmp / f"{name}{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    options = TrainOptions(target="label", folds=3, models=CLASSIFIERS, task="classification")
    return Predictor.load(train_model(str(path), options, tmp / name).artifact.directory)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("labels")


def _ages(rows: int = 120) -> np.ndarray:
    return make_tiny_table(rows=rows, seed=9)["age"].to_numpy()


@pytest.mark.parametrize(
    ("name", "target", "suffix", "kind", "labels"),
    [
        ("codes", lambda a: np.where(a > 45, 10, 2), ".csv", "integer", [2, 10]),
        ("flags", lambda a: np.where(a > 45, "true", "false"), ".csv", "boolean", [False, True]),
        ("typed", lambda a: a > 45, ".parquet", "boolean", [False, True]),
        ("words", lambda a: np.where(a > 45, "old", "young"), ".csv", "string", ["old", "young"]),
    ],
)
def test_answers_give_classes_as_the_target_typed_them(
    folder: Path, name: str, target: Any, suffix: str, kind: str, labels: list[Any]
) -> None:
    predictor = _trained(folder, name, pd.Series(target(_ages())), suffix)
    assert predictor.card.label_type == kind and predictor.labels == labels
    record = make_tiny_table(rows=1, seed=1).drop(columns="charges").to_dict("records")[0]
    answer = predictor.predict([record]).values[0]
    assert answer in labels and type(answer) is type(labels[0])
    app = create_app(predictor)
    app.state.ready = True
    one = request(app, "POST", "/predict_api", json=record).json()
    many = request(app, "POST", "/v1/predict", json={"instances": [record]}).json()
    assert one == many["predictions"][0] == answer and type(one) is type(answer)
    # Probabilities are keyed by the label as JSON writes it: `true`, never Python's `True`.
    keys = [label if isinstance(label, str) else json.dumps(label) for label in labels]
    assert list(many["probabilities"][0]) == keys
    v2 = request(
        app,
        "POST",
        f"/v2/models/{app.context.v2.name}/infer",
        json={
            "inputs": [
                {
                    "name": n,
                    "datatype": "BYTES" if isinstance(v, str) else "FP64",
                    "shape": [1],
                    "data": [v],
                }
                for n, v in record.items()
            ]
        },
    ).json()
    assert json.loads(v2["outputs"][1]["parameters"]["classes"]) == keys
    page = request(app, "POST", "/predict", data={k: str(v) for k, v in record.items()}).text
    shown = answer if isinstance(answer, str) else json.dumps(answer)
    assert f'<output id="prediction">{shown}</output>' in page
    assert all(f"<tr><th>{key}</th>" in page for key in keys)
    spec = request(app, "GET", "/openapi.json").json()
    declared = spec["paths"]["/predict_api"]["post"]["responses"]["200"]["content"]
    assert declared["application/json"]["schema"]["enum"] == labels
    datatype = {"integer": "INT64", "boolean": "BOOL", "string": "BYTES"}[kind]
    outputs = request(app, "GET", f"/v2/models/{app.context.v2.name}").json()["outputs"]
    assert outputs[0] == {"name": "predict", "datatype": datatype, "shape": [-1]}
    # A file's predicted column is of the same type, so `y == predicted_y` can hold.
    source = folder / f"{name}{suffix}"
    done = predict_file(predictor, source, folder / f"{name}-out.parquet")
    written = pd.read_parquet(done.output)
    assert set(written["predicted_label"]) <= set(labels)
    assert [c for c in written.columns if c.startswith("probability_")] == [
        f"probability_{key}" for key in keys
    ]
    # The file's own labels too, a CSV's text included: `y == predicted_y` can hold.
    types = pq.read_schema(done.output)
    assert types.field("label").type == types.field("predicted_label").type
    assert (written["label"] == written["predicted_label"]).mean() > 0.7


def test_a_number_target_with_a_few_text_cells_names_them_rather_than_classifying() -> None:
    from tabship.errors import DataError
    from tabship.trainset import prepare

    rng = np.random.default_rng(3)
    table = pd.DataFrame({"x": rng.uniform(0, 10, 60)})
    table["y"] = (3 * table["x"] + 10).round(2).astype(str)
    table.loc[[4, 40], "y"] = ["-", "#DIV/0!"]
    # Inferred, it was a classification with a class per row ("class '33.14' has 2 rows").
    with pytest.raises(DataError, match=r"holds numbers but for 2 cells \(row 5 '-', row 41"):
        prepare(table, TrainOptions(target="y"))
    with pytest.raises(DataError, match="or pass --task classification"):
        prepare(table, TrainOptions(target="y", task="regression"))
    dressed = table.assign(y=[f"${v:,.2f}" for v in rng.uniform(1000, 50000, 60)])
    with pytest.raises(DataError, match=r"written with signs or separators \(such as '\$"):
        prepare(dressed, TrainOptions(target="y"))
    words = table.assign(y=rng.choice(["low", "mid", "high"], 60))
    with pytest.raises(DataError, match=r"is not numeric \(row 1 holds '(low|mid|high)'\)"):
        prepare(words, TrainOptions(target="y", task="regression"))
    german = table.assign(y=table["y"].str.replace(".", ",", regex=False))
    with pytest.raises(DataError, match=r"holds numbers but for 2 cells \(row 5 '-'"):
        prepare(german, TrainOptions(target="y"))
    # A few codes with one text among them stay classes.
    codes = table.assign(y=rng.choice(["1", "2", "3", "n/k"], 60))
    assert prepare(codes, TrainOptions(target="y"))[0] == "classification"


def test_a_target_too_small_for_trees_to_split_is_said() -> None:
    from tabship.labels import small_spread_note

    tiny = np.random.default_rng(1).normal(5e-9, 1e-9, 200)
    said = small_spread_note(tiny, "y")
    assert said and said[0].startswith("'y' varies by about 9e-10") and "by 1e+10" in said[0]
    assert small_spread_note(tiny * 1e6, "y") == [] and small_spread_note(np.ones(5), "y") == []


def test_classes_written_alike_but_for_case_spaces_or_yes_no_spellings_are_said() -> None:
    from tabship.labels import class_spellings_note

    yes_no = ["0", "1", "FALSE", "N", "TRUE", "Y", "no", "yes"]
    assert class_spellings_note(yes_no, "ok")[0].startswith(
        "'ok' is yes or no written 8 ways ('0', '1', 'FALSE', 'N', 'TRUE', 'Y', 'no', 'yes'), "
        "each its own class"
    )
    assert class_spellings_note(["Cat", "Dog", "cat", "cat "], "pet") == [
        "classes of 'pet' that differ only in case or spaces are kept apart ('Cat', 'cat', "
        "'cat '): write each class one way if they are one"
    ]
    assert class_spellings_note(["no", "yes"], "ok") == []  # two classes, one way each
    assert class_spellings_note(["0", "1", "2"], "level") == []  # codes, not yes and no


def test_single_letters_alone_are_not_taken_for_yes_and_no() -> None:
    from tabship.labels import class_spellings_note

    assert class_spellings_note(["F", "N", "T"], "grade") == []
    assert class_spellings_note(["0", "1", "t"], "flag") == []


def test_codes_past_a_floats_whole_numbers_stay_apart_as_text() -> None:
    from tabship.labels import encode_target, label_type

    codes = pd.Series([2**53, 2**53 + 1, 2**53 + 3] * 10)
    assert label_type(codes) == "string"
    _, classes = encode_target(codes, "classification", "y", 2)
    assert classes == ["9007199254740992", "9007199254740993", "9007199254740995"]


def test_the_yes_of_a_yes_no_pair_is_the_positive_class() -> None:
    from tabship.labels import encode_target

    for values, positive in [([-1, 1, 1], "1"), (["Yes", "No", "No"], "Yes"), (["n", "y"], "y")]:
        _, classes = encode_target(pd.Series(values * 10), "classification", "y", 2)
        assert classes[1] == positive, values
    _, classes = encode_target(pd.Series(["ok", "ok", "fraud"] * 10), "classification", "y", 2)
    assert classes[1] == "fraud"  # no yes among them: the rarer


def test_a_number_class_written_as_text_is_the_same_class() -> None:
    from tabship.classes import class_text
    from tabship.labels import encode_target

    assert [class_text(v, "integer") for v in ("1.0", "1e1", 1.0, "1.5")] == ["1", "10", "1", None]
    _, classes = encode_target(
        pd.Series([10, 20, 20] * 10), "classification", "y", 2, positive="10.0"
    )
    assert classes == ["20", "10"]  # --positive-class 10.0 was "not a class"
