"""Every route and every validation case, over real HTTP against `tabship serve`."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tabship.predictor import Predictor
from tabship.workflow import TrainedModel

from ..servers import Server

pytestmark = pytest.mark.slow

PATIENT = {
    "age": 55,
    "sex": "male",
    "bmi": 29.5,
    "children": 1,
    "smoker": "yes",
    "region": "northwest",
}


def post_json(server: Server, route: str, payload: object) -> httpx.Response:
    return httpx.post(server.url + route, json=payload, timeout=10)


def test_tutorial_notebook_request_is_predicted_with_a_warning_naming_smoker(
    server: Server,
) -> None:
    # The tutorial's own call sends smoker='male', a value never seen in training: it is
    # predicted as unknown, and /v1/predict says so by name.
    record = {**PATIENT, "bmi": 59, "smoker": "male"}
    answer = post_json(server, "/predict_api", record)
    assert answer.status_code == 200 and isinstance(answer.json(), float)
    body = post_json(server, "/v1/predict", {"instances": [record]}).json()
    assert body["warnings"][-1] == (
        "smoker: 'male' is not one of the 2 values seen in training (e.g. no, yes); "
        "predicted as unknown"
    )


def test_predict_api_returns_the_bare_number(server: Server, insurance_model: TrainedModel) -> None:
    answer = post_json(server, "/predict_api", PATIENT)
    assert answer.status_code == 200
    value = answer.json()
    expected = Predictor.load(insurance_model.artifact.directory).predict([PATIENT]).values[0]
    assert isinstance(value, float) and value == pytest.approx(expected, rel=1e-9)


def test_a_gap_is_filled_with_a_warning_as_in_predict_files(
    server: Server, insurance_model: TrainedModel, data_home: Path
) -> None:
    record = {**PATIENT, "bmi": None}
    assert post_json(server, "/predict_api", record).status_code == 200
    body = post_json(server, "/v1/predict", {"instances": [record]}).json()
    assert body["warnings"] == [
        "bmi: empty, though training had no gaps here; filled with the training median"
    ]
    median = float(pd.read_csv(data_home / "insurance.csv")["bmi"].median())
    filled = Predictor.load(insurance_model.artifact.directory).predict(
        [{**PATIENT, "bmi": median}]
    )
    assert body["predictions"][0] == pytest.approx(filled.values[0], rel=1e-6)


def test_v1_predict_batch_with_warnings_and_model(server: Server) -> None:
    instances = [PATIENT, {**PATIENT, "smoker": "no", "bmi": 70.0}]
    answer = post_json(server, "/v1/predict", {"instances": instances})
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["predictions"]) == 2 and body["predictions"][0] > body["predictions"][1]
    assert body["warnings"] == [
        "row 1: bmi: 70 is outside the training range 15.96 to 53.13; the prediction is an extrapolation"
    ]
    assert body["model"]["engine"] == "onnx" and len(body["model"]["sha256"]) == 64


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        (
            {k: v for k, v in PATIENT.items() if k != "age"},
            "age",
            "is missing; this field is required",
        ),
        ({**PATIENT, "height": 180}, "height", "is not a field of this model"),
        ({**PATIENT, "bmi": [29.5]}, "bmi", "must be a number, got [29.5]"),
        ({**PATIENT, "age": "55"}, "age", "must be a number, got '55'"),
        ({**PATIENT, "sex": 1}, "sex", "must be text, got 1"),
        ({**PATIENT, "children": 1.5}, "children", "must be a whole number"),
    ],
)
def test_bad_records_name_the_field(
    server: Server, record: dict[str, object], field: str, message: str
) -> None:
    for route, payload in (("/predict_api", record), ("/v1/predict", {"instances": [record]})):
        answer = post_json(server, route, payload)
        assert answer.status_code == 422, route
        detail = answer.json()["detail"]
        assert detail[0]["field"] == field and message in detail[0]["msg"], detail


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_422_naming_the_field(server: Server, token: str) -> None:
    body = json.dumps(PATIENT).replace('"bmi": 29.5', f'"bmi": {token}')
    answer = httpx.post(
        server.url + "/predict_api", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "bmi"


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"instances": []}, 422, "instances: is empty"),
        ({"instances": "all"}, 422, "instances: must be a list"),
        ({"rows": [PATIENT]}, 422, 'must be an object {"instances"'),
        ({"instances": [PATIENT], "extra": 1}, 422, "extra: is not allowed"),
        ({"instances": [PATIENT] * 51}, 413, "51 records is over the batch limit of 50"),
        ([PATIENT], 422, "must be an object"),
    ],
)
def test_batch_shape_errors(server: Server, payload: object, status: int, needle: str) -> None:
    answer = post_json(server, "/v1/predict", payload)
    assert answer.status_code == status
    assert needle in answer.json()["message"]


def test_limits_and_content_types(server: Server) -> None:
    big = b'{"age": "' + b"9" * (1024 * 1024) + b'"}'
    assert (
        httpx.post(
            server.url + "/predict_api", content=big, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"age": "'
        for _ in range(20):
            yield b"9" * 65536
        yield b'"}'

    streamed = httpx.post(
        server.url + "/predict_api", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    as_text = httpx.post(
        server.url + "/predict_api",
        content=json.dumps(PATIENT),
        headers={"content-type": "text/plain"},
    )
    assert as_text.status_code == 415 and "send application/json" in as_text.json()["message"]
    pickle = httpx.post(
        server.url + "/v1/predict",
        content=b"\x80\x04",
        headers={"content-type": "application/python-pickle"},
    )
    assert pickle.status_code == 415
    bad_json = httpx.post(
        server.url + "/predict_api",
        content=b"{age: 5",
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 422 and "invalid JSON" in bad_json.json()["message"]
    bad_utf8 = httpx.post(
        server.url + "/predict_api",
        content=b'{"age": "\xff"}',
        headers={"content-type": "application/json"},
    )
    assert bad_utf8.status_code == 422 and "not valid UTF-8" in bad_utf8.json()["message"]
    deep = b"[" * 100000 + b"]" * 100000
    nested = httpx.post(
        server.url + "/predict_api", content=deep, headers={"content-type": "application/json"}
    )
    assert nested.status_code == 422


def test_unknown_route_and_method(server: Server) -> None:
    assert httpx.get(server.url + "/nope").status_code == 404
    assert httpx.get(server.url + "/predict_api").status_code == 405


def test_probes_model_and_docs(server: Server) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}
    assert httpx.get(server.url + "/startupz").json() == {"status": "started"}
    model = httpx.get(server.url + "/v1/model").json()
    assert model["task"] == "regression" and model["engine"] == "onnx" and model["max_batch"] == 50
    assert [f["name"] for f in model["schema"]] == [
        "age",
        "sex",
        "bmi",
        "children",
        "smoker",
        "region",
    ]
    assert model["model"]["cv"]["mean"]["r2"] > 0.85
    assert httpx.get(server.url + "/docs").status_code == 200


def test_openapi_carries_the_real_constraints(server: Server) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    record = spec["paths"]["/predict_api"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert record["required"] == ["age", "sex", "bmi", "children", "smoker", "region"]
    assert record["additionalProperties"] is False
    smoker = record["properties"]["smoker"]
    assert "enum" not in smoker  # unseen values are predicted as unknown, not refused
    assert smoker["description"].startswith("Seen in training: 2 values (no, yes)")
    # A whole number, 2 or 2.0 alike: OpenAPI 3.0's "integer" refuses 2.0, which is taken.
    children = record["properties"]["children"]
    assert (children["type"], children["multipleOf"]) == ("number", 1)
    batch = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert (
        batch["properties"]["instances"]["maxItems"] == 50
        and batch["properties"]["instances"]["minItems"] == 1
    )


def test_form_page_and_submit_without_javascript(server: Server) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    html = page.text
    assert 'name="bmi" type="number"' in html and 'min="15.96"' in html and 'max="53.13"' in html
    assert "<option>southwest</option>" in html and "https://" not in html
    filled = {k: str(v) for k, v in PATIENT.items()}
    answer = httpx.post(server.url + "/predict", data=filled)
    assert answer.status_code == 200 and "Expected yearly charges will be" in answer.text
    empty = httpx.post(server.url + "/predict", data={**filled, "age": ""})
    assert (
        empty.status_code == 422
        and 'data-field="age">is required; it cannot be empty' in empty.text
    )
    script = httpx.post(
        server.url + "/predict", data={**filled, "region": "<script>alert(1)</script>"}
    )
    assert (
        script.status_code == 200  # an unseen region: predicted, with the warning escaped
        and "<script>alert" not in script.text
        and "&lt;script&gt;alert(1)&lt;/script&gt;&#39; is not one of the 4 values" in script.text
    )
    assert httpx.post(server.url + "/predict", json=PATIENT).status_code == 415
    assert httpx.get(server.url + "/static/style.css").status_code == 200


def test_metrics_count_requests_predictions_and_errors(server: Server) -> None:
    post_json(server, "/predict_api", PATIENT)
    post_json(server, "/predict_api", {**PATIENT, "age": "forty"})
    for region in ("mars", "venus", "mars"):
        assert post_json(server, "/predict_api", {**PATIENT, "region": region}).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values['tabship_requests_total{method="POST",route="/predict_api",status="200"}'] >= 1
    assert values['tabship_requests_total{method="POST",route="/predict_api",status="422"}'] >= 1
    assert values["tabship_predictions_total"] >= 1
    assert values['tabship_validation_errors_total{status="422"}'] >= 1
    assert (
        'tabship_request_duration_seconds_bucket{le="0.005",route="/predict_api",status="200"}'
        in values
    )
    assert "tabship_requests_in_flight" in values and "tabship_requests_open" in values
    # Labelled by the model's feature, never by the client's value.
    assert values['tabship_unseen_category_total{feature="region"}'] >= 3
    assert "mars" not in text and "venus" not in text
    assert all(math.isfinite(v) for v in values.values())


def test_one_json_log_line_per_request(server: Server) -> None:
    time.sleep(0.2)  # a line is written just after its answer; let earlier tests' lines land
    before = len(server.log_lines())
    post_json(server, "/v1/predict", {"instances": [PATIENT, PATIENT]})
    httpx.get(server.url + "/nope")
    deadline = time.monotonic() + 5
    while len(server.log_lines()) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = [json.loads(line) for line in server.log_lines()[before:]]
    assert [
        (entry["method"], entry["route"], entry["status"], entry["rows"]) for entry in lines
    ] == [
        ("POST", "/v1/predict", 200, 2),
        ("GET", "other", 404, 0),
    ]
    assert all(entry["ms"] > 0 for entry in lines)


def test_no_input_gives_a_server_error(server: Server) -> None:
    text = httpx.get(server.url + "/metrics").text
    assert 'status="5' not in text.replace('status="503"', "")
