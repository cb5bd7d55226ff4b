"""V2 inference requests as columns: MLServer's pandas-codec layout, one input per feature.

Each input is one feature's column, `shape: [N]` (or `[N, 1]`), its data inline as JSON or
in the binary part. The columns go to the schema's own validation (`Schema.validate_columns`,
the checks and messages /v1's records get), so this module only checks the wire format:
names, shapes, datatypes and sizes.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from tabship.errors import BodyTooLargeError, MalformedBodyError
from tabship.feature import listed, shown
from tabship.schema import FLOAT32_MAX, Feature, Schema
from tabship.serve import binary_tensors
from tabship.serve.contract import parse_json

INTEGERS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
FLOATS = frozenset({"FP16", "FP32", "FP64"})
NUMBERS = INTEGERS | FLOATS
# The protocol's fields, and the model's name and version as the kserve SDK also sends them.
REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs", "model_name", "model_version"})
# An input of the everyday kind: JSON data, no parameters (see `TensorReader._plain`).
PLAIN_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data"})
# Every field an input tensor may have ($request_input).
INPUT_KEYS = PLAIN_INPUT_KEYS | {"parameters"}
_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})


class Columns(NamedTuple):
    """A decoded request: rows, the columns by feature, and what it asks back.

    A tuple, because one is made per request (a frozen dataclass cost 0.4 µs more).
    """

    rows: int
    columns: dict[str, list[Any]]
    id: str | None
    parameters: Mapping[str, Any]
    outputs: list[Mapping[str, Any]] | None


def datatype_of(feature: Feature) -> str:
    """The datatype the model metadata announces for a feature."""
    if feature.kind == "numeric":
        return "INT64" if feature.integer else "FP64"
    if feature.dtype == "bool":
        return "BOOL"
    return "BYTES"


def accepted(feature: Feature) -> frozenset[str]:
    """The datatypes a feature's input may arrive in (converted to the schema's type).

    Not BOOL for a number: /predict_api refuses true as a number, and so does this."""
    if feature.kind == "numeric":
        return NUMBERS
    if feature.dtype == "bool":
        return frozenset({"BOOL", "BYTES"})
    return frozenset({"BYTES"})


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if type(value) is not dict:
        raise MalformedBodyError(f"{where}: must be a JSON object")
    return value


class TensorReader:
    """Reads V2 inference requests for one schema."""

    def __init__(self, schema: Schema, max_batch: int, name: str, version: str) -> None:
        self.names = {"model_name": name, "model_version": version}
        self.schema = schema
        self.max_batch = max_batch
        self.features = {feature.name: feature for feature in schema.features}
        # Columns of the training table the model does not use (its target, ignored ones):
        # skipped, as /predict_api skips them, so a client may send every column it has.
        self.ignored = schema.ignored
        # Looked up per input on every request: computed once.
        self.accepted = {feature.name: accepted(feature) for feature in schema.features}
        # For `_plain`: by (input name, datatype), the JSON types its elements may have.
        self.plain_types = {
            (feature.name, datatype): _JSON_TYPES.get(datatype, _NUMBER_TYPES)
            for feature in schema.features
            for datatype in self.accepted[feature.name]
        }

    def read(self, header: bytes, binary: memoryview) -> Columns:
        """Decode the JSON header and its binary part into records, or raise a 400 naming the input."""
        payload = _object(parse_json(header), "body")
        if len(payload) == 1 and "inputs" in payload:  # the usual body: nothing else to check
            request_id, parameters, outputs = None, _NO_PARAMETERS, None
        else:
            request_id, parameters, outputs = self._fields(payload)
        inputs = payload.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise MalformedBodyError("inputs: must be a non-empty list, one input per feature")
        plain = None if binary else self._plain(inputs)
        columns, rows = plain or self._columns(inputs, binary)
        return Columns(rows, columns, request_id, parameters, outputs)

    def _fields(
        self, payload: Mapping[str, Any]
    ) -> tuple[str | None, Mapping[str, Any], list[Mapping[str, Any]] | None]:
        """The request's fields besides its inputs: id, parameters, outputs, model name."""
        extra = sorted(str(key)[:60] for key in payload if key not in REQUEST_KEYS)
        if extra:
            raise MalformedBodyError(
                f"{extra[0]}: is not a field of an inference request "
                "(id, parameters, inputs, outputs)"
            )
        for key, served in self.names.items():
            given = payload.get(key)
            if given is not None and given != served:
                raise MalformedBodyError(
                    f"{key}: {shown(given)} is not {shown(served)}, the "
                    f"{key.removeprefix('model_')} served here; give it as that text, or leave "
                    f"{key} out"
                )
        request_id = payload.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise MalformedBodyError("id: must be a string")
        parameters = _object(payload.get("parameters") or {}, "parameters")
        outputs = payload.get("outputs")
        if outputs is not None and not isinstance(outputs, list):
            raise MalformedBodyError("outputs: must be a list of {name, parameters}")
        return request_id, parameters, outputs

    def _plain(self, inputs: list[Any]) -> tuple[dict[str, list[Any]], int] | None:
        """The everyday request read in one pass, or None to read it the checking way.

        Every feature once, each input just {name, shape: [N], datatype, data} with N flat
        elements of the datatype's JSON types. What this accepts, `_columns` reads to the same
        columns (a test holds them equal); anything else goes there, to be read or refused
        with its message. One record's request spends more time in the checks than in the model.
        """
        if len(inputs) != len(self.features):
            return None
        columns: dict[str, list[Any]] = {}
        count = -1
        plain_types = self.plain_types
        for tensor in inputs:
            # Four keys, and these four: the keys are PLAIN_INPUT_KEYS.
            if type(tensor) is not dict or len(tensor) != len(PLAIN_INPUT_KEYS):
                return None
            try:
                name, datatype, shape, data = (
                    tensor["name"],
                    tensor["datatype"],
                    tensor["shape"],
                    tensor["data"],
                )
            except KeyError:
                return None
            fits = (
                plain_types.get((name, datatype))
                if type(name) is str and type(datatype) is str
                else None
            )
            if (
                fits is None
                or name in columns
                or type(shape) is not list
                or type(data) is not list
                or len(shape) != 1
                or type(shape[0]) is not int
                or shape[0] != len(data)
                or len(data) != (count if columns else len(data))
                or not all(map(fits.__contains__, map(type, data)))
                # Out of the datatype's range: the checking way names the element.
                or (datatype in _RANGED and not _in_range(datatype, data))
            ):
                return None
            count = len(data)
            if datatype in _AS_THEY_CAME:  # text and whole numbers: nothing to convert
                columns[name] = data
            else:
                columns[name] = _convert(datatype, data)
        if not 0 < count <= self.max_batch:
            return None
        return columns, count

    def _columns(self, inputs: list[Any], binary: memoryview) -> tuple[dict[str, list[Any]], int]:
        columns: dict[str, list[Any]] = {}
        rows: int | None = None
        offset = 0
        for index, tensor in enumerate(inputs):
            name, size = _head(index, tensor)
            if name in self.ignored and name not in self.features:
                if size is not None:  # its bytes are skipped, for the next input's to be found
                    offset = binary_tensors.take(binary, offset, size, name)[1]
                continue
            feature = self._feature(name, columns)
            count = self._rows(tensor, name, rows)
            rows = count
            if size is not None:
                raw, offset = binary_tensors.take(binary, offset, size, name)
                values = binary_tensors.decode(name, tensor["datatype"], count, raw)
            else:
                values = self._inline(tensor, name, count)
            columns[feature.name] = _convert(tensor["datatype"], values)
        if offset != len(binary):
            raise MalformedBodyError(
                f"body: {len(binary) - offset} bytes after the last binary input; "
                "binary_data_size must add up to the binary part"
            )
        missing = [name for name in self.features if name not in columns]
        if missing:
            raise MalformedBodyError(
                f"inputs: {listed(missing)} missing; send one input per feature "
                f"({len(self.features)} in all, see GET /v2/models/NAME)"
            )
        assert rows is not None
        return columns, rows

    def _feature(self, name: str, seen: Mapping[str, Any]) -> Feature:
        feature = self.features.get(name)
        if feature is None:
            raise MalformedBodyError(
                f"inputs.{name[:60]}: is not an input of this model; the inputs are "
                f"{listed(list(self.features))}"
            )
        if name in seen:
            raise MalformedBodyError(f"inputs.{name}: is given twice")
        return feature

    def _rows(self, tensor: Mapping[str, Any], name: str, rows: int | None) -> int:
        """The tensor's row count from its shape and datatype, checked against the others."""
        datatype = tensor.get("datatype")
        if type(datatype) is not str or datatype not in self.accepted[name]:
            feature = self.features[name]
            allowed = (
                "FP64, FP32, INT64, INT32 or another number type (not BOOL)"
                if feature.kind == "numeric"
                else " or ".join(sorted(accepted(feature)))
            )
            raise MalformedBodyError(
                f"inputs.{name}.datatype: {shown(datatype)} does not fit this "
                f"{feature.kind} input; send {allowed}"
            )
        shape = tensor.get("shape")
        if type(shape) is list and len(shape) == 1 and type(shape[0]) is int and shape[0] >= 0:
            count: int = shape[0]  # the common case, checked without a generator
        elif (
            not isinstance(shape, list)
            or not 1 <= len(shape) <= 2
            or any(type(dim) is not int or dim < 0 for dim in shape)
            or (len(shape) == 2 and shape[1] != 1)
        ):
            raise MalformedBodyError(
                f"inputs.{name}.shape: {shown(shape)} is not [N] or [N, 1] with N a whole "
                "number of rows (one row per element)"
            )
        else:
            count = shape[0]
        if count == 0:
            raise MalformedBodyError(f"inputs.{name}.shape: has no rows; send at least one")
        if count > self.max_batch:
            raise BodyTooLargeError(
                f"inputs.{name}.shape: {count} rows is over the batch limit of {self.max_batch}"
            )
        if rows is not None and count != rows:
            raise MalformedBodyError(
                f"inputs.{name}.shape: {count} rows, but the inputs before it have {rows}; "
                "every input is one column of the same rows"
            )
        return count

    def _inline(self, tensor: Mapping[str, Any], name: str, count: int) -> list[Any]:
        """A tensor's JSON data, flattened (row-major, nested or not), of `count` elements."""
        data = tensor.get("data")
        if type(data) is not list:
            raise MalformedBodyError(
                f"inputs.{name}.data: must be a list (or give parameters.binary_data_size)"
            )
        datatype = tensor["datatype"]
        fits = _JSON_TYPES.get(datatype, _NUMBER_TYPES)
        if len(data) == count:  # flat data of the JSON types the datatype takes: one pass
            for value in data:
                if type(value) not in fits:
                    break
            else:
                if datatype not in _RANGED or _in_range(datatype, data):
                    return data
        shape = tensor["shape"]
        if any(type(value) is list for value in data) and not _nested_as(data, shape):
            raise MalformedBodyError(
                f"inputs.{name}.data: nested lists must follow the shape {shape} level by "
                "level; or give the data flat"
            )
        flat = _flatten(data, count)
        if len(flat) != count:
            shown = f"more than {count}" if len(flat) > count else str(len(flat))
            raise MalformedBodyError(
                f"inputs.{name}.data: {shown} elements, but the shape holds {count}"
            )
        _check_json(name, datatype, flat)
        return flat


_NONE = type(None)
# Datatypes whose JSON elements `_convert` returns unchanged.
_AS_THEY_CAME = INTEGERS | {"BYTES"}
_NUMBER_TYPES = frozenset({int, float, _NONE})
_JSON_TYPES = {
    "BYTES": frozenset({str, _NONE}),
    "BOOL": frozenset({bool, _NONE}),
    **{datatype: frozenset({int, _NONE}) for datatype in INTEGERS},
}


# What each integer datatype holds. A JSON integer may be any size (the body is read exactly):
# one past the datatype's range is refused, as a binary tensor could not carry it.
_INT_RANGES = {
    f"{sign}INT{bits}": (0, 2**bits - 1) if sign else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    for sign in ("", "U")
    for bits in (8, 16, 32, 64)
}
# The largest finite value of the narrower float datatypes: a JSON number past it is refused,
# as a binary tensor could not carry it. FP64 holds every JSON number; the schema then
# refuses what is past 32-bit floats, as it does on every route.
_FLOAT_BOUNDS = {"FP16": 65504.0, "FP32": FLOAT32_MAX}
# Datatypes whose JSON elements are range-checked (`_in_range`).
_RANGED = frozenset(_INT_RANGES) | frozenset(_FLOAT_BOUNDS)


def _in_range(datatype: str, data: list[Any]) -> bool:
    """Whether every element of a number tensor's data fits its datatype (NaN is a missing
    value; an infinity is left to the schema, which refuses it as on every route)."""
    bound = _FLOAT_BOUNDS.get(datatype)
    if bound is not None:
        return not any(value is not None and bound < abs(value) < math.inf for value in data)
    low, high = _INT_RANGES[datatype]
    if not data:
        return True
    try:  # two C calls, the usual case: no missing value
        return bool(low <= min(data) and max(data) <= high)
    except TypeError:  # a null among them
        return all(value is None or low <= value <= high for value in data)


def _nested_as(data: Any, shape: list[int]) -> bool:
    """Whether nested data has the tensor's shape: a list of shape[0] at the first level, and
    so on down; scalars at the last (the protocol's nested form)."""
    if not shape:
        return type(data) is not list
    return (
        type(data) is list
        and len(data) == shape[0]
        and all(_nested_as(item, shape[1:]) for item in data)
    )


def _flatten(data: list[Any], count: int) -> list[Any]:
    """Nested lists in row-major order, flat; stops once past `count` elements."""
    flat: list[Any] = []
    pending = [iter(data)]
    while pending:
        for value in pending[-1]:
            if isinstance(value, list):
                pending.append(iter(value))
                break
            flat.append(value)
            if len(flat) > count:
                return flat
        else:
            pending.pop()
    return flat


def refuse_unknown_keys(
    item: dict[str, Any], allowed: Collection[str], where: str, what: str
) -> None:
    """422 naming the first key of `item` that is not `allowed` (an unknown key was ignored)."""
    extra = sorted(str(key)[:60] for key in item if key not in allowed)
    if extra:
        raise MalformedBodyError(f"{where}.{extra[0]}: is not a field of {what}")


def _head(index: int, tensor: Any) -> tuple[str, object]:
    """An input tensor's name and its binary_data_size (None: its data is inline JSON)."""
    if type(tensor) is not dict:
        raise MalformedBodyError(f"inputs[{index}]: must be a JSON object")
    name = tensor.get("name")
    if type(name) is not str:
        raise MalformedBodyError(f"inputs[{index}].name: must be a string")
    refuse_unknown_keys(
        tensor,
        INPUT_KEYS,
        f"inputs.{name[:60]}",
        "an input tensor (name, shape, datatype, parameters, data)",
    )
    parameters = tensor.get("parameters")
    if not parameters:
        return name, None
    return name, _object(parameters, f"inputs.{name}.parameters").get("binary_data_size")


def _check_json(name: str, datatype: str, values: list[Any]) -> None:
    """Each JSON element is of the tensor's datatype (null stands for a missing value)."""
    for index, value in enumerate(values):
        if value is None:
            continue
        kind = type(value)
        if datatype == "BYTES":
            fits = kind is str
        elif datatype == "BOOL":
            fits = kind is bool
        elif datatype in INTEGERS:
            # JSON has one number type: clients may write a whole number as 40.0.
            fits = kind is int or (kind is float and value.is_integer())
            low, high = _INT_RANGES[datatype]
            if fits and not low <= value <= high:
                raise MalformedBodyError(
                    f"inputs.{name}.data[{index}]: {shown(value)} is outside {datatype} "
                    f"({low} to {high}); send a wider datatype"
                )
        else:
            fits = kind is int or kind is float
            bound = _FLOAT_BOUNDS.get(datatype)
            if fits and bound is not None and bound < abs(value) < math.inf:
                raise MalformedBodyError(
                    f"inputs.{name}.data[{index}]: {shown(value)} is outside {datatype} "
                    f"(-{bound:g} to {bound:g}); send FP64"
                )
        if not fits:
            raise MalformedBodyError(
                f"inputs.{name}.data[{index}]: {shown(value)} is not {datatype}; send "
                f"{_KINDS.get(datatype, 'numbers')} (or null for a missing value)"
            )


# What a datatype's JSON elements are, for messages.
_KINDS = {
    "BYTES": "text",
    "BOOL": "true or false",
    **{datatype: "whole numbers" for datatype in INTEGERS},
}


def _convert(datatype: str, values: list[Any]) -> list[Any]:
    """Values as the record path takes them: NaN is a missing value."""
    if datatype in FLOATS:
        # NaN is the one value not equal to itself.
        return [None if value != value else value for value in values]
    return values
