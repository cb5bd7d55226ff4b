"""The Open Inference Protocol in-process: routes, JSON and binary tensors, errors, labels."""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
import zlib
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http._utils import _get_inference_request

from tabship.config import ServeSettings
from tabship.errors import ConfigError
from tabship.predictor import Predictor
from tabship.serve.app import App, create_app
from tabship.serve.binary_tensors import decode, encode, split_body
from tabship.workflow import TrainedModel

ROWS = {
    "age": [40, 63],
    "bmi": [31.5, 70.0],
    "children": [2, 0],
    "smoker": ["yes", "maybe"],
    "region": ["south", "north"],
}
TYPES = {"age": "INT64", "bmi": "FP64", "children": "INT64", "smoker": "BYTES", "region": "BYTES"}


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def tensors(rows: dict[str, list[Any]], types: dict[str, str] = TYPES) -> list[dict[str, Any]]:
    return [
        {"name": name, "shape": [len(values)], "datatype": types[name], "data": values}
        for name, values in rows.items()
    ]


def records(rows: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(rows, row, strict=True)) for row in zip(*rows.values(), strict=True)]


async def call(app: App, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tabship") as client:
        return await client.request(method, path, **kwargs)


def request(app: App, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return run(call(app, method, path, **kwargs))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def app(tiny_model: TrainedModel) -> App:
    served = create_app(Predictor.load(tiny_model.artifact.directory))
    served.state.ready = True
    return served


@pytest.fixture(scope="module")
def name(app: App) -> str:
    return app.context.v2.name


@pytest.fixture(scope="module")
def classifier(tiny_classifier: TrainedModel) -> App:
    served = create_app(Predictor.load(tiny_classifier.artifact.directory))
    served.state.ready = True
    return served


def test_server_metadata_lists_the_binary_extension(app: App) -> None:
    answer = request(app, "GET", "/v2")
    assert answer.status_code == 200
    assert answer.json() == {
        "name": "tabship",
        "version": answer.json()["version"],
        "extensions": ["binary_tensor_data"],
    }


def test_health_live_and_ready_until_warm_and_while_draining(tiny_model: TrainedModel) -> None:
    cold = create_app(Predictor.load(tiny_model.artifact.directory))
    assert request(cold, "GET", "/v2/health/live").json() == {"live": True}
    assert request(cold, "GET", "/v2/health/ready").status_code == 503
    name = cold.context.v2.name
    assert request(cold, "GET", f"/v2/models/{name}/ready").status_code == 503
    cold.state.ready = True
    assert request(cold, "GET", "/v2/health/ready").json() == {"ready": True}
    assert request(cold, "GET", f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    cold.state.draining = True
    assert request(cold, "GET", "/v2/health/ready").status_code == 503


def test_model_metadata_names_inputs_outputs_and_the_batch_dimension(
    app: App, name: str, tiny_model: TrainedModel
) -> None:
    body = request(app, "GET", f"/v2/models/{name}").json()
    assert name == tiny_model.artifact.directory.name
    version = tiny_model.artifact.sha256[:12]
    assert body["name"] == name and body["versions"] == [version]
    assert body["platform"] == "tabship_onnx"
    assert body["inputs"] == [
        {"name": feature, "datatype": datatype, "shape": [-1]}
        for feature, datatype in TYPES.items()
    ]
    assert body["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert request(app, "GET", f"/v2/models/{name}/versions/{version}").json() == body


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2/models/other", "model 'other' is not served here"),
        ("/v2/models/{name}/versions/7", "has no version '7'"),
        ("/v2/models/{name}/versions/7/ready", "has no version '7'"),
        ("/v2/models/other/ready", "model 'other' is not served here"),
        ("/v2/nothing", "is not a route of this server"),
    ],
)
def test_unknown_model_or_version_is_404_in_the_protocols_error_shape(
    app: App, name: str, path: str, message: str
) -> None:
    answer = request(app, "GET", path.format(name=name))
    assert answer.status_code == 404
    assert list(answer.json()) == ["error"] and message in answer.json()["error"]
    if path.endswith("/ready"):  # an open probe: it never says what is served
        version = request(app, "GET", f"/v2/models/{name}").json()["versions"][0]
        assert "serves" not in answer.text and version not in answer.text


def test_model_name_flag_overrides_the_folder_name(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    served = create_app(predictor, ServeSettings(model_name="insurance-charges"))
    assert request(served, "GET", "/v2/models/insurance-charges").status_code == 200
    assert (
        request(served, "GET", f"/v2/models/{tiny_model.artifact.directory.name}").status_code
        == 404
    )
    with pytest.raises(ConfigError, match="cannot be a path segment"):
        create_app(predictor, ServeSettings(model_name="a/b"))


def test_json_infer_equals_v1_in_any_input_order_with_id_and_warnings(app: App, name: str) -> None:
    shuffled = list(reversed(tensors(ROWS)))
    body = {"id": "req-7", "inputs": shuffled}
    answer = request(app, "POST", f"/v2/models/{name}/infer", json=body)
    assert answer.status_code == 200, answer.text
    v1 = request(app, "POST", "/v1/predict", json={"instances": records(ROWS)}).json()
    got = answer.json()
    assert got["id"] == "req-7" and got["model_name"] == name
    assert got["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [2], "data": v1["predictions"]}
    ]
    ids = got["parameters"].pop("prediction_ids").split(",")
    assert len(ids) == 2 and len(set(ids)) == 2 and not set(ids) & set(v1["ids"])
    assert got["parameters"] == {"warnings": "\n".join(v1["warnings"]), "warning_count": 2}
    assert "smoker: 'maybe' is not one of the 2 values" in got["parameters"]["warnings"]


def test_shapes_n_by_1_nested_data_and_other_number_types_are_converted(
    app: App, name: str
) -> None:
    inputs = tensors(ROWS, {**TYPES, "age": "FP32", "children": "INT32"})
    inputs[1] = {"name": "bmi", "shape": [2, 1], "datatype": "FP64", "data": [[31.5], [70.0]]}
    answer = request(app, "POST", f"/v2/models/{name}/infer", json={"inputs": inputs})
    v1 = request(app, "POST", "/v1/predict", json={"instances": records(ROWS)}).json()
    assert answer.json()["outputs"][0]["data"] == v1["predictions"]


def test_classifier_answers_labels_and_probabilities_by_default(classifier: App) -> None:
    name = classifier.context.v2.name
    meta = request(classifier, "GET", f"/v2/models/{name}").json()
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    rows = {k: v for k, v in ROWS.items() if k != "smoker"} | {"charges": [31000.0, 4000.0]}
    types = {**TYPES, "charges": "FP64"}
    answer = request(
        classifier, "POST", f"/v2/models/{name}/infer", json={"inputs": tensors(rows, types)}
    ).json()
    v1 = request(classifier, "POST", "/v1/predict", json={"instances": records(rows)}).json()
    predict, proba = answer["outputs"]
    assert predict == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "data": v1["predictions"],
    }
    assert proba["shape"] == [2, 2] and json.loads(proba["parameters"]["classes"]) == ["no", "yes"]
    assert proba["data"] == [p[label] for p in v1["probabilities"] for label in ("no", "yes")]
    only = request(
        classifier,
        "POST",
        f"/v2/models/{name}/infer",
        json={"inputs": tensors(rows, types), "outputs": [{"name": "predict_proba"}]},
    ).json()
    assert [output["name"] for output in only["outputs"]] == ["predict_proba"]


def binary_infer(
    app: App, name: str, rows: dict[str, list[Any]], types: dict[str, str], request_id: str = ""
) -> httpx.Response:
    """An infer request as tritonclient builds it: a JSON header, then each input's bytes."""
    inputs = []
    for feature, values in rows.items():
        datatype = types[feature]
        tensor = triton.InferInput(feature, [len(values)], datatype)
        array = np.array(values, dtype=object if datatype == "BYTES" else np.float64)
        tensor.set_data_from_numpy(
            array.astype(np.int64) if datatype == "INT64" else array, binary_data=True
        )
        inputs.append(tensor)
    body, size = _get_inference_request(inputs, request_id, None, 0, False, False, 0, None, None)
    return request(
        app,
        "POST",
        f"/v2/models/{name}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(size)},
    )


def test_tritonclient_binary_request_and_binary_answer(app: App, name: str) -> None:
    # The body as tritonclient builds it: JSON header, then each input's bytes.
    answer = binary_infer(app, name, ROWS, TYPES, "b1")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    result = triton.InferResult.from_response_body(
        answer.content, header_length=int(answer.headers["inference-header-content-length"])
    )
    v1 = request(app, "POST", "/v1/predict", json={"instances": records(ROWS)}).json()
    assert result.as_numpy("predict").tolist() == v1["predictions"]
    assert result.get_response()["id"] == "b1"


def test_binary_tensor_codec_round_trips_and_checks_sizes() -> None:
    text = encode("BYTES", ["a", "é", ""])
    assert text == b"\x01\x00\x00\x00a\x02\x00\x00\x00\xc3\xa9\x00\x00\x00\x00"
    assert decode("x", "BYTES", 3, memoryview(text)) == ["a", "é", ""]
    numbers = encode("FP64", [1.5, -2.0])
    assert decode("x", "FP64", 2, memoryview(numbers)) == [1.5, -2.0]
    assert decode("x", "INT32", 2, memoryview(struct.pack("<2i", 3, -4))) == [3, -4]
    assert decode("x", "BOOL", 2, memoryview(b"\x01\x00")) == [True, False]
    header, rest = split_body(b'{"a":1}XYZ', "7")
    assert header == b'{"a":1}' and bytes(rest) == b"XYZ"


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (lambda b: b["inputs"].pop(0), 400, "inputs: 'age' missing"),
        (
            lambda b: b["inputs"].append({**b["inputs"][0], "name": "height"}),
            400,
            "inputs.height: is not an input of this model",
        ),
        (lambda b: b["inputs"].append(dict(b["inputs"][0])), 400, "inputs.age: is given twice"),
        (lambda b: b["inputs"][2].update(shape=[3]), 400, "inputs.children.shape: 3 rows"),
        (lambda b: b["inputs"][2].update(shape=[2, 2]), 400, "is not [N] or [N, 1]"),
        (lambda b: b["inputs"][0].update(datatype="BYTES"), 400, "does not fit this numeric"),
        (lambda b: b["inputs"][3].update(datatype="FP64"), 400, "does not fit this categorical"),
        (
            lambda b: b["inputs"][3].update(data=[1, 2]),
            400,
            "inputs.smoker.data[0]: 1 is not BYTES; send text",
        ),
        (
            lambda b: b["inputs"][0].update(data=[1.5, 2]),
            400,
            "1.5 is not INT64; send whole numbers",
        ),
        (lambda b: b["inputs"][0].update(data=[True, 2]), 400, "data[0]: true is not INT64"),
        (
            lambda b: b["inputs"][0].update(data=[2**63, 2]),
            400,
            "inputs.age.data[0]: 9223372036854775808 is outside INT64",
        ),
        (
            lambda b: b["inputs"][0].update(datatype="INT8", data=[30, 300]),
            400,
            "inputs.age.data[1]: 300 is outside INT8 (-128 to 127)",
        ),
        (
            lambda b: b["inputs"][2].update(datatype="UINT8", data=[None, -1]),
            400,
            "inputs.children.data[1]: -1 is outside UINT8 (0 to 255)",
        ),
        (lambda b: b["inputs"][1].update(data=[1.0]), 400, "1 elements, but the shape holds 2"),
        (
            # Nested data follows the shape level by level: [[], [31.5, 2]] is two elements
            # when flattened, but not two rows of one.
            lambda b: b["inputs"][1].update(shape=[2, 1], data=[[], [31.5, 2.0]]),
            400,
            "inputs.bmi.data: nested lists must follow the shape [2, 1]",
        ),
        (
            lambda b: b["inputs"][1].update(data=[[31.5], [2.0]]),
            400,
            "inputs.bmi.data: nested lists must follow the shape [2]",
        ),
        (lambda b: b["inputs"][1].update(data=None), 400, "inputs.bmi.data: must be a list"),
        (lambda b: b.update(outputs=[{"name": "proba"}]), 400, "'proba' is not an output"),
        (lambda b: b.update(extra=1), 400, "extra: is not a field of an inference request"),
        (lambda b: b.update(id=5), 400, "id: must be a string"),
        (lambda b: b.update(parameters="x"), 400, "parameters: must be a JSON object"),
        (lambda b: b["inputs"][0].update(parameters=[1]), 400, "inputs.age.parameters: must be"),
        (
            lambda b: b.update(outputs=[{"name": "predict", "parameters": 5}]),
            400,
            "must be an object",
        ),
        (lambda b: b.update(outputs=[3]), 400, "outputs[0]: must be an object with a name"),
        (lambda b: b.update(model_name="other"), 400, "model_name: 'other' is not"),
        (
            lambda b: [t.update(shape=[1001], data=t["data"] * 0) for t in b["inputs"]],
            413,
            "over the batch limit of 1000",
        ),
    ],
)
def test_bad_requests_get_the_protocols_error(
    app: App, name: str, change: Any, status: int, message: str
) -> None:
    body: dict[str, Any] = {"inputs": tensors(ROWS)}
    change(body)
    answer = request(app, "POST", f"/v2/models/{name}/infer", json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_invalid_values_are_400_with_the_fields_in_detail(app: App, name: str) -> None:
    rows = {**ROWS, "bmi": [31.5, -1e39], "age": [40, 1e39]}
    answer = request(
        app,
        "POST",
        f"/v2/models/{name}/infer",
        json={"inputs": tensors(rows, {**TYPES, "age": "FP64"})},
    )
    assert answer.status_code == 400
    body = answer.json()
    assert {(d["input"], d["row"]) for d in body["detail"]} == {("age", 1), ("bmi", 1)}
    assert "bmi: must be a finite number" in body["error"]


def test_null_elements_are_gaps_filled_as_v1_fills_them(app: App, name: str) -> None:
    rows = {**ROWS, "bmi": [None, 30.0], "smoker": ["no", None]}
    answer = request(app, "POST", f"/v2/models/{name}/infer", json={"inputs": tensors(rows)})
    assert answer.status_code == 200, answer.text
    v1 = request(app, "POST", "/v1/predict", json={"instances": records(rows)}).json()
    got = answer.json()
    assert got["outputs"][0]["data"] == v1["predictions"]
    assert got["parameters"]["warnings"] == "\n".join(v1["warnings"])
    assert (
        "row 0: bmi: empty, though training had no gaps here; filled with the training "
        "median" in v1["warnings"]
    )


def test_content_type_and_encoding_are_checked(app: App, name: str) -> None:
    path = f"/v2/models/{name}/infer"
    body = json.dumps({"inputs": tensors(ROWS)})
    assert request(app, "POST", path, content=body).status_code == 200
    refused = request(app, "POST", path, content=body, headers={"content-type": "text/csv"})
    assert refused.status_code == 415 and "error" in refused.json()
    for plain in ("", "identity", " Identity "):
        headers = {"content-encoding": plain}
        assert request(app, "POST", path, content=body, headers=headers).status_code == 200
    brotli = request(app, "POST", path, content=body, headers={"content-encoding": "br"})
    assert brotli.status_code == 415 and "send gzip, deflate" in brotli.json()["error"]
    v1 = request(app, "POST", "/v1/predict", json={"instances": records(ROWS)}).json()
    for encoding, packed in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        zipped = request(
            app, "POST", path, content=packed(body.encode()), headers={"content-encoding": encoding}
        )
        assert zipped.json()["outputs"][0]["data"] == v1["predictions"], encoding
    cut = request(
        app,
        "POST",
        path,
        content=gzip.compress(body.encode())[:-12],
        headers={"content-encoding": "gzip"},
    )
    assert cut.status_code == 400 and "cut short" in cut.json()["error"]
    junk = request(app, "POST", path, content=b"not gzip", headers={"content-encoding": "gzip"})
    assert junk.status_code == 400 and "not valid gzip data" in junk.json()["error"]
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))  # 8 MiB of spaces in about 8 KiB
    blown = request(app, "POST", path, content=bomb, headers={"content-encoding": "gzip"})
    assert blown.status_code == 413 and "once inflated" in blown.json()["error"]


def test_templated_routes_are_labelled_by_template_and_probes_bypass_the_cap(
    app: App, name: str
) -> None:
    table = app.table
    assert table.label(f"/v2/models/{name}/infer") == "/v2/models/{name}/infer"
    assert table.label("/v2/models/anything/versions/x/ready") == (
        "/v2/models/{name}/versions/{version}/ready"
    )
    assert table.label("/v2/models//infer") == "other"
    assert table.is_probe("GET", f"/v2/models/{name}/ready")
    assert not table.is_probe("POST", f"/v2/models/{name}/infer")
    answer = request(app, "GET", f"/v2/models/{name}/infer")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert "error" in answer.json()
    request(app, "POST", "/v2/models/someone-elses/infer", json={})
    metrics = request(app, "GET", "/metrics").text
    assert 'route="/v2/models/{name}/infer"' in metrics
    assert "someone-elses" not in metrics


def test_openapi_documents_v2_with_path_parameters(app: App, name: str) -> None:
    spec = request(app, "GET", "/openapi.json").json()
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["parameters"][0] == {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [name]},
    }
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    error = infer["responses"]["400"]["content"]["application/json"]["schema"]
    assert error["required"] == ["error"]


@pytest.fixture(scope="module")
def flags(tmp_path_factory: pytest.TempPathFactory) -> App:
    """A model with a true/false column, announced and taken as BOOL."""
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    from .conftest import make_tiny_table

    folder = tmp_path_factory.mktemp("flags")
    table = make_tiny_table()
    table["smoker"] = table["smoker"] == "yes"
    table.to_csv(folder / "flags.csv", index=False)
    options = TrainOptions(target="charges", folds=3, models=["decision_tree"])
    model = train_model(str(folder / "flags.csv"), options, folder / "flags")
    served = create_app(Predictor.load(model.artifact.directory))
    served.state.ready = True
    return served


def test_a_flag_is_bool_in_json_and_binary(flags: App) -> None:
    name = flags.context.v2.name
    inputs = request(flags, "GET", f"/v2/models/{name}").json()["inputs"]
    assert {"name": "smoker", "datatype": "BOOL", "shape": [-1]} in inputs
    rows = {**ROWS, "smoker": [True, False]}
    v1 = request(flags, "POST", "/v1/predict", json={"instances": records(rows)}).json()
    as_json = request(
        flags,
        "POST",
        f"/v2/models/{name}/infer",
        json={"inputs": tensors(rows, {**TYPES, "smoker": "BOOL"})},
    ).json()
    assert as_json["outputs"][0]["data"] == v1["predictions"]
    as_text = tensors({**rows, "smoker": ["True", "False"]})
    answer = request(flags, "POST", f"/v2/models/{name}/infer", json={"inputs": as_text})
    assert answer.json()["outputs"][0]["data"] == v1["predictions"]
    flag = triton.InferInput("smoker", [2], "BOOL")
    flag.set_data_from_numpy(np.array([True, False]), binary_data=True)
    others = [triton.InferInput(k, [2], TYPES[k]) for k in ROWS if k != "smoker"]
    for tensor, key in zip(others, [k for k in ROWS if k != "smoker"], strict=True):
        array = np.array(ROWS[key], dtype=object if TYPES[key] == "BYTES" else None)
        tensor.set_data_from_numpy(
            array.astype(np.int64) if TYPES[key] == "INT64" else array, binary_data=False
        )
    wanted = [triton.InferRequestedOutput("predict", binary_data=False)]
    body, size = _get_inference_request([*others, flag], "", wanted, 0, False, False, 0, None, None)
    binary = request(
        flags,
        "POST",
        f"/v2/models/{name}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(size)},
    )
    assert binary.json()["outputs"][0]["data"] == v1["predictions"]


def test_mlserver_pandas_codec_parameters_are_accepted(app: App, name: str) -> None:
    # MLServer's clients mark the request as a DataFrame and each text column as str.
    inputs = tensors(ROWS)
    for tensor in inputs:
        if tensor["datatype"] == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
    body = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    answer = request(app, "POST", f"/v2/models/{name}/infer", json=body)
    v1 = request(app, "POST", "/v1/predict", json={"instances": records(ROWS)}).json()
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == v1["predictions"]


def _variants() -> list[list[Any]]:
    """Inputs near the everyday shape: each either read alike by both readers or left to one."""
    base = tensors(ROWS)
    changes: list[Any] = [
        lambda t: None,
        lambda t: t[0].update(shape=[True, 0][:1]),
        lambda t: t[0].update(shape=[2.0]),
        lambda t: t[0].update(shape=[2, 1]),
        lambda t: t[0].update(shape=[3]),
        lambda t: t[0].update(data=[[40], [63]]),
        lambda t: t[0].update(data=[40.0, 63]),
        lambda t: t[0].update(datatype="FP32"),
        lambda t: t[0].update(datatype="BOOL", data=[True, False]),
        lambda t: t[0].update(datatype=["INT64"]),
        lambda t: t[0].update(name=["age"]),
        lambda t: t[1].update(name="age"),
        lambda t: t[1].update(data=[float("nan"), 2.5]),
        lambda t: t[3].update(data=["yes", None]),
        lambda t: t[3].update(data=["yes", 1]),
        lambda t: t[0].update(parameters={}),
        lambda t: t[0].update(extra=1),
        lambda t: t.pop(),
        lambda t: t.reverse(),
        lambda t: [x.update(shape=[0], data=[]) for x in t],
        lambda t: [x.update(shape=[1001], data=x["data"] * 500 + x["data"][:1]) for x in t],
    ]
    out = []
    for change in changes:
        inputs = json.loads(json.dumps(base))
        change(inputs)
        out.append(inputs)
    return out


def test_the_everyday_reader_reads_what_the_checking_reader_reads(app: App) -> None:
    reader = app.context.v2.reader
    plain_count = 0
    for inputs in _variants():
        plain = reader._plain(inputs)
        if plain is None:
            continue
        plain_count += 1
        assert plain == reader._columns(inputs, memoryview(b"")), inputs
    assert plain_count >= 4  # the usual body, reordered, BOOL flags, a missing text


def test_an_integer_just_over_the_float32_bound_is_refused_not_rounded_onto_it(
    app: App, name: str
) -> None:
    over = "340282346638528859811704183484516925441"  # int(FLOAT32_MAX) + 1
    body = json.dumps({"inputs": tensors(ROWS)}).replace("[40, 63]", f"[40, {over}]")
    answer = request(
        app,
        "POST",
        f"/v2/models/{name}/infer",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert "age" in answer.text


@pytest.mark.parametrize(
    "values",
    [
        [7625.3427734375],
        [0.1, -2.5e-07, 1e16, 12.0],
        ["yes", 'say "no"', "naïve </script>"],
        ["annulled", "ok"],  # "null" in the data: the full path's encoder
    ],
)
def test_the_everyday_answer_is_the_full_answers_bytes(
    app: App, classifier: App, tiny_model: TrainedModel, values: list[Any]
) -> None:
    from tabship.predictor import Prediction
    from tabship.serve.v2_tensors import Columns

    # "null" in the model's name: the head is written by the standard library's encoder.
    renamed = create_app(
        Predictor.load(tiny_model.artifact.directory), ServeSettings(model_name="nullmodèle")
    )
    for served in (app, classifier, renamed):
        v2 = served.context.v2
        columns = Columns(len(values), {}, None, {}, None)
        prediction = Prediction(values, None, [], {})
        wanted = [("predict", False)]
        ids = [f"a1b2c3-{row:x}" for row in range(len(values))]
        fast = v2._answer(columns, wanted, prediction, ids)
        full = v2._answer(columns, wanted, prediction, ids, shortcut=False)
        assert fast == full
        json.loads(fast.body)  # and it is JSON


def test_a_folder_name_that_is_no_path_segment_serves_as_its_slug(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "my model (v1)"
    shutil.copytree(tiny_model.artifact.directory, folder)
    served = create_app(Predictor.load(folder), ServeSettings())
    assert request(served, "GET", "/v2/models/my-model-v1").status_code == 200


def infer(app: App, name: str, body: Any, **kwargs: Any) -> httpx.Response:
    return request(app, "POST", f"/v2/models/{name}/infer", json=body, **kwargs)


def changed_infer(app: App, name: str, change: Any) -> httpx.Response:
    """Infer on the sample rows' tensors after `change` edits the body."""
    body: dict[str, Any] = {"inputs": tensors(ROWS)}
    change(body)
    return infer(app, name, body)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # /predict_api refuses true for a number: a BOOL tensor was taken as 1.
        (
            lambda b: b["inputs"][0].update(datatype="BOOL", data=[True, False]),
            "inputs.age.datatype: 'BOOL' does not fit this numeric input; send FP64, FP32, INT64, INT32 or another number type (not BOOL)",
        ),
        # Float datatypes are range-checked as the integer ones are.
        (
            lambda b: b["inputs"][1].update(datatype="FP16", data=[31.5, 1e30]),
            "inputs.bmi.data[1]: 1e+30 is outside FP16 (-65504 to 65504); send FP64",
        ),
        (
            lambda b: b["inputs"][1].update(datatype="FP16", data=[-70000, 2]),
            "inputs.bmi.data[0]: -70000 is outside FP16",
        ),
        (
            lambda b: b["inputs"][1].update(datatype="FP32", data=[31.5, 3.5e38]),
            "inputs.bmi.data[1]: 3.5e+38 is outside FP32 (-3.40282e+38 to 3.40282e+38)",
        ),
        (
            lambda b: b["inputs"][1].update(datatype="FP64", data=[31.5, -3.5e38]),
            "row 1: bmi: must be a finite number between -3.4e+38 and 3.4e+38",
        ),
        # A key no input tensor has.
        (
            lambda b: b["inputs"][2].update(foo=1),
            "inputs.children.foo: is not a field of an input tensor (name, shape, datatype, "
            "parameters, data)",
        ),
        (
            lambda b: b.update(outputs=[{"name": "predict", "binary": True}]),
            "outputs[0].binary: is not a field of a requested output (name, parameters)",
        ),
        # Flags are booleans, not whatever reads as true.
        (
            lambda b: b.update(parameters={"binary_data_output": 1}),
            "parameters.binary_data_output: 1 is not true or false",
        ),
        (
            lambda b: b.update(outputs=[{"name": "predict", "parameters": {"binary_data": "yes"}}]),
            "outputs[0].parameters.binary_data: 'yes' is not true or false",
        ),
    ],
)
def test_v2_refuses_what_predict_api_refuses(
    app: App, name: str, change: Any, message: str
) -> None:
    answer = changed_infer(app, name, change)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_v2_takes_numbers_within_their_datatype_and_nan_as_a_gap(app: App, name: str) -> None:
    v1 = request(app, "POST", "/v1/predict", json={"instances": records(ROWS)}).json()
    for datatype in ("FP16", "FP32"):
        inputs = tensors(ROWS, {**TYPES, "bmi": datatype, "age": datatype})
        answer = infer(app, name, {"inputs": inputs})
        assert answer.json()["outputs"][0]["data"] == v1["predictions"], datatype
    gap = json.dumps({"inputs": tensors({**ROWS, "bmi": [31.5, 1.0]}, {**TYPES, "bmi": "FP16"})})
    answer = request(
        app,
        "POST",
        f"/v2/models/{name}/infer",
        content=gap.replace("[31.5, 1.0]", "[31.5, NaN]"),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 200 and "bmi: empty" in answer.json()["parameters"]["warnings"]


def test_v2_refuses_json_declared_in_another_charset_as_predict_api_does(
    app: App, name: str
) -> None:
    body = json.dumps({"inputs": tensors(ROWS)})
    for charset, status in (("latin-1", 415), ("utf-16", 415), ("UTF-8", 200), ('"utf8"', 200)):
        answer = request(
            app,
            "POST",
            f"/v2/models/{name}/infer",
            content=body,
            headers={"content-type": f"application/json; charset={charset}"},
        )
        assert answer.status_code == status, charset
        if status == 415:
            assert "send the JSON as UTF-8" in answer.json()["error"]
        api = request(
            app,
            "POST",
            "/predict_api",
            content=json.dumps(records(ROWS)[0]),
            headers={"content-type": f"application/json; charset={charset}"},
        )
        assert api.status_code == status, charset


def test_the_target_as_a_tensor_is_skipped_as_predict_api_skips_it(app: App, name: str) -> None:
    """A whole row of the training table may be sent, as to /predict_api: the target's (and
    an ignored column's) tensor is skipped, in JSON and in binary, where its bytes are."""
    plain = infer(app, name, {"inputs": tensors(ROWS)}).json()["outputs"]
    with_target = tensors({"charges": [1.0, 2.0], **ROWS}, {**TYPES, "charges": "FP64"})
    answer = infer(app, name, {"inputs": with_target})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == plain
    # Twice, and of any datatype: it is not read at all.
    twice = [*with_target, {"name": "charges", "shape": [1], "datatype": "BYTES", "data": ["x"]}]
    assert infer(app, name, {"inputs": twice}).json()["outputs"] == plain
    binary = binary_infer(app, name, {"charges": [1.0, 2.0], **ROWS}, {**TYPES, "charges": "FP64"})
    assert binary.status_code == 200, binary.text
    result = triton.InferResult.from_response_body(
        binary.content, header_length=int(binary.headers["inference-header-content-length"])
    )
    assert result.as_numpy("predict").tolist() == plain[0]["data"]
    # A column the model never had is still refused, naming it.
    unknown = tensors({**ROWS, "height": [1.0, 2.0]}, {**TYPES, "height": "FP64"})
    refused = infer(app, name, {"inputs": unknown})
    assert refused.status_code == 400
    assert "inputs.height: is not an input of this model" in refused.json()["error"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b["inputs"][0].update(data=[True, 2]), "inputs.age.data[0]: true is not INT64"),
        (
            lambda b: b["inputs"][3].update(data=[None, 2]),
            "inputs.smoker.data[1]: 2 is not BYTES; send text (or null for a missing value)",
        ),
        (
            lambda b: b["inputs"][1].update(datatype=None),
            "inputs.bmi.datatype: null does not fit this numeric input; send FP64",
        ),
        (
            lambda b: b["inputs"][1].update(shape=[True]),
            "inputs.bmi.shape: [true] is not [N] or [N, 1]",
        ),
        (
            lambda b: b.update(model_version=["x"]),
            'model_version: ["x"] is not ',
        ),
        (
            lambda b: b["inputs"][1].update(parameters={"binary_data_size": True}),
            "inputs.bmi.parameters.binary_data_size: must be a whole number of bytes, got true",
        ),
    ],
)
def test_v2_messages_show_values_as_json_writes_them(
    app: App, name: str, change: Any, message: str
) -> None:
    error = changed_infer(app, name, change).json()["error"]
    assert message in error
    assert "True" not in error and "None" not in error


def test_a_one_row_request_names_its_bad_value_in_row_0(app: App, name: str) -> None:
    one = {key: values[:1] for key, values in ROWS.items()}
    answer = infer(app, name, {"inputs": tensors({**one, "bmi": [-1e39]})})
    assert answer.status_code == 400
    assert answer.json()["detail"] == [
        {"input": "bmi", "row": 0, "msg": answer.json()["detail"][0]["msg"]}
    ]
    assert answer.json()["error"].startswith("row 0: bmi: must be a finite number")


def test_an_encoded_slash_in_a_model_name_is_part_of_the_name(app: App, name: str) -> None:
    body = {"inputs": tensors(ROWS)}
    slashed = request(app, "POST", f"/v2/models/{name}%2Fx/infer", json=body)
    assert slashed.status_code == 404
    assert slashed.json()["error"].startswith(f"model '{name}/x' is not served here")
    versioned = request(app, "GET", f"/v2/models/{name}/versions/a%2Fb%25c")
    assert versioned.status_code == 404 and "no version 'a/b%c'" in versioned.json()["error"]
    encoded = "".join(f"%{byte:02X}" for byte in name.encode())
    assert request(app, "POST", f"/v2/models/{encoded}/infer", json=body).status_code == 200
