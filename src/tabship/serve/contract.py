"""The HTTP contract derived from a model's schema: JSON Schemas, examples, body parsing."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from tabship.errors import BodyTooLargeError, MalformedBodyError, MediaTypeError, RequestError
from tabship.exact_json import has_long_digits
from tabship.feature import BOOL_SPELLINGS, NA_TEXTS
from tabship.predictor import Predictor
from tabship.schema import FLOAT32_MAX, MAX_SHOWN_LEVELS, Feature, Schema


def feature_schema(feature: Feature, strict: bool = False) -> dict[str, Any]:
    """JSON Schema of one field: its type, levels, and the training range as documentation."""
    gaps = feature.takes_gaps  # null (or "") is taken and filled
    if feature.kind == "numeric":
        # The model computes in 32-bit floats: larger numbers are refused.
        # An integer bound is written as an integer: generators round a float bound up.
        bound: float = int(FLOAT32_MAX) if feature.integer else FLOAT32_MAX
        out: dict[str, Any] = {"type": "number", "minimum": -bound, "maximum": bound}
        if feature.integer:
            # A whole number, written 40 or 40.0 (pandas writes an integer column with a gap
            # as floats): OpenAPI 3.0's "integer" refuses 40.0, which the server takes.
            out["multipleOf"] = 1
        out["description"] = (
            f"Seen in training: {feature.minimum:g} to {feature.maximum:g}; values outside "
            "are accepted with a warning."
            + (" A whole number (40 or 40.0)." if feature.integer else "")
        )
    elif feature.kind == "date":
        timed = feature.dtype == "datetime"
        out = {
            "type": "string",
            "format": "date-time" if timed else "date",
            "description": f"ISO 8601. Seen in training: {feature.date_text(feature.minimum)} "
            f"to {feature.date_text(feature.maximum)}; others are accepted with a warning."
            + (
                " A time zone or offset (Z, +02:00) is optional and not converted: the "
                "wall-clock time is what the model reads."
                if timed
                else ""
            ),
            "example": _example_date(feature, feature.maximum),
        }
    elif feature.dtype == "bool":
        return {"title": feature.name, **_boolean_schema(feature, strict)}
    elif strict:  # unseen values are refused: the levels are the contract
        known = list(feature.known_levels)
        # A gap may be sent as text too ("", "NA", ...), as a file's empty cell is read.
        spelled = sorted(NA_TEXTS - set(known)) if gaps else []
        out = {"type": "string", "enum": known + spelled}
    else:
        levels = feature.known_levels
        shown = ", ".join(levels[:MAX_SHOWN_LEVELS]) + (
            ", ..." if len(levels) > MAX_SHOWN_LEVELS else ""
        )
        # Not an enum: a value unseen in training is predicted as unknown with a warning.
        out = {
            "type": "string",
            "description": f"Seen in training: {len(levels)} values ({shown}); others are "
            "predicted as unknown, with a warning.",
            "example": levels[0],
            "minLength": 0 if gaps else 1,  # "" is an empty field
        }
    if gaps:
        out["nullable"] = True  # OpenAPI 3.0's spelling of "or null"
        if "enum" in out:  # which an enum must list itself (OpenAPI 3.0.3)
            out["enum"] = [*out["enum"], None]
    return {"title": feature.name, **out}


def _boolean_schema(feature: Feature, strict: bool) -> dict[str, Any]:
    """A boolean feature: JSON true or false, or the text a file would hold ("True", "false").

    OpenAPI 3.0 has no type lists, so the two forms are alternatives, each nullable where a
    gap is taken (an alternative's own `nullable` is what 3.0 reads)."""
    gaps = feature.takes_gaps
    known = feature.known_levels
    # Only the spellings of a value seen in training, in strict mode: True alone may have been.
    spellings = [*known, *(text for text, level in BOOL_SPELLINGS.items() if level in known)]
    boolean: dict[str, Any] = {"type": "boolean"}
    text: dict[str, Any] = {"type": "string"}
    if strict:  # an unseen value is refused: the seen ones are the contract
        boolean["enum"] = [level == "True" for level in known]
        text["enum"] = spellings + (sorted(NA_TEXTS - set(spellings)) if gaps else [])
    else:
        text["minLength"] = 0 if gaps else 1
    alternatives = [boolean, text]
    if gaps:
        for each in alternatives:
            each["nullable"] = True
            if "enum" in each:
                each["enum"] = [*each["enum"], None]
    return {
        "anyOf": alternatives,
        "description": "true or false (the text True, true, TRUE, False, false or FALSE too)"
        + ("" if strict else "; other text is predicted as unknown, with a warning."),
        "example": feature.known_levels[0] == "True",
    }


def example_record(schema: Schema) -> dict[str, Any]:
    """A valid record: the middle of each numeric range, the first level of each category."""
    record: dict[str, Any] = {}
    for feature in schema.features:
        if feature.kind == "numeric":
            middle = ((feature.minimum or 0.0) + (feature.maximum or 0.0)) / 2
            record[feature.name] = round(middle) if feature.integer else round(middle, 2)
        elif feature.kind == "date":
            record[feature.name] = _example_date(feature)
        elif feature.dtype == "bool":
            record[feature.name] = feature.known_levels[0] == "True"
        else:
            record[feature.name] = feature.known_levels[0]
    return record


def _example_date(feature: Feature, seconds: float | None = None) -> str:
    """A date of the training range (its middle unless given) as text the API takes and
    OpenAPI's `date-time` names (RFC 3339, so with seconds and a zone)."""
    if feature.minimum is None or feature.maximum is None:
        return "2024-01-01T00:00:00Z" if feature.dtype == "datetime" else "2024-01-01"
    if seconds is None:
        seconds = (feature.minimum + feature.maximum) / 2
    text = feature.date_text(seconds)
    return text + ":00Z" if feature.dtype == "datetime" else text


def record_schema(schema: Schema, strict: bool = False) -> dict[str, Any]:
    """JSON Schema of one record: every field required, and no others but the skipped ones."""
    skipped = {
        name: {"description": "A column of the training table the model does not use; skipped."}
        for name in sorted(schema.ignored)
    }
    return {
        "title": "Record",
        "type": "object",
        "properties": {f.name: feature_schema(f, strict) for f in schema.features} | skipped,
        "required": schema.names,
        "additionalProperties": False,
        "example": example_record(schema),
    }


def batch_schema(schema: Schema, max_batch: int, strict: bool = False) -> dict[str, Any]:
    """JSON Schema of the /v1/predict body."""
    return {
        "title": "PredictRequest",
        "type": "object",
        "properties": {
            "instances": {
                "type": "array",
                "items": record_schema(schema, strict),
                "minItems": 1,
                "maxItems": max_batch,
            }
        },
        "required": ["instances"],
        "additionalProperties": False,
        "example": {"instances": [example_record(schema)]},
    }


# What the form's number inputs send: plain decimals, no exponent, so within float32.
_WHOLE_TEXT = r"^\s*[-+]?\d{1,30}\s*$"
_DECIMAL_TEXT = r"^\s*[-+]?(\d{1,30}(\.\d*)?|\.\d{1,30})\s*$"


def form_field(feature: Feature, strict: bool = False) -> dict[str, Any]:
    """JSON Schema of one form input's text."""
    if feature.kind == "numeric":
        return {"type": "string", "pattern": _WHOLE_TEXT if feature.integer else _DECIMAL_TEXT}
    if feature.kind == "date":
        return {"type": "string", "format": "date-time" if feature.dtype == "datetime" else "date"}
    if strict:
        return {"type": "string", "enum": list(feature.known_levels)}
    return {"type": "string", "pattern": r"\S"}


def form_schema(schema: Schema, strict: bool = False) -> dict[str, Any]:
    """JSON Schema of the form post: each input's text; empty only where the field may be."""
    return {
        "type": "object",
        "properties": {f.name: form_field(f, strict) for f in schema.features},
        "required": [f.name for f in schema.features if not f.allow_missing],
    }


def prediction_value(classes: Sequence[Any]) -> dict[str, Any]:
    """JSON Schema of one prediction on every route: a class (one of `classes`, as answers
    give them: text, whole numbers, numbers or booleans) or, for regression, a number."""
    if not classes:
        return {"type": "number"}
    first = classes[0]
    kind = (
        "boolean" if isinstance(first, bool)
        else "integer" if isinstance(first, int)
        else "number" if isinstance(first, float)
        else "string"
    )  # fmt: skip
    return {"type": kind, "enum": list(classes)}


def batch_answer_schema(predictor: Predictor) -> dict[str, Any]:
    """JSON Schema of a /v1/predict answer."""
    value = prediction_value(predictor.labels)
    properties: dict[str, Any] = {
        "predictions": {"type": "array", "items": value},
        # One per prediction, for POST /v1/feedback (and the prediction log).
        "ids": {"type": "array", "items": {"type": "string"}},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "model": {"type": "object"},
    }
    if predictor.task == "classification":
        properties["probabilities"] = {
            "type": "array",
            "items": {"type": "object", "additionalProperties": {"type": "number"}},
        }
    return {
        "type": "object",
        "properties": properties,
        "required": ["predictions", "ids", "warnings"],
    }


def read_json(headers: Sequence[tuple[bytes, bytes]], body: bytes, limit: int) -> Any:
    """The decoded body of a JSON route: 415 unless declared JSON in UTF-8, its content
    encoding undone (gzip, deflate; at most `limit` bytes once inflated), 422 unless it
    parses."""
    content_type, encoding = body_headers(headers)
    require_json(content_type)
    return parse_json(decoded_body(body, encoding, limit))


def body_headers(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """Content-Type and Content-Encoding, in one pass; two of either is refused (400): which
    one a proxy or the app would read is not defined."""
    found: dict[bytes, str] = {}
    for key, value in headers:
        if key in _BODY_HEADERS:
            if key in found:
                raise RequestError(f"{key.decode()}: the request has more than one")
            found[key] = bytes(value).decode("latin-1")
    return found.get(b"content-type"), found.get(b"content-encoding")


_BODY_HEADERS = frozenset({b"content-type", b"content-encoding"})
# zlib window bits of the encodings clients compress with ("deflate" is zlib's format).
INFLATE_BITS = {"gzip": 31, "deflate": 15}


def decoded_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body, uncompressed when the client compressed it (gzip or deflate).

    Inflated at most to the body limit, so a small bomb cannot take the memory: past the
    limit it is 413 like any big body. One gzip member and nothing after it.
    """
    if not encoding:  # absent, or empty: identity
        return body
    encoding = encoding.strip().lower()
    if encoding == "identity":
        return body
    if encoding not in INFLATE_BITS:
        raise MediaTypeError(
            f"content encoding {encoding[:40]!r} is not accepted; send gzip, deflate or an "
            "uncompressed body"
        )
    inflater = zlib.decompressobj(INFLATE_BITS[encoding])
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise MalformedBodyError(f"body: not valid {encoding} data") from None
    if len(inflated) > limit:
        raise BodyTooLargeError(f"body: over the {limit}-byte limit once inflated")
    if not inflater.eof:
        raise MalformedBodyError(f"body: the {encoding} data is cut short")
    if inflater.unused_data:
        raise MalformedBodyError(f"body: bytes after the end of the {encoding} data")
    return inflated


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, without parameters, lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def require_json(content_type: str | None) -> None:
    """Refuse bodies that are not declared as JSON, or as JSON in another charset (415)."""
    media = media_type(content_type)
    if media != "application/json" and not media.endswith("+json"):
        shown = media or "none"
        raise MediaTypeError(f"content type {shown!r} is not accepted; send application/json")
    require_utf8(content_type, "send the JSON as UTF-8 (RFC 8259)")


def require_utf8(content_type: str | None, advice: str) -> None:
    """Refuse a body declared in a charset other than UTF-8 (415), with `advice`."""
    charset = declared_charset(content_type)
    if charset not in (None, "utf-8", "utf8"):
        raise MediaTypeError(f"charset {charset[:40]!r} is not accepted; {advice}")


def declared_charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, lower case, or None."""
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def parse_json(body: bytes) -> Any:
    """Decode a JSON body; NaN and Infinity parse here so validation can name their field.

    orjson reads every ordinary body, about six times faster than the standard library. What
    it refuses (NaN, Infinity, lone surrogates, invalid UTF-8, deep nesting, broken JSON) goes
    to the standard library, which accepts the first three so that validation can name the
    field, and words the refusals. So does a body with a long run of digits: orjson reads an
    integer beyond 64 bits as the nearest double, which could round a number just over a
    bound onto it.
    """
    if not has_long_digits(body):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            # Each key has one colon, so more colons than keys is text holding them, or a key
            # given twice, which orjson (and the standard library) silently keep the last of.
            if body.count(b":") > _key_count(parsed):
                json.loads(body, object_pairs_hook=_once)
            return parsed
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_once)
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"body: not valid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unexpected UTF-8 BOM"):  # its advice is for Python programmers
            raise MalformedBodyError(
                "body: starts with a byte order mark; send the JSON without it"
            ) from None
        raise MalformedBodyError(
            f"body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise MalformedBodyError("body: JSON nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise MalformedBodyError(
            "body: invalid JSON: a number has thousands of digits; numbers must be finite "
            "and within ±3.4e38"
        ) from None


def _key_count(value: Any) -> int:
    """How many keys the objects in a parsed JSON value hold, nested ones too."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return count


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """One JSON object, refused when it gives a key twice (which value was meant is unknown)."""
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise MalformedBodyError(
                f"body: the key {key[:80]!r} is given twice in one object; give each once"
            )
        seen.add(key)
    return found
