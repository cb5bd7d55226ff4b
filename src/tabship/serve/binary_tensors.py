"""Triton's binary tensor data extension: tensors as raw bytes after the JSON header.

A request (or answer) is the JSON header, `Inference-Header-Content-Length` bytes long, then
each binary tensor's bytes in the order the header lists them, each tensor's length in its
`parameters.binary_data_size`. Numbers are little-endian; a BYTES element is a 4-byte
little-endian length and that many bytes. Every size is checked against what is really there
before anything is allocated, so a declared size can never make the server read or reserve
more than the body holds.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from tabship.errors import MalformedBodyError
from tabship.feature import shown

HEADER = "inference-header-content-length"
# Element sizes and little-endian numpy types of the fixed-size datatypes.
NUMPY_TYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*NUMPY_TYPES, "BYTES")
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, declared: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary part of a body; without the header, all of it is JSON."""
    if declared is None:
        return body, memoryview(b"")
    text = declared.strip()
    if not text.isdigit() or len(text) > 12:
        raise MalformedBodyError(
            f"Inference-Header-Content-Length: {text[:40]!r} is not a byte count"
        )
    size = int(text)
    if size > len(body):
        raise MalformedBodyError(
            f"Inference-Header-Content-Length: {size} is more than the {len(body)}-byte body"
        )
    view = memoryview(body)
    return bytes(view[:size]), view[size:]


def take(binary: memoryview, offset: int, size: object, name: str) -> tuple[memoryview, int]:
    """The next `size` bytes of the binary part for input `name`, and the offset after them."""
    if type(size) is not int or size < 0:
        raise MalformedBodyError(
            f"inputs.{name}.parameters.binary_data_size: must be a whole number of bytes, "
            f"got {shown(size)}"
        )
    end = offset + size
    if end > len(binary):
        raise MalformedBodyError(
            f"inputs.{name}: binary_data_size {size} goes past the end of the body "
            f"({len(binary) - offset} bytes left)"
        )
    return binary[offset:end], end


def decode(name: str, datatype: str, count: int, raw: memoryview) -> list[Any]:
    """The `count` elements of one binary tensor as Python values (BYTES as text)."""
    if datatype == "BYTES":
        return _decode_bytes(name, count, raw)
    dtype = NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise MalformedBodyError(f"inputs.{name}.datatype: {datatype[:20]!r} is not a V2 datatype")
    if len(raw) != count * dtype.itemsize:
        raise MalformedBodyError(
            f"inputs.{name}: {len(raw)} bytes of binary data, but shape and {datatype} need "
            f"{count} x {dtype.itemsize} = {count * dtype.itemsize}"
        )
    if datatype == "BOOL":
        flags = np.frombuffer(raw, dtype=np.uint8)
        if flags.size and int(flags.max()) > 1:
            raise MalformedBodyError(f"inputs.{name}: a BOOL element is not 0 or 1")
        return [bool(flag) for flag in flags.tolist()]
    values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
    return values


def _decode_bytes(name: str, count: int, raw: memoryview) -> list[Any]:
    """BYTES elements: a 4-byte little-endian length, then that many bytes of UTF-8.

    One tight loop (a BYTES tensor of a thousand rows is a thousand turns); the count is
    checked at the end, which the body size bounds (each element takes 4 bytes at least).
    """
    values: list[Any] = []
    append = values.append
    data = bytes(raw)  # slicing bytes is cheaper than slicing a memoryview
    unpack = _LENGTH.unpack_from
    offset, end = 0, len(data)
    try:
        while offset < end:
            (size,) = unpack(data, offset)
            start = offset + 4
            offset = start + size
            if offset > end:
                raise MalformedBodyError(
                    f"inputs.{name}: element {len(values)} declares {size} bytes; "
                    f"{end - start} are left"
                )
            append(data[start:offset].decode())
    except struct.error:
        raise MalformedBodyError(f"inputs.{name}: a BYTES length prefix is cut short") from None
    except UnicodeDecodeError:
        raise MalformedBodyError(
            f"inputs.{name}: element {len(values)} is not valid UTF-8 text"
        ) from None
    if len(values) != count:
        raise MalformedBodyError(
            f"inputs.{name}: {len(values)} BYTES elements, but its shape holds {count}"
        )
    return values


def encode(datatype: str, values: list[Any]) -> bytes:
    """One output tensor's bytes: FP64 little-endian, or length-prefixed UTF-8 for BYTES."""
    if datatype == "BYTES":
        parts = []
        for value in values:
            data = str(value).encode()
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.asarray(values, dtype=NUMPY_TYPES[datatype]).tobytes()
