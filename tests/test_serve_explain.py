"""POST /v1/explain, POST /v1/whatif and the form's charts, in-process through every layer."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pandas as pd
import pytest

from tabship.artifact import METADATA, _seal
from tabship.config import ServeSettings
from tabship.predictor import Predictor
from tabship.serve.app import App, create_app
from tabship.workflow import TrainedModel
from tests.test_serve_dates import dated_model  # noqa: F401  (a module fixture)

FORM = "application/x-www-form-urlencoded"
PATIENT = {"age": 40, "bmi": 35.0, "children": 1, "smoker": "yes", "region": "north"}


@pytest.fixture(scope="module")
def app(tiny_model: TrainedModel) -> App:
    return create_app(Predictor.load(tiny_model.artifact.directory))


def post(app: Any, path: str, body: Any, **headers: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tabship") as client:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            kind = headers.get("content_type", "application/json")
            return await client.post(path, content=content, headers={"content-type": kind})

    return asyncio.run(go())


def test_explain_answers_additive_contributions_per_record(app: App) -> None:
    answer = post(app, "/v1/explain", {"instances": [PATIENT, {**PATIENT, "smoker": "no"}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["method"] == "exact" and body["baseline"] == {"kind": "centroids", "rows": 10}
    predictions = post(app, "/v1/predict", {"instances": [PATIENT, {**PATIENT, "smoker": "no"}]})
    for item, predicted in zip(
        body["explanations"], predictions.json()["predictions"], strict=True
    ):
        assert list(item["contributions"]) == ["age", "bmi", "children", "smoker", "region"]
        total = item["base"] + sum(item["contributions"].values())
        assert total == pytest.approx(item["prediction"], rel=1e-6)
        assert item["prediction"] == pytest.approx(predicted, rel=1e-9)
    smoker = [item["contributions"]["smoker"] for item in body["explanations"]]
    assert smoker[0] > 5000 > -1000 > smoker[1]


def test_explain_validates_like_predict(app: App) -> None:
    bad = post(app, "/v1/explain", {"instances": [{**PATIENT, "bmi": "fat", "colour": 1}]})
    assert bad.status_code == 422
    fields = {item["field"] for item in bad.json()["detail"]}
    assert {"bmi", "colour"} <= fields
    # A lone record is row 0 of its batch, located as /v1/predict locates it.
    assert {tuple(item["loc"]) for item in bad.json()["detail"]} >= {
        ("body", "instances", 0, "bmi")
    }
    assert post(app, "/v1/explain", {"instances": []}).status_code == 422
    assert post(app, "/v1/explain", {"rows": [PATIENT]}).status_code == 422
    wrong = post(app, "/v1/explain", {"instances": [PATIENT], "all_classes": "yes"})
    assert wrong.status_code == 422 and "all_classes" in wrong.json()["message"]
    assert post(app, "/v1/explain", b"x", content_type="text/plain").status_code == 415
    unseen = post(app, "/v1/explain", {"instances": [{**PATIENT, "region": "mars"}]})
    assert unseen.status_code == 200 and "region" in unseen.json()["warnings"][0]


def test_explain_limit_scales_with_the_coalitions(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    # Each record costs 2^5 coalitions x 10 baseline rows = 320 engine rows.
    app = create_app(predictor, ServeSettings(max_batch=100_000))
    limit = 1_000_000 // 320
    assert app.context.explain.max_records == limit
    answer = post(app, "/v1/explain", {"instances": [PATIENT] * (limit + 1)})
    assert answer.status_code == 413
    message = answer.json()["message"]
    assert f"explain limit of {limit}" in message and "32 coalitions x 10" in message
    spec = app.context.docs.render(app.table)
    body = spec["paths"]["/v1/explain"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["instances"]["maxItems"] == limit


def test_big_explain_runs_off_the_event_loop_within_the_timeout(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    app = create_app(predictor, ServeSettings(request_timeout=0.001))
    # 100 records are 32,000 engine rows: past the inline budget, so the timeout applies.
    answer = post(app, "/v1/explain", {"instances": [PATIENT] * 100})
    assert answer.status_code == 504 and "timeout" in answer.json()["message"]
    small = post(app, "/v1/explain", {"instances": [PATIENT]})
    assert small.status_code == 200


def test_classifier_explains_the_predicted_class_and_all_on_request(
    cancer_model: TrainedModel, cancer_csv: Path
) -> None:
    app = create_app(Predictor.load(cancer_model.artifact.directory))
    row = pd.read_csv(cancer_csv).drop(columns="diagnosis").iloc[0].to_dict()
    answer = post(app, "/v1/explain", {"instances": [row], "all_classes": True})
    assert answer.status_code == 200, answer.text
    item = answer.json()["explanations"][0]
    assert answer.json()["method"] == "permutation" and set(item["error"]) == set(row)
    assert item["explained"] == item["prediction"]
    assert set(item["classes"]) == {"benign", "malignant"}
    for part in item["classes"].values():
        total = part["base"] + sum(part["contributions"].values())
        assert total == pytest.approx(part["probability"], rel=1e-6, abs=1e-9)
    assert item["classes"][item["prediction"]]["probability"] == item["probability"]
    page = post(app, "/predict", urlencode(row).encode(), content_type=FORM)
    assert page.status_code == 200
    assert f"(probability of {item['prediction']})" in page.text
    # Thirty features: the twelve that move it most get a what-if chart, in percent.
    assert page.text.count('class="whatif"') == 12
    assert re.search(r'<td class="(up|down)">[+-]\d+\.\d %</td>', page.text)


def test_whatif_answers_the_grid_and_marks_the_record(app: App) -> None:
    answer = post(app, "/v1/whatif", {"instance": PATIENT, "feature": "bmi", "points": 30})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["feature"] == "bmi" and len(body["points"]) == 30
    values = [point["value"] for point in body["points"]]
    assert values == sorted(values) and body["range"] == [values[0], values[-1]]
    single = post(app, "/predict_api", PATIENT).json()
    assert body["current"] == {"value": 35.0, "prediction": pytest.approx(single)}
    levels = post(app, "/v1/whatif", {"instance": PATIENT, "feature": "region"}).json()
    assert [p["value"] for p in levels["points"]] == ["east", "north", "south"]


def test_whatif_bad_input_names_the_field(app: App) -> None:
    cases = [
        ({"instance": PATIENT, "feature": "height"}, "feature"),
        ({"instance": PATIENT, "feature": "bmi", "points": 1}, "points"),
        ({"instance": PATIENT, "feature": "bmi", "points": 10_000}, "points"),
        ({"instance": PATIENT, "feature": "bmi", "points": 2.5}, "points"),
        ({"instance": {**PATIENT, "age": "old"}, "feature": "bmi"}, "age"),
        ({"instance": [PATIENT], "feature": "bmi"}, "instance"),
        ({"feature": "bmi"}, "instance"),
        ({"instance": PATIENT, "feature": "bmi", "colour": 1}, "colour"),
    ]
    for body, field in cases:
        answer = post(app, "/v1/whatif", body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in answer.json()["message"], (body, answer.text)


def test_old_folder_without_a_baseline_still_serves_and_explain_says_why(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    folder = tmp_path / "old"
    shutil.copytree(tiny_model.artifact.directory, folder)
    document = json.loads((folder / METADATA).read_text())
    del document["explanation"], document["metadata_sha256"]
    (folder / METADATA).write_bytes(_seal(document))
    app = create_app(Predictor.load(folder))
    assert post(app, "/predict_api", PATIENT).status_code == 200
    answer = post(app, "/v1/explain", {"instances": [PATIENT]})
    assert answer.status_code == 409 and "retrain" in answer.json()["message"]
    # What-if needs no baseline: it spans the training minimum to maximum instead.
    curve = post(app, "/v1/whatif", {"instance": PATIENT, "feature": "age", "points": 5}).json()
    assert curve["range"] == [18, 64]
    page = post(
        app,
        "/predict",
        b"age=40&bmi=35&children=1&smoker=yes&region=north",
        content_type="application/x-www-form-urlencoded",
    )
    assert page.status_code == 200 and 'id="what-if"' in page.text
    assert 'id="explanation"' not in page.text


def test_form_shows_the_waterfall_and_what_if_charts(app: App) -> None:
    page = post(
        app,
        "/predict",
        b"age=40&bmi=35&children=1&smoker=yes&region=north",
        content_type="application/x-www-form-urlencoded",
    )
    assert page.status_code == 200
    html = page.text
    assert 'id="contributions"' in html and "smoker = yes" in html
    assert html.count('class="whatif"') == 5 and html.count("<polyline") == 3
    # The charts need no script: the only one is the API-key helper, loaded from /static.
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/key.js">']
    assert "this record" in html
    signed = re.findall(r'<td class="(up|down)">([+-][\d,]+\.\d\d)</td>', html)
    assert len(signed) == 5
    explained = post(app, "/v1/explain", {"instances": [PATIENT]}).json()["explanations"][0]
    # Sorted: the biggest move comes first, in the target's unit with its sign.
    biggest = max(explained["contributions"].values(), key=abs)
    assert float(signed[0][1].replace(",", "")) == pytest.approx(biggest, abs=0.01)
    assert signed[0][0] == ("up" if biggest > 0 else "down")


def test_user_strings_in_the_charts_are_escaped(tmp_path: Path) -> None:
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    rng = np.random.default_rng(1)
    hostile = '"><img src=x onerror=alert(1)>'
    table = pd.DataFrame(
        {
            hostile: rng.normal(size=80),
            "kind": rng.choice(["<b>bold</b>", "plain"], 80),
            "y": rng.normal(size=80),
        }
    )
    table.to_csv(tmp_path / "t.csv", index=False)
    trained = train_model(
        str(tmp_path / "t.csv"), TrainOptions(target="y", folds=3, models=["ridge"]), tmp_path / "m"
    )
    app = create_app(Predictor.load(trained.artifact.directory))
    body = urlencode({hostile: "0.5", "kind": "<b>bold</b>"}).encode()
    page = post(app, "/predict", body, content_type="application/x-www-form-urlencoded")
    assert page.status_code == 200, page.text
    assert "<img" not in page.text and "<b>" not in page.text
    assert "&lt;b&gt;bold&lt;/b&gt; = " not in page.text  # labels are "feature = value"
    assert "kind = &lt;b&gt;bold&lt;/b&gt;" in page.text


def test_a_date_is_one_feature_and_its_what_if_spans_the_training_dates(
    request: pytest.FixtureRequest,
) -> None:
    model: TrainedModel = request.getfixturevalue("dated_model")
    app = create_app(Predictor.load(model.artifact.directory))
    summer = {"day": "2021-07-01", "shop": "north"}
    explained = post(app, "/v1/explain", {"instances": [summer]}).json()["explanations"][0]
    assert list(explained["contributions"]) == ["day", "shop"]
    total = explained["base"] + sum(explained["contributions"].values())
    assert total == pytest.approx(explained["prediction"], rel=1e-6)
    curve = post(app, "/v1/whatif", {"instance": summer, "feature": "day", "points": 20}).json()
    days = [point["value"] for point in curve["points"]]
    assert days[0] == "2021-01-01" and days[-1] == "2022-02-04" and len(days) == 20
    winter = post(app, "/predict_api", {**summer, "day": days[0]}).json()
    assert curve["points"][0]["prediction"] == pytest.approx(winter)
    page = post(app, "/predict", b"day=2021-07-01&shop=north", content_type=FORM)
    assert page.status_code == 200 and 'data-feature="day"' in page.text
    assert page.text.count("<polyline") == 1


def test_explain_takes_a_concurrency_slot(tiny_model: TrainedModel) -> None:
    app = create_app(
        Predictor.load(tiny_model.artifact.directory), ServeSettings(max_concurrency=2)
    )
    app.context.state.in_flight = 2  # every slot taken by requests in flight
    for path, body in (
        ("/v1/explain", {"instances": [PATIENT]}),
        ("/v1/whatif", {"instance": PATIENT, "feature": "bmi"}),
    ):
        answer = post(app, path, body)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"


def test_model_card_answer_names_the_baseline_without_its_rows(app: App) -> None:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tabship") as client:
            return await client.get("/v1/model")

    card = asyncio.run(go()).json()
    assert card["explanation"] == {
        "method": "interventional-shapley",
        "background": "centroids",
        "rows": 10,
    }
