"""Just enough of an ONNX graph, read from its protobuf bytes, to see how its trees use inputs.

Serving images carry no `onnx` package, so this reads the wire format directly (as
`onnx_safety` does): the nodes, their attributes, and the small integer initializers a
Reshape takes. Field numbers are onnx.proto's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tabship.onnx_safety import _varint

# ModelProto.graph; GraphProto.node / .initializer; NodeProto fields; AttributeProto fields.
_GRAPH = 7
_NODE, _INITIALIZER = 1, 5
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_NAME, _ATTR_F, _ATTR_I, _ATTR_S, _ATTR_T = 1, 2, 3, 4, 5
_ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS = 7, 8, 9
# TensorProto: dims, data_type, int64_data, name, raw_data.
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_INT64, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 7, 8, 9
_INT64 = 7


def _fields(data: memoryview) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: ints, or bytes for length-delimited."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value = bytes(data[pos : pos + width])
            pos += width
        elif wire == 2:
            size, pos = _varint(data, pos)
            value = data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((key >> 3, wire, value))
    if pos != len(data):
        raise ValueError("truncated field")
    return out


def _packed_varints(data: memoryview) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value - (1 << 64) if value >= 1 << 63 else value)
    return values


@dataclass
class Node:
    """One graph node: its operator, input and output tensor names, and attributes."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)


def _attribute_value(wire: int, number: int, value: Any, into: dict[int, list[Any]]) -> None:
    if number == _ATTR_FLOATS and wire == 2:
        into.setdefault(number, []).extend(np.frombuffer(bytes(value), "<f4").tolist())
    elif number in (_ATTR_FLOATS, _ATTR_F):
        into.setdefault(number, []).append(struct.unpack("<f", value)[0])
    elif number == _ATTR_INTS and wire == 2:
        into.setdefault(number, []).extend(_packed_varints(value))
    elif wire == 0:
        into.setdefault(number, []).append(value - (1 << 64) if value >= 1 << 63 else value)
    else:
        into.setdefault(number, []).append(bytes(value))


def _attribute(data: memoryview) -> tuple[str, Any]:
    seen: dict[int, list[Any]] = {}
    for number, wire, value in _fields(data):
        _attribute_value(wire, number, value, seen)
    name = seen.pop(_ATTR_NAME, [b""])[0].decode()
    seen.pop(20, None)  # the attribute's declared type: the field present says as much
    if _ATTR_T in seen:
        return name, "tensor"  # thresholds as a tensor: not read here, callers give up
    for single in (_ATTR_F, _ATTR_I, _ATTR_S):
        if single in seen:
            return name, seen[single][0]
    for repeated in (_ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS):
        if repeated in seen:
            return name, seen[repeated]
    return name, []


def _node(data: memoryview) -> Node:
    node = Node("", [], [])
    for number, _, value in _fields(data):
        if number == _NODE_INPUT:
            node.inputs.append(bytes(value).decode())
        elif number == _NODE_OUTPUT:
            node.outputs.append(bytes(value).decode())
        elif number == _NODE_OP:
            node.op = bytes(value).decode()
        elif number == _NODE_ATTRIBUTE:
            name, attribute = _attribute(value)
            node.attributes[name] = attribute
    return node


def _int_tensor(data: memoryview) -> tuple[str, list[int]] | None:
    """A small int64 initializer (a Reshape's shape) as its name and values, else None."""
    seen: dict[int, list[Any]] = {}
    for number, wire, value in _fields(data):
        if number == _TENSOR_INT64 and wire == 2:
            seen.setdefault(number, []).extend(_packed_varints(value))
        else:
            seen.setdefault(number, []).append(value)
    if seen.get(_TENSOR_TYPE, [0])[0] != _INT64 or _TENSOR_NAME not in seen:
        return None
    name = bytes(seen[_TENSOR_NAME][0]).decode()
    if _TENSOR_RAW in seen:
        return name, np.frombuffer(bytes(seen[_TENSOR_RAW][0]), "<i8").tolist()
    return name, list(seen.get(_TENSOR_INT64, []))


def read_graph(model: bytes) -> tuple[list[Node], dict[str, list[int]]]:
    """The graph's nodes in order and its int64 initializers by name."""
    nodes: list[Node] = []
    constants: dict[str, list[int]] = {}
    for number, _, value in _fields(memoryview(model)):
        if number != _GRAPH:
            continue
        for inner, _, part in _fields(value):
            if inner == _NODE:
                nodes.append(_node(part))
            elif inner == _INITIALIZER and len(part) < 4096:
                tensor = _int_tensor(part)
                if tensor is not None:
                    constants[tensor[0]] = tensor[1]
    return nodes, constants
