"""ASGI plumbing shared by every layer: the request, the answer, and the one error mapper."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from tabship.errors import (
    ExpectationFailedError,
    MethodNotAllowedError,
    RecordError,
    RequestError,
    RetryLaterError,
    TabshipError,
    UnauthorizedError,
)

# Ids only: the request path imports no database.
from tabship.monitor.ids import Logged, prediction_ids

if TYPE_CHECKING:
    from tabship.predictor import Prediction

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = "application/json"
HTML = "text/html; charset=utf-8"
# Pages load only their own files; the report's inline script is allowed by its hash.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'{scripts}; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
GENERIC = "invalid value"
# RFC 6750: a 401 names the scheme the client should use.
CHALLENGE = ("www-authenticate", 'Bearer realm="tabship"')
# Set in a request's scope state by the protocol when its body is late.
READ_LATE = "tabship.read_late"
# Error body styles: tabship's {detail, message}, or the Open Inference Protocol's {error}.
TABSHIP_ERRORS = "tabship"
V2_ERRORS = "v2"


@dataclass(slots=True)
class Request:
    """One HTTP request once its body is in: what handlers read.

    `path` is percent-decoded except for `%2F` and `%25` (see `request_path`).
    """

    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    # Set by handlers for the log line: how many rows this request predicted.
    rows: int = 0
    # The values of the route's `{param}` path segments.
    params: dict[str, str] = field(default_factory=dict)
    query: bytes = b""
    # What this request predicted, for the prediction log (set by `predicted`).
    logged: Logged | None = None
    # The client's address, for the auth-failure log line.
    client: str = ""
    # Set by the layers: a probe (never counted as open, never queued behind work), and
    # whether the answer ends the connection (a refused body may still be arriving).
    probe: bool = False
    close: bool = False

    def predicted(self, records: Any, prediction: Prediction) -> list[str]:
        """Note a prediction for the log line and the prediction log; its rows' new ids.

        Every prediction route calls this once, so every prediction is logged the same way.
        """
        ids = prediction_ids(len(records))
        self.rows = len(records)
        self.logged = Logged(
            ids, records, prediction.values, prediction.probabilities, prediction.warnings
        )
        return ids

    def header(self, name: bytes) -> str | None:
        """A header's value as text (latin-1, as HTTP defines it), or None."""
        for key, value in self.headers:
            if key == name:
                return bytes(value).decode("latin-1")
        return None

    def headers_named(self, names: frozenset[bytes]) -> dict[bytes, str]:
        """`header` for several names in one pass: the first value of each one present."""
        found: dict[bytes, str] = {}
        for key, value in self.headers:
            if key in names and key not in found:
                found[key] = bytes(value).decode("latin-1")
        return found

    @property
    def content_type(self) -> str | None:
        """The Content-Type header."""
        return self.header(b"content-type")


def unmet_expectation(headers: list[tuple[bytes, bytes]]) -> ExpectationFailedError | None:
    """The refusal for an `Expect:` header this server cannot meet (anything but
    `100-continue`), or None."""
    for name, value in headers:
        if name == b"expect" and bytes(value).strip().lower() != b"100-continue":
            shown = bytes(value).decode("latin-1")[:40]
            return ExpectationFailedError(
                f"expect: {shown!r} cannot be met; only 100-continue is, or send no Expect"
            )
    return None


# What `request_path` leaves encoded: a slash inside a segment, and `%` itself.
_KEPT_ESCAPES = re.compile("(%2[fF]|%25)")


def request_path(raw: str) -> str:
    """A request target's path, percent-decoded except for `%2F` and `%25`.

    An encoded slash is part of its segment's text, not a separator (`/v2/models/a%2Fb` is
    one model name, `a/b`): decoded before routing, it would route as another path. Kept
    encoded, every `%` left in the path starts `%2F` or `%25`, so a path parameter is
    decoded once more, unambiguously, by its handler (`urllib.parse.unquote`).
    """
    if "%" not in raw:
        return raw
    parts = _KEPT_ESCAPES.split(raw)  # text, escape, text, ..., text
    parts[::2] = [urllib.parse.unquote(part) for part in parts[::2]]
    parts[1::2] = [escape.upper() for escape in parts[1::2]]
    return "".join(parts)


class Answer(NamedTuple):
    """A whole response: status, body and the headers that go with it (a tuple: cheap to make)."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    # Headers of this answer only (a prediction id): sent, never cached with the fixed ones.
    extra: tuple[tuple[bytes, bytes], ...] = ()


# Made once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dump_json(payload: Any) -> bytes:
    """JSON bytes with NaN and Infinity refused: strict parsers reject them.

    orjson writes the answer; it writes NaN and Infinity as null, so an answer holding a null
    is written again by the standard library's encoder, which refuses them. Only that one
    refuses (and writes integers beyond 64 bits, and keys that are not text).
    """
    if type(payload) is float and math.isfinite(payload):
        # The tutorial's answer is one number: what the encoder writes for it, minus the trip.
        return float.__repr__(payload).encode()
    try:
        data = orjson.dumps(payload)
    except TypeError:
        return _ENCODER.encode(payload).encode()
    if b"null" in data:
        return _ENCODER.encode(payload).encode()
    return data


def json_answer(
    payload: Any, status: int = 200, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> Answer:
    """A JSON answer; `extra` are headers of this answer only (a prediction id)."""
    return written_json_answer(dump_json(payload), status, extra)


def written_json_answer(
    data: bytes, status: int = 200, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> Answer:
    """A JSON answer whose bytes are already written (by `dump_json`, or joined from its parts)."""
    return Answer(status, data, JSON, _API_HEADERS, extra)


_API_HEADERS = (("content-security-policy", API_POLICY),)


def html_answer(text: str | bytes, status: int = 200, scripts: tuple[str, ...] = ()) -> Answer:
    """An HTML page with its Content-Security-Policy; `scripts` are hashes of inline scripts."""
    allowed = "".join(f" 'sha256-{digest}'" for digest in scripts)
    body = text.encode() if isinstance(text, str) else text
    return Answer(
        status, body, HTML, (("content-security-policy", PAGE_POLICY.format(scripts=allowed)),)
    )


def _location(field: str, row: int | None) -> list[str | int]:
    if field in ("instances", "(record)") and row is None:
        return ["body", field]
    return ["body", "instances", row, field] if row is not None else ["body", field]


def error_payload(
    exc: TabshipError, style: str = TABSHIP_ERRORS, *, generic: bool = False
) -> tuple[int, dict[str, Any]]:
    """The one place that maps tabship errors to an HTTP status and body.

    tabship's routes answer {detail, message}. The Open Inference Protocol's answer
    {"error": message} with 400 for invalid input (tabship's 422); the bad fields, when known,
    go in an extra key. `generic` (--generic-errors) names the wrong fields only: no allowed
    values or ranges, in either style.
    """
    status, payload = _tabship_payload(exc, generic)
    if style != V2_ERRORS:
        return status, payload
    out: dict[str, Any] = {"error": payload["message"]}
    if isinstance(exc, RecordError):
        out["detail"] = [
            {"input": p.field, "row": p.row, "msg": GENERIC if generic else p.message}
            for p in exc.problems
        ]
    return (400 if status == 422 else status), out


def _tabship_payload(exc: TabshipError, generic: bool) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, RecordError):
        detail = [
            {
                "loc": _location(p.field, p.row),
                "field": p.field,
                "row": p.row,
                "msg": GENERIC if generic else p.message,
                "type": "value_error",
            }
            for p in exc.problems
        ]
        if generic:
            fields = ", ".join(dict.fromkeys(p.field for p in exc.problems))
            return 422, {"detail": detail, "message": f"{GENERIC}: {fields}"}
        return 422, {"detail": detail, "message": str(exc)}
    if exc.status >= 500 and not isinstance(exc, RequestError):
        # The cause is for the server log, not for the client.
        message = "internal error; the server log has the details"
        return exc.status, {"detail": message, "message": message}
    return exc.status, {"detail": str(exc), "message": str(exc)}


def error_answer(
    exc: TabshipError, style: str = TABSHIP_ERRORS, *, generic: bool = False
) -> Answer:
    """The answer for an error, in the route's style, with the headers its status calls for."""
    status, payload = error_payload(exc, style, generic=generic)
    headers: tuple[tuple[str, str], ...] = (("content-security-policy", API_POLICY),)
    if isinstance(exc, RetryLaterError):
        headers += (("retry-after", str(exc.retry_after)),)
    if isinstance(exc, MethodNotAllowedError):
        headers += (("allow", ", ".join(exc.allow)),)
    if isinstance(exc, UnauthorizedError):
        headers += (CHALLENGE,)
    return Answer(status, dump_json(payload), JSON, headers)


_ENCODED: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[bytes, bytes]]] = {}


def _fixed_headers(answer: Answer) -> list[tuple[bytes, bytes]]:
    """The headers every answer of this kind carries, encoded once (there are few kinds)."""
    key = (answer.content_type, answer.headers)
    encoded = _ENCODED.get(key)
    if encoded is None:
        encoded = [
            (b"content-type", answer.content_type.encode()),
            (b"x-content-type-options", b"nosniff"),
            *((k.encode(), v.encode("latin-1")) for k, v in answer.headers),
        ]
        if len(_ENCODED) < 256:  # only fixed header sets repeat; do not grow on the rest
            _ENCODED[key] = encoded
    return encoded


_BLOCKS: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}


def answer_bytes(
    answer: Answer, status_line: bytes, close: bool, head: bool, default: list[tuple[bytes, bytes]]
) -> bytes:
    """A whole HTTP/1.1 answer as one buffer (one write): what `send_answer` sends, unframed.

    `default` are the server's own headers (the date); `head` leaves the body out but keeps its
    length, as GET would have sent it.
    """
    key = (answer.content_type, answer.headers)
    block = _BLOCKS.get(key)
    if block is None:
        block = b"".join(b"%s: %s\r\n" % pair for pair in _fixed_headers(answer))
        if len(_BLOCKS) < 256:
            _BLOCKS[key] = block
    parts = [status_line, *(b"%s: %s\r\n" % pair for pair in default)]
    parts.append(b"content-length: %d\r\n" % len(answer.body))
    parts.append(block)
    parts.extend(b"%s: %s\r\n" % pair for pair in answer.extra)
    parts.append(b"connection: close\r\n\r\n" if close else b"\r\n")
    if not head:
        parts.append(answer.body)
    return b"".join(parts)


async def send_answer(send: Send, answer: Answer, close: bool = False, head: bool = False) -> None:
    """Send a whole answer; `close` ends the connection after it; `head` sends no body."""
    headers = [(b"content-length", str(len(answer.body)).encode()), *_fixed_headers(answer)]
    if answer.extra:
        headers.extend(answer.extra)
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})
