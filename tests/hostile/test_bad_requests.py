"""I2 and I4: hand-written hostile requests, each with its exact status; every 422 names the field."""

from __future__ import annotations

import json
import pickle
import re
from typing import Any

import httpx
import pytest

from ..servers import Server

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

GOOD = {
    "age": 40,
    "sex": "female",
    "bmi": 27.5,
    "children": 2,
    "smoker": "no",
    "region": "southeast",
}
JSON = {"content-type": "application/json"}


def with_(**change: Any) -> dict[str, Any]:
    return {**GOOD, **change}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != name}


def raw(body: bytes, content_type: str = "application/json") -> tuple[bytes, dict[str, str]]:
    return body, {"content-type": content_type}


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


# (name, method, path, body: dict (sent as JSON) | (bytes, headers) | None, status, field named in the 422)
CASES: list[tuple[str, str, str, Any, int, str | None]] = [
    *[(f"missing {f}", "POST", "/predict_api", without(f), 422, f) for f in GOOD],
    # null is a gap the model fills with a warning (tests/integration/test_server.py).
    *[(f"list {f}", "POST", "/predict_api", with_(**{f: []}), 422, f) for f in GOOD],
    ("age as text", "POST", "/predict_api", with_(age="forty"), 422, "age"),
    ("bmi as list", "POST", "/predict_api", with_(bmi=[27.5]), 422, "bmi"),
    ("children as object", "POST", "/predict_api", with_(children={"n": 2}), 422, "children"),
    ("children fractional", "POST", "/predict_api", with_(children=1.5), 422, "children"),
    ("age as bool", "POST", "/predict_api", with_(age=True), 422, "age"),
    ("sex as number", "POST", "/predict_api", with_(sex=1), 422, "sex"),
    ("smoker as bool", "POST", "/predict_api", with_(smoker=True), 422, "smoker"),
    ("region as list", "POST", "/predict_api", with_(region=["southeast"]), 422, "region"),
    ("smoker unknown level", "POST", "/predict_api", with_(smoker="male"), 422, "smoker"),
    ("region unknown level", "POST", "/predict_api", with_(region="mars"), 422, "region"),
    ("region wrong case", "POST", "/predict_api", with_(region="SouthEast"), 422, "region"),
    ("extra field", "POST", "/predict_api", with_(height=180), 422, "height"),
    ("huge string", "POST", "/predict_api", with_(region="x" * 500_000), 422, "region"),
    (
        "NaN",
        "POST",
        "/predict_api",
        raw(json.dumps(GOOD).replace("27.5", "NaN").encode()),
        422,
        "bmi",
    ),
    (
        "Infinity",
        "POST",
        "/predict_api",
        raw(json.dumps(GOOD).replace("27.5", "Infinity").encode()),
        422,
        "bmi",
    ),
    (
        "-Infinity",
        "POST",
        "/predict_api",
        raw(json.dumps(GOOD).replace("27.5", "-Infinity").encode()),
        422,
        "bmi",
    ),
    (
        "1e400",
        "POST",
        "/predict_api",
        raw(json.dumps(GOOD).replace("27.5", "1e400").encode()),
        422,
        "bmi",
    ),
    (
        "100-deep nesting",
        "POST",
        "/predict_api",
        raw(json.dumps(with_(age=json.loads(nested(100)))).encode()),
        422,
        "age",
    ),
    ("100000-deep nesting", "POST", "/predict_api", raw(nested(100_000)), 422, "body"),
    ("invalid JSON", "POST", "/predict_api", raw(b'{"age": 40,'), 422, "body"),
    ("invalid UTF-8", "POST", "/predict_api", raw(b'{"region": "\xc3\x28"}'), 422, "body"),
    ("empty body", "POST", "/predict_api", raw(b""), 422, "body"),
    ("JSON array", "POST", "/predict_api", [GOOD], 422, "body"),
    ("JSON string", "POST", "/predict_api", "hello", 422, "body"),
    ("text/plain", "POST", "/predict_api", raw(json.dumps(GOOD).encode(), "text/plain"), 415, None),
    ("no content type", "POST", "/predict_api", raw(json.dumps(GOOD).encode(), ""), 415, None),
    (
        "pickle content type",
        "POST",
        "/predict_api",
        raw(pickle.dumps(GOOD), "application/python-pickle"),
        415,
        None,
    ),
    (
        "form to JSON route",
        "POST",
        "/v1/predict",
        raw(b"age=40", "application/x-www-form-urlencoded"),
        415,
        None,
    ),
    (
        "body over 1 MiB",
        "POST",
        "/predict_api",
        raw(b'{"age": "' + b"9" * (1024 * 1024) + b'"}'),
        413,
        None,
    ),
    ("empty batch", "POST", "/v1/predict", {"instances": []}, 422, "instances"),
    ("batch not a list", "POST", "/v1/predict", {"instances": GOOD}, 422, "instances"),
    ("batch over the cap", "POST", "/v1/predict", {"instances": [GOOD] * 1001}, 413, None),
    (
        "batch with a bad row",
        "POST",
        "/v1/predict",
        {"instances": [GOOD, with_(smoker="sometimes")]},
        422,
        "smoker",
    ),
    ("batch row not an object", "POST", "/v1/predict", {"instances": [GOOD, 7]}, 422, "(record)"),
    (
        "batch extra key",
        "POST",
        "/v1/predict",
        {"instances": [GOOD], "explain": True},
        422,
        "explain",
    ),
    ("unknown route", "GET", "/admin", None, 404, None),
    ("path traversal", "GET", "/static/../../etc/passwd", None, 404, None),
    ("wrong method on API", "GET", "/predict_api", None, 405, None),
    ("wrong method on batch", "PUT", "/v1/predict", {"instances": [GOOD]}, 405, None),
    ("DELETE on model", "DELETE", "/v1/model", None, 405, None),
]


def send(server: Server, method: str, path: str, body: Any) -> httpx.Response:
    if body is None:
        return httpx.request(method, server.url + path, timeout=30)
    if isinstance(body, tuple):
        content, headers = body
        return httpx.request(
            method,
            server.url + path,
            content=content,
            headers={k: v for k, v in headers.items() if v},
            timeout=30,
        )
    return httpx.request(
        method, server.url + path, content=json.dumps(body).encode(), headers=JSON, timeout=30
    )


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "status", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_request_gets_its_exact_status(
    server: Server, name: str, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    answer = send(server, method, path, body)
    assert answer.status_code == status, answer.text[:300]
    assert "Traceback" not in answer.text
    if status == 422:
        payload = answer.json()
        if isinstance(payload["detail"], list):
            assert payload["detail"][0]["field"] == field, payload
        else:
            assert payload["message"].startswith(f"{field}:"), payload


def test_no_answer_was_a_server_error(server: Server) -> None:
    for _, method, path, body, _, _ in CASES:
        send(server, method, path, body)
    metrics = httpx.get(server.url + "/metrics").text
    assert not re.search(r'tabship_requests_total\{[^}]*status="5\d\d"', metrics)


SCRIPT = "<script>alert('x')</script>"
FORM_CASES = [
    {"age": SCRIPT},
    {"region": SCRIPT},
    {"sex": '"><img src=x onerror=alert(1)>'},
    {"bmi": "NaN"},
    {"bmi": "1e400"},
    {"children": "2.5"},
    {"age": ""},
    {"smoker": "male"},
    {"age": "x" * 100_000},
]


@pytest.mark.parametrize("change", FORM_CASES, ids=[str(i) for i in range(len(FORM_CASES))])
def test_form_escapes_bad_input_and_never_shows_a_traceback(
    server: Server, change: dict[str, str]
) -> None:
    data = {k: str(v) for k, v in GOOD.items()} | change
    answer = httpx.post(server.url + "/predict", data=data, timeout=30)
    assert answer.status_code == 422
    page = answer.text
    assert "Traceback" not in page and "<script>alert" not in page and "<img src=x" not in page
    field = next(iter(change))
    assert f'data-field="{field}"' in page
