from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabship import dates
from tabship.errors import RecordError
from tabship.feature import Feature
from tabship.predictor import Predictor
from tabship.profile import infer_schema
from tabship.train import TrainOptions, train
from tabship.workflow import train_model


def test_parts_match_the_calendar() -> None:
    rng = np.random.default_rng(3)
    seconds = rng.integers(-2_000_000_000, 4_000_000_000, 2_000)
    stamps = seconds.astype("datetime64[s]")
    found = dates.parts(stamps, with_time=True)
    index = pd.DatetimeIndex(stamps)
    assert np.array_equal(found["year"], index.year)
    assert np.array_equal(found["month"], index.month)
    assert np.array_equal(found["day"], index.day)
    assert np.array_equal(found["day_of_week"], index.day_of_week)
    assert np.array_equal(found["day_of_year"], index.day_of_year)
    assert np.array_equal(found["hour"], index.hour)


def test_missing_dates_give_missing_parts() -> None:
    found = dates.parts(np.array(["2024-02-29", "NaT"], dtype="datetime64[s]"), with_time=False)
    assert list(found) == list(dates.DATE_PARTS)
    assert [found[p][0] for p in dates.DATE_PARTS] == [2024, 2, 29, 3, 60]
    assert all(np.isnan(found[p][1]) for p in dates.DATE_PARTS)


@pytest.mark.parametrize(
    ("text", "day_first", "expected"),
    [
        ("2024-05-31", False, "2024-05-31T00:00:00"),
        ("2024-05-31T14:30", False, "2024-05-31T14:30:00"),
        ("2024-05-31 14:30:15.25+02:00", False, "2024-05-31T14:30:00"),
        ("2024-05-31t14:30:00z", False, "2024-05-31T14:30:00"),  # RFC 3339 takes lower case
        ("20240531", False, "2024-05-31T00:00:00"),
        ("05/31/2024", False, "2024-05-31T00:00:00"),
        ("31/05/2024", True, "2024-05-31T00:00:00"),
        ("31.05.2024 08:00", True, "2024-05-31T08:00:00"),
    ],
)
def test_parse_reads_iso_and_common_formats(text: str, day_first: bool, expected: str) -> None:
    assert str(dates.parse([text], day_first)[0]) == expected


@pytest.mark.parametrize("text", ["2023-02-30", "yesterday", "31/05/2024", "2024-13-01", ""])
def test_parse_gives_nat_for_what_is_not_a_date(text: str) -> None:
    assert np.isnat(dates.parse([text])[0])


def test_day_first_is_decided_by_the_column() -> None:
    assert dates.day_first(["01/02/2024", "25/02/2024"])
    assert not dates.day_first(["01/02/2024", "02/25/2024"])


def seasonal_table(rows: int = 1_200, seed: int = 4) -> pd.DataFrame:
    """Sales that follow the season and the weekday; the date is the only thing that knows."""
    rng = np.random.default_rng(seed)
    day = np.datetime64("2021-01-01") + rng.integers(0, 3 * 365, rows).astype("timedelta64[D]")
    found = dates.parts(day, with_time=False)
    season = 100 * np.sin(2 * np.pi * found["day_of_year"] / 365.25)
    weekend = 40 * (found["day_of_week"] >= 5)
    noise_feature = rng.uniform(0, 1, rows)
    text = [str(d) if i % 50 else "not recorded" for i, d in enumerate(day)]
    return pd.DataFrame(
        {
            "day": text,
            "shop": rng.choice(["a", "b"], rows),
            "other": noise_feature,
            "sales": 500 + season + weekend + rng.normal(0, 10, rows),
        }
    )


def test_profile_recognises_date_text_and_datetime_columns() -> None:
    frame = seasonal_table(200).assign(
        stamp=pd.date_range("2024-01-01 06:00", periods=200, freq="7h")
    )
    schema, _ = infer_schema(frame, "sales")
    by_name = {f.name: f for f in schema.features}
    assert by_name["day"].kind == "date" and by_name["day"].dtype == "date"
    assert by_name["day"].allow_missing  # "not recorded" is a missing date, not a category
    assert by_name["stamp"].dtype == "datetime"
    assert by_name["stamp"].inputs[-1] == "stamp.hour"
    assert "day.day_of_year" in schema.input_names and "day" not in schema.input_names


def test_a_time_zone_is_dropped_not_converted_on_every_path() -> None:
    """Berlin midnights are the first hour of their day, whether typed, objects or text."""
    from tabship.columnar import typed_cells
    from tabship.schema import Schema

    local = pd.date_range("2024-03-29", periods=6, freq="1D", tz="Europe/Berlin")
    feature = infer_schema(pd.DataFrame({"at": local, "y": range(6)}), "y")[0].features[0]
    schema = Schema((feature,))
    typed = schema.validate_frame(pd.DataFrame({"at": local}))
    objects = schema.validate_frame(pd.DataFrame({"at": list(local.to_pydatetime())}, dtype=object))
    texts = schema.validate_frame(pd.DataFrame({"at": [t.isoformat() for t in local]}))
    request = schema.validate([{"at": t.isoformat()} for t in local])
    assert feature.minimum == pd.Timestamp("2024-03-29").timestamp()  # its wall-clock time
    for batch in (objects, texts, request):
        assert all(np.array_equal(batch.columns[n], typed.columns[n]) for n in typed.columns)
    assert typed.columns["at.day"].ravel().tolist() == [29, 30, 31, 1, 2, 3]  # not 28, 29, ...
    assert typed_cells(pd.DataFrame({"at": list(local)}, dtype=object))["at"].dt.hour.eq(0).all()


def test_date_features_beat_dropping_the_date() -> None:
    table = seasonal_table()
    options = TrainOptions(target="sales", folds=3, models=["hist_gradient_boosting", "ridge"])
    with_date = train(table, options)
    without = train(table.drop(columns=["day"]), options)
    assert with_date.chosen.mean["r2"] > 0.9
    assert with_date.chosen.mean["r2"] > without.chosen.mean["r2"] + 0.5


def test_a_date_model_serves_iso_strings_on_both_engines(tmp_path: Path) -> None:
    seasonal_table().to_csv(tmp_path / "sales.csv", index=False)
    options = TrainOptions(target="sales", folds=3, models=["hist_gradient_boosting"])
    trained = train_model(str(tmp_path / "sales.csv"), options, tmp_path / "m")
    assert trained.engine == "onnx"
    meta = json.loads((tmp_path / "m" / "tabship.json").read_text())
    day = next(f for f in meta["schema"] if f["name"] == "day")
    assert day["kind"] == "date" and day["parts"][0] == "day.year"
    records = [
        {"day": "2024-04-01", "shop": "a", "other": 0.5},
        {"day": "2024-10-01T10:00", "shop": "a", "other": 0.5},
        {"day": None, "shop": "a", "other": 0.9},
    ]
    by_onnx = Predictor.load(tmp_path / "m", engine="onnx").predict(records).values
    by_sklearn = Predictor.load(tmp_path / "m", engine="sklearn").predict(records).values
    assert np.allclose(by_onnx, by_sklearn, rtol=1e-4)
    assert by_onnx[0] > by_onnx[1] + 150  # the season's peak against its trough
    with pytest.raises(RecordError, match="day"):
        Predictor.load(tmp_path / "m").predict([{"day": "31st of May", "shop": "a", "other": 1}])


def test_a_datetime_fields_examples_are_the_rfc_3339_its_schema_names() -> None:
    from jsonschema import Draft4Validator, FormatChecker

    from tabship.schema import Schema
    from tabship.serve.contract import example_record, feature_schema

    low, high = (
        float(np.datetime64(t, "s").astype(np.int64))
        for t in ("2021-01-01T06:00", "2021-04-26T10:16")
    )
    when = Feature("when", "date", "datetime", False, minimum=low, maximum=high)
    documented = feature_schema(when)
    checked = Draft4Validator(documented, format_checker=FormatChecker())
    examples = [documented["example"], example_record(Schema((when,)))["when"]]
    assert examples[0] == "2021-04-26T10:16:00Z"
    for text in examples:
        assert checked.is_valid(text), text
        _, problem, warning = when.read(text)
        assert problem is None and warning is None


def test_slashed_dates_are_not_guessed_when_training_wrote_none() -> None:
    # A training column of ISO dates says nothing of day/month order: only a slashed date
    # that reads one way is taken (03/04/2020 was silently 4 March, 25/12/2020 refused).
    assert dates.slash_order(["2020-04-03", "2021-01-31"]) is None
    assert dates.slash_order(["31/01/2024", "01/02/2024"]) is True
    assert dates.slash_order(["01/31/2024"]) is False
    read = dates.parse(["25/12/2020", "12/25/2020", "03/04/2020", "2020-04-03"], None)
    assert [str(v) for v in read.astype("datetime64[D]")] == [
        "2020-12-25",
        "2020-12-25",
        "NaT",
        "2020-04-03",
    ]
    day = Feature("d", "date", "date", allow_missing=False, day_first=None, minimum=0, maximum=1e9)
    assert Feature.from_dict(day.to_dict()).day_first is None
    _, problem, _ = day.read_cell("03/04/2020")
    assert problem is not None and "reads as day/month and as month/day" in problem
    # A card from before kept a boolean, read as before.
    assert Feature.from_dict({**day.to_dict(), "day_first": False}).day_first is False


def test_english_month_names_are_dates() -> None:
    read = dates.parse(
        ["25 Dec 2020", "25-Dec-2020", "December 25, 2020", "Dec 25th 2020", "3 Foo 2020"], None
    )
    assert [str(v) for v in read.astype("datetime64[D]")] == ["2020-12-25"] * 4 + ["NaT"]
    days = pd.Series(pd.date_range("2020-01-01", periods=400).strftime("%d %b %Y"))
    schema, notes = infer_schema(pd.DataFrame({"d": days, "y": np.arange(400.0)}), "y")
    assert schema.features[0].kind == "date" and notes == []
