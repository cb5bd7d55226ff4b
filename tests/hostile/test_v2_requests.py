"""Hostile V2 requests against a live server: wrong shapes and datatypes, truncated and
oversized binary data, mutated bodies. Every one gets a 4xx in the protocol's shape, never 5xx.
"""

from __future__ import annotations

import json
import random
import re
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tabship.workflow import TrainedModel

from ..servers import Server, serving

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

MODEL = "tiny"
COLUMNS: dict[str, tuple[str, list[Any]]] = {
    "age": ("INT64", [40, 63]),
    "bmi": ("FP64", [31.5, 22.0]),
    "children": ("INT64", [2, 0]),
    "smoker": ("BYTES", ["yes", "no"]),
    "region": ("BYTES", ["south", "north"]),
}


@pytest.fixture(scope="module")
def server(tiny_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(
        tiny_model.artifact.directory, tmp_path_factory.mktemp("v2-hostile"), "--model-name", MODEL
    )


def json_inputs() -> list[dict[str, Any]]:
    return [
        {"name": name, "shape": [2], "datatype": datatype, "data": values}
        for name, (datatype, values) in COLUMNS.items()
    ]


def binary_request() -> tuple[bytes, int]:
    """A valid request with every input in binary, as tritonclient sends it."""
    inputs, blobs = [], []
    for name, (datatype, values) in COLUMNS.items():
        if datatype == "BYTES":
            blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
        else:
            blob = struct.pack(f"<2{'q' if datatype == 'INT64' else 'd'}", *values)
        inputs.append(
            {
                "name": name,
                "shape": [2],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return header + b"".join(blobs), len(header)


def post(server: Server, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v2/models/{MODEL}/infer", content=body, headers=headers or {}, timeout=10
    )


def refused(answer: httpx.Response, status: int = 400) -> str:
    assert answer.status_code == status, answer.text[:300]
    message = answer.json()["error"]
    assert isinstance(message, str) and len(message) < 2000
    return message


def test_the_valid_binary_request_is_answered(server: Server) -> None:
    body, size = binary_request()
    answer = post(server, body, {"Inference-Header-Content-Length": str(size)})
    assert answer.status_code == 200, answer.text
    head = int(answer.headers["inference-header-content-length"])
    assert json.loads(answer.content[:head])["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert len(answer.content) == head + 16


@pytest.mark.parametrize(
    ("shape", "status", "message"),
    [
        ([-1], 400, "is not [N] or [N, 1]"),
        ([2, 3], 400, "is not [N] or [N, 1]"),
        ([2, 1, 1], 400, "is not [N] or [N, 1]"),
        ([], 400, "is not [N] or [N, 1]"),
        ("2", 400, "is not [N] or [N, 1]"),
        ([2.0], 400, "is not [N] or [N, 1]"),
        ([True], 400, "is not [N] or [N, 1]"),
        ([0], 400, "has no rows"),
        ([10**30], 413, "over the batch limit"),
        ([3], 400, "but the shape holds 3"),
    ],
)
def test_wrong_shapes(server: Server, shape: Any, status: int, message: str) -> None:
    inputs = json_inputs()
    for tensor in inputs:
        tensor["shape"] = shape
    if shape == [3]:
        for tensor in inputs:
            tensor["data"] = [*tensor["data"], tensor["data"][0]][:2]
    assert message in refused(post(server, json.dumps({"inputs": inputs}).encode()), status)


@pytest.mark.parametrize("datatype", ["FP128", "fp64", "", None, 64, ["FP64"], "BYTES"])
def test_wrong_datatypes(server: Server, datatype: Any) -> None:
    inputs = json_inputs()
    inputs[1]["datatype"] = datatype
    assert "inputs.bmi.datatype" in refused(post(server, json.dumps({"inputs": inputs}).encode()))


@pytest.mark.parametrize(
    "data",
    # null (and NaN, its binary form) is a gap the model fills with a warning: not here.
    [[1, "x"], [{"a": 1}, 2], [[1, [2, [3]]]], "12", [1e400, 2], [None, float("inf")]],
)
def test_wrong_data(server: Server, data: Any) -> None:
    inputs = json_inputs()
    inputs[1]["data"] = data
    body = json.dumps({"inputs": inputs}, allow_nan=True).encode()
    assert "bmi" in refused(post(server, body))


def test_truncated_binary_at_every_length_is_refused(server: Server) -> None:
    body, size = binary_request()
    headers = {"Inference-Header-Content-Length": str(size)}
    for end in range(size, len(body)):
        message = refused(post(server, body[:end], headers))
        assert re.search(
            r"goes past the end|is cut short|declares \d+ bytes|BYTES elements", message
        )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("99999999999", "is more than the"),
        ("999999999999999999999999", "is not a byte count"),
        ("-5", "is not a byte count"),
        ("abc", "is not a byte count"),
        ("0", "invalid JSON"),
    ],
)
def test_bad_header_lengths(server: Server, header: str, message: str) -> None:
    body, _ = binary_request()
    assert message in refused(post(server, body, {"Inference-Header-Content-Length": header}))


@pytest.mark.parametrize("size", [2**62, -1, 1.5, "16", 10**30])
def test_huge_or_invalid_binary_data_sizes(server: Server, size: Any) -> None:
    body, header_size = binary_request()
    header = json.loads(body[:header_size])
    header["inputs"][1]["parameters"]["binary_data_size"] = size
    new_header = json.dumps(header).encode()
    answer = post(
        server,
        new_header + body[header_size:],
        {"Inference-Header-Content-Length": str(len(new_header))},
    )
    assert "inputs.bmi" in refused(answer)


def test_a_bytes_element_declaring_four_gigabytes(server: Server) -> None:
    body, header_size = binary_request()
    header = json.loads(body[:header_size])
    header["inputs"] = header["inputs"][3:4]
    header["inputs"][0]["parameters"]["binary_data_size"] = 9
    new_header = json.dumps(header).encode()
    blob = struct.pack("<I", 2**32 - 1) + b"south"
    answer = post(
        server, new_header + blob, {"Inference-Header-Content-Length": str(len(new_header))}
    )
    assert "declares 4294967295 bytes" in refused(answer)


def test_invalid_utf8_in_a_bytes_tensor_and_the_header(server: Server) -> None:
    body, header_size = binary_request()
    broken = body.replace(b"south", b"\xff\xfeuth")
    message = refused(post(server, broken, {"Inference-Header-Content-Length": str(header_size)}))
    assert "not valid UTF-8" in message
    assert "UTF-8" in refused(post(server, b'{"inputs": "\xff"}'))


def test_trailing_bytes_after_the_last_binary_input(server: Server) -> None:
    body, size = binary_request()
    answer = post(server, body + b"\x00" * 8, {"Inference-Header-Content-Length": str(size)})
    assert "8 bytes after the last binary input" in refused(answer)


def test_deep_nesting_and_oversized_bodies(server: Server) -> None:
    inputs = json_inputs()
    deep = "[" * 50_000 + "]" * 50_000
    body = json.dumps({"inputs": inputs}).replace("[31.5, 22.0]", deep).encode()
    refused(post(server, body))
    huge = json.dumps({"inputs": [{**inputs[0], "data": [1] * 600_000}]}).encode()
    assert refused(post(server, huge), 413)


def test_mutated_binary_bodies_never_get_a_5xx(server: Server) -> None:
    """A bounded, seeded fuzz: flip, cut and splice bytes of a valid binary request."""
    rng = random.Random(16)
    body, size = binary_request()
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=10) as client:
        for _ in range(400):
            mutated = bytearray(body)
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(len(mutated))
                choice = rng.random()
                if choice < 0.5:
                    mutated[at] = rng.randrange(256)
                elif choice < 0.75:
                    del mutated[at : at + rng.randint(1, 8)]
                else:
                    mutated[at:at] = rng.randbytes(rng.randint(1, 8))
            header = str(size + rng.choice([0, 0, 0, -3, 5]))
            answer = client.post(
                f"{server.url}/v2/models/{MODEL}/infer",
                content=bytes(mutated),
                headers={"Inference-Header-Content-Length": header},
            )
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, answer.text
            if answer.status_code != 200:
                assert "error" in answer.json()
    assert statuses.get(400, 0) > 100
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert not re.search(r'tabship_requests_total\{[^}]*status="5\d\d"', metrics)
