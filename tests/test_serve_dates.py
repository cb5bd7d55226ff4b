"""A model with a date column, served: ISO strings in the API, a date input on the form,
OpenAPI's date format, a bad date named, a date outside training warned about."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tabship.batch import predict_file
from tabship.predictor import Predictor
from tabship.serve.app import App, create_app
from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model


@pytest.fixture(scope="module")
def dated_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    rng = np.random.default_rng(0)
    days = pd.date_range("2021-01-01", periods=400, freq="D")
    season = 30 * np.sin(2 * np.pi * days.day_of_year.to_numpy() / 365)
    frame = pd.DataFrame(
        {
            "day": days.strftime("%Y-%m-%d"),
            "shop": rng.choice(["north", "south"], len(days)),
            "sales": 100 + season + rng.normal(0, 3, len(days)),
        }
    )
    folder = tmp_path_factory.mktemp("dated")
    frame.to_csv(folder / "sales.csv", index=False)
    options = TrainOptions(target="sales", folds=3, models=["ridge", "gradient_boosting"])
    return train_model(str(folder / "sales.csv"), options, folder / "model")


def ask(app: App, calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tabship") as client:
            return [await client.request(m, path, **kw) for m, path, kw in calls]

    return asyncio.run(scenario())


def test_dates_are_served_as_iso_strings_with_a_date_input(dated_model: TrainedModel) -> None:
    card = dated_model.artifact.card
    assert [f.kind for f in card.schema.features] == ["date", "categorical"]
    app = create_app(Predictor.load(dated_model.artifact.directory))
    summer = {"day": "2021-07-01", "shop": "north"}
    batch, bad, page, spec, form = ask(
        app,
        [
            (
                "POST",
                "/v1/predict",
                {"json": {"instances": [summer, {**summer, "day": "2031-07-01"}]}},
            ),
            ("POST", "/predict_api", {"json": {**summer, "day": "31st of June"}}),
            ("GET", "/", {}),
            ("GET", "/openapi.json", {}),
            ("POST", "/predict", {"data": summer}),
        ],
    )
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2
    assert batch.json()["warnings"] == [
        "row 1: day: 2031-07-01 is outside the training range 2021-01-01 to 2022-02-04; "
        "the prediction is an extrapolation"
    ]
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "day"
    assert 'name="day" type="date" min="2021-01-01" max="2022-02-04"' in page.text
    day = spec.json()["paths"]["/predict_api"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["properties"]["day"]
    assert day["type"] == "string" and day["format"] == "date"
    assert form.status_code == 200 and f"{batch.json()['predictions'][0]:,.2f}" in form.text


def test_a_file_with_dates_is_predicted_like_the_api(
    dated_model: TrainedModel, tmp_path: Path
) -> None:
    rows = pd.DataFrame({"day": ["2021-03-05", "2021-09-05"], "shop": ["north", "south"]})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predictor = Predictor.load(dated_model.artifact.directory)
    summary = predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.csv")
    assert summary.warnings == []
    late = rows.assign(day=["2031-03-05", "2021-09-05"])
    late.to_csv(tmp_path / "late.csv", index=False)
    warned = predict_file(predictor, tmp_path / "late.csv", tmp_path / "late-out.csv")
    # The same range rule as the API, summed per column for a file.
    assert warned.warnings == [
        "day: 1 row outside the training range 2021-01-01 to 2022-02-04; "
        "their predictions are extrapolations"
    ]
    scored = pd.read_csv(tmp_path / "out.csv")
    api = predictor.predict(rows.to_dict(orient="records")).values
    assert np.allclose(scored["predicted_sales"], api, rtol=1e-6)
