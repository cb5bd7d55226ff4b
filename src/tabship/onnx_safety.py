"""Refuse ONNX graphs that would make ONNX Runtime read other files (external tensor data).

A tensor stored "externally" names a file path; ONNX Runtime resolves it against the working
directory and reads it as weights, so a crafted model.onnx could return a server's files as
predictions. The serving image has no `onnx` package, so the protobuf wire format is walked
here directly: only the fields that can hold a tensor or a graph are descended into.
"""

from __future__ import annotations

from tabship.errors import ArtifactError

# Field numbers from onnx.proto, per message: which fields hold which nested message.
_MODEL = {7: "graph", 20: "training", 25: "function"}
_NESTED: dict[str, dict[int, str]] = {
    "model": _MODEL,
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_MAX_DEPTH = 64


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _walk(data: memoryview, message: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("graphs nested too deeply")
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        pos = _field(data, pos, message, key >> 3, key & 7, depth)
    if pos != len(data):
        raise ValueError("truncated field")


def _field(data: memoryview, pos: int, message: str, number: int, wire: int, depth: int) -> int:
    """Check one field of `message` starting at `pos`; return where the next one starts."""
    external = message == "tensor" and number in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION)
    if wire == 0:
        value, pos = _varint(data, pos)
        if external and value != 0:
            raise ArtifactError("model.onnx stores a tensor as external data")
        return pos
    if wire in (1, 5):
        return pos + (8 if wire == 1 else 4)
    if wire != 2:
        raise ValueError(f"unsupported wire type {wire}")
    size, pos = _varint(data, pos)
    if pos + size > len(data):
        raise ValueError("truncated field")
    if external:
        raise ArtifactError("model.onnx stores a tensor as external data")
    nested = _NESTED[message].get(number)
    if nested is not None:
        _walk(data[pos : pos + size], nested, depth + 1)
    return pos + size


def check_self_contained(model: bytes, where: str) -> None:
    """Raise ArtifactError unless every tensor in the graph is stored inside `model` itself."""
    try:
        _walk(memoryview(model), "model", 0)
    except ArtifactError as exc:
        raise ArtifactError(
            f"{where}: {exc}; tabship models keep every weight inside the file, retrain it"
        ) from None
    except ValueError as exc:
        raise ArtifactError(f"{where} is not a readable ONNX model ({exc})") from None
