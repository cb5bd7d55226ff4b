"""The ASGI adapter: reads a request's body from ASGI messages, then runs the one chain.

Used for what the protocol's lane does not answer itself (chunked bodies, `Expect:
100-continue`, bodies declared over the limit, requests queued behind one of these) and by
every caller of the ASGI app (tests, other servers). The read deadline is kept by the
protocol (serve/protocol.py), which flags a late body in the request's state.
"""

from __future__ import annotations

import time

from tabship.errors import BodyTooLargeError, ReadTimeoutError, TabshipError
from tabship.serve.http import (
    READ_LATE,
    Answer,
    Message,
    Receive,
    Request,
    Scope,
    Send,
    request_path,
    send_answer,
    unmet_expectation,
)
from tabship.serve.layers import CLIENT_CLOSED, DISCARD_FACTOR, LATE_BODY, ClientGone, Layers


class AsgiAdapter:
    """An ASGI app over the layers: the body read (with its limits), the answer sent."""

    def __init__(self, layers: Layers) -> None:
        self.layers = layers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        client = scope.get("client")
        path = scope["path"]
        raw = scope.get("raw_path")
        if raw and b"%" in raw:
            # Escapes decoded here, an encoded slash kept (see `request_path`). Some clients'
            # raw_path carries the query (httpx's): a `?` in a path is always its start.
            path = request_path(raw.split(b"?", 1)[0].decode("ascii", "replace"))
        request = Request(
            method=scope["method"],
            path=path,
            headers=scope["headers"],
            query=scope.get("query_string", b""),
            client=str(client[0]) if client else "",
        )
        self.layers.begin(request)
        status = CLIENT_CLOSED
        try:
            answer = await self._answer(scope, receive, request)
            status = answer.status
            await send_answer(send, answer, close=request.close, head=request.method == "HEAD")
        except ClientGone:
            status = CLIENT_CLOSED
        finally:
            self.layers.done(request, status, time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Receive, request: Request) -> Answer:
        refused = self.layers.check_host(request)
        unmet = None if refused is not None else unmet_expectation(request.headers)
        if unmet is not None:
            refused = self.layers.refusal(request, unmet)
        if refused is None and _waits_for_continue(scope):
            # The first read would tell the client "100 Continue" and it would upload its
            # body: a request without a good key is refused before that.
            refused = self.layers.check_key(request)
        if refused is not None:
            return refused
        try:
            request.body = await self._read_body(scope, receive)
        except _TooLarge as exc:
            if exc.unread:
                await self._discard(scope, receive)
            return self.layers.refusal(request, exc.error)
        except TabshipError as exc:
            return self.layers.refusal(request, exc)
        return await self.layers.answer(request)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.layers.settings.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # A client waiting for "100 Continue" has sent nothing: answer before it does.
            raise _TooLarge(
                BodyTooLargeError(f"body: {declared} bytes is over the {limit}-byte limit"),
                unread=not _waits_for_continue(scope),
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await _receive(scope, receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > limit:
                raise _TooLarge(BodyTooLargeError(f"body: over the {limit}-byte limit"), more)
            chunks.append(chunk)
            if not more:
                return chunk if len(chunks) == 1 else b"".join(chunks)

    async def _discard(self, scope: Scope, receive: Receive) -> None:
        """Read and drop what the client is still sending, up to a bound and the deadline."""
        budget = self.layers.settings.max_body_bytes * DISCARD_FACTOR
        try:
            while budget > 0:
                message = await _receive(scope, receive)
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
        except ReadTimeoutError:
            return


class _TooLarge(Exception):
    """A body over the limit, and whether some of it is still to be read from the client."""

    def __init__(self, error: BodyTooLargeError, unread: bool) -> None:
        self.error = error
        self.unread = unread


def _waits_for_continue(scope: Scope) -> bool:
    """Whether the client sent only its head and waits for "100 Continue" (`Expect:`)."""
    return any(k == b"expect" for k, _ in scope["headers"])


async def _receive(scope: Scope, receive: Receive) -> Message:
    """The next body message; ClientGone if the client left, 408 once the body is late."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    if message.get("more_body") and (scope.get("state") or {}).get(READ_LATE):
        raise ReadTimeoutError(LATE_BODY)
    return message


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
