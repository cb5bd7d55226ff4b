"""Clients no one here wrote, against a real `tabship serve`: tritonclient, kserve, open-inference.

Each answer equals /v1/predict's for the same rows, and every V2 answer parses as the
Open Inference Protocol's documented objects (the open-inference-openapi package's models).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import open_inference.openapi as oip
import pytest
import tritonclient.http as triton
from open_inference.openapi.client import OpenInferenceClient
from tritonclient.utils import InferenceServerException

from tabship.workflow import TrainedModel

from ..servers import Server, serving

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KSERVE_PYTHON = REPO / ".venv-kserve" / "bin" / "python"
KSERVE_SCRIPT = REPO / "tests" / "clients" / "kserve_v2.py"
MODEL = "insurance-charges"
COLUMNS: dict[str, list[Any]] = {
    "age": [40, 63, 19],
    "bmi": [31.5, 70.0, 22.25],
    "children": [2, 0, 3],
    "smoker": ["yes", "maybe", "no"],
    "region": ["south", "north", "east"],
}
TYPES = {"age": "INT64", "bmi": "FP64", "children": "INT64", "smoker": "BYTES", "region": "BYTES"}
NUMPY = {"INT64": np.int64, "FP64": np.float64, "BYTES": object}


@pytest.fixture(scope="module")
def server(tiny_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(
        tiny_model.artifact.directory,
        tmp_path_factory.mktemp("v2"),
        "--model-name",
        MODEL,
        "--max-batch",
        "50",
    )


@pytest.fixture(scope="module")
def classifier(
    tiny_classifier: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serving(tiny_classifier.artifact.directory, tmp_path_factory.mktemp("v2-cls"))


def v1(server: Server, columns: dict[str, list[Any]]) -> dict[str, Any]:
    rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    answer = httpx.post(f"{server.url}/v1/predict", json={"instances": rows}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def triton_inputs(columns: dict[str, list[Any]], binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name, values in columns.items():
        tensor = triton.InferInput(name, [len(values)], TYPES.get(name, "FP64"))
        array = np.array(values, dtype=NUMPY[TYPES.get(name, "FP64")])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_tritonclient_health_metadata_and_infer_json_and_binary(
    server: Server, tiny_model: TrainedModel
) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        version = tiny_model.artifact.sha256[:12]
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, version)
        assert not client.is_model_ready("other")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
        meta = client.get_model_metadata(MODEL)
        assert meta["versions"] == [version] and client.get_model_metadata(MODEL, version) == meta
        assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
            (name, datatype, [-1]) for name, datatype in TYPES.items()
        ]
        expected = v1(server, COLUMNS)["predictions"]
        as_json = client.infer(
            MODEL,
            triton_inputs(COLUMNS, binary=False),
            outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
            request_id="json-1",
        )
        assert as_json.get_response()["id"] == "json-1"
        assert as_json.get_response()["outputs"][0]["data"] == expected
        warnings = as_json.get_response()["parameters"]["warnings"]
        assert "smoker: 'maybe' is not one of the 2 values seen in training" in warnings
        as_binary = client.infer(
            MODEL,
            triton_inputs(COLUMNS, binary=True),
            model_version=version,
            request_compression_algorithm="gzip",
        )
        assert as_binary.get_output("predict")["parameters"]["binary_data_size"] == 24
        assert as_binary.as_numpy("predict").tolist() == expected
        with pytest.raises(InferenceServerException, match="is not an input of this model"):
            client.infer(
                MODEL, [*triton_inputs(COLUMNS, True), triton.InferInput("x", [3], "FP64")]
            )
    finally:
        client.close()


def test_tritonclient_reads_binary_labels_and_probabilities(classifier: Server) -> None:
    columns = {k: v for k, v in COLUMNS.items() if k != "smoker"} | {
        "charges": [31000.0, 4000.0, 39000.0]
    }
    client = triton.InferenceServerClient(url=f"127.0.0.1:{classifier.port}")
    try:
        result = client.infer("smokers", triton_inputs(columns, binary=True))
    finally:
        client.close()
    expected = v1(classifier, columns)
    labels = [label.decode() for label in result.as_numpy("predict").tolist()]
    assert labels == expected["predictions"]
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (3, 2)
    assert proba.tolist() == [[p["no"], p["yes"]] for p in expected["probabilities"]]


def test_open_inference_client_and_every_answer_parses_as_the_protocols_objects(
    server: Server,
) -> None:
    expected = v1(server, COLUMNS)["predictions"]
    with httpx.Client(timeout=10) as http:
        check_with_open_inference(
            OpenInferenceClient(base_url=server.url, httpx_client=http), expected
        )
    bad = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json={"inputs": []}, timeout=10)
    assert bad.status_code == 400
    assert isinstance(oip.InferenceErrorResponse.parse_obj(bad.json()), oip.InferenceErrorResponse)
    missing = httpx.get(f"{server.url}/v2/models/other", timeout=10)
    assert missing.status_code == 404
    assert oip.MetadataModelErrorResponse.parse_obj(missing.json()).error.startswith(
        "model 'other'"
    )


def check_with_open_inference(client: OpenInferenceClient, expected: list[float]) -> None:
    client.check_server_liveness()
    client.check_server_readiness()
    client.check_model_readiness(MODEL)
    server_meta = client.read_server_metadata()
    assert isinstance(server_meta, oip.MetadataServerResponse)
    assert server_meta.extensions == ["binary_tensor_data"]
    model_meta = client.read_model_metadata(MODEL)
    assert [tensor.name for tensor in model_meta.inputs or []] == list(TYPES)
    request = oip.InferenceRequest(
        id="oip-1",
        inputs=[
            oip.RequestInput(name=name, shape=[len(values)], datatype=TYPES[name], data=values)
            for name, values in COLUMNS.items()
        ],
    )
    response = client.model_infer(MODEL, request=request)
    assert isinstance(response, oip.InferenceResponse) and response.id == "oip-1"
    assert response.outputs[0].data.__root__ == expected
    # The protocol's client knows 404 for an unknown model on the readiness route.
    with pytest.raises(oip.NotFoundError):
        client.check_model_readiness("other")


def test_kserve_sdk_rest_client_in_v2_mode(server: Server) -> None:
    assert KSERVE_PYTHON.is_file(), (
        "the kserve SDK's environment is missing: run `make kserve-client`"
    )
    for binary in (False, True):
        spec = {"columns": COLUMNS, "datatypes": TYPES, "binary": binary}
        done = subprocess.run(
            [str(KSERVE_PYTHON), str(KSERVE_SCRIPT), server.url, MODEL],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.splitlines()[-1])
        assert result["server_ready"] is True and result["server_live"] is True
        assert result["model_ready"] is True
        assert result["id"] == "kserve-1" and result["model_name"] == MODEL
        assert result["outputs"] == {"predict": v1(server, COLUMNS)["predictions"]}


def test_v2_requests_get_the_same_limits_metrics_and_log_line(server: Server) -> None:
    big = {name: values * 20 for name, values in COLUMNS.items()}
    inputs = [
        {"name": name, "shape": [len(values)], "datatype": TYPES[name], "data": values}
        for name, values in big.items()
    ]
    answer = httpx.post(
        f"{server.url}/v2/models/{MODEL}/infer", json={"inputs": inputs}, timeout=10
    )
    assert answer.status_code == 413 and "over the batch limit of 50" in answer.json()["error"]
    small = [{**tensor, "shape": [3], "data": tensor["data"][:3]} for tensor in inputs]
    ok = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json={"inputs": small}, timeout=10)
    assert ok.status_code == 200
    infer = infer_lines(server)
    assert [line["status"] for line in infer[-2:]] == [413, 200] and infer[-1]["rows"] == 3
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert (
        'tabship_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"}'
        in metrics
    )


def infer_lines(server: Server) -> list[dict[str, Any]]:
    """The infer routes' log lines, once the last answer's line is written (it follows the answer)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in server.log_lines() if '"route": "/v2/' in line]
        infer = [line for line in lines if line["route"] == "/v2/models/{name}/infer"]
        if (infer and infer[-1]["status"] == 200) or time.monotonic() > deadline:
            return infer
        time.sleep(0.05)
