"""The server's own lane: a request read whole is answered without uvicorn's ASGI cycle.

Under uvicorn every request costs a task, a RequestResponseCycle, a scope and message dicts,
and two writes; for a single-record prediction that was more than the prediction itself.
Here a request whose body is declared with Content-Length (within the limit, no Expect, not
chunked, not queued behind a request uvicorn is answering) is collected by the protocol and
given to the same layers the ASGI app runs (serve/layers.py): limits, key gate, concurrency
cap, dispatch, error mapping and accounting are one implementation. The layers' coroutine
is driven right here, without a task: when it waits (for the loop turn's batch of single
records, or a big batch in the thread pool) it resumes in the future's callback. The answer
leaves in one write.

Everything else about a connection stays uvicorn's: keep-alive and its timer, pipelining
(a request behind a suspended one queues in uvicorn's pipeline), flow control, shutdown
(the answer in flight is written, then the connection closes) and the ASGI path itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from tabship.config import ServeSettings
from tabship.errors import InternalError, ReadTimeoutError
from tabship.serve.http import Answer, Request, answer_bytes, request_path
from tabship.serve.layers import CLIENT_CLOSED, DISCARD_FACTOR, LATE_BODY, Layers
from tabship.serve.protocol import GuardedProtocol


class Lane:
    """One request in the lane. It stands in uvicorn's `cycle` slot, so uvicorn's pipelining and
    shutdown see a request in flight (`response_complete`, `keep_alive`)."""

    __slots__ = (
        "chunks",
        "disconnected",
        "keep_alive",
        "more_body",
        "request",
        "response_complete",
        "started",
    )

    def __init__(self, request: Request, keep_alive: bool, started: float) -> None:
        self.request = request
        self.keep_alive = keep_alive
        self.started = started
        self.chunks: list[bytes] = []
        self.more_body = True
        self.response_complete = False
        self.disconnected = False


class LaneProtocol(GuardedProtocol):
    """GuardedProtocol answering requests read whole through the layers directly."""

    layers: Layers
    body_limit = 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane: Lane | None = None
        self._paused_for_writes = False

    def _take_lane(self) -> bool:
        if not self._eligible():
            return False
        parser = self.parser
        url = httptools.parse_url(self.url)
        request = Request(
            parser.get_method().decode("ascii"),
            request_path(url.path.decode("ascii")),
            self.headers,
            query=url.query or b"",
            client=self.client[0] if self.client else "",
        )
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        lane = self._lane = Lane(request, keep_alive, self._started)
        self.cycle = lane  # type: ignore[assignment]
        self.layers.begin(request)
        return True

    def _eligible(self) -> bool:
        """A plain request, nothing before it unanswered: the body's size known and allowed."""
        if self.expect_100_continue or self.parser.should_upgrade() or self.pipeline:
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return False
            if name == b"content-length" and not (
                value.isdigit() and int(value) <= self.body_limit
            ):
                return False
        return True

    def on_body(self, body: bytes) -> None:
        lane = self._lane
        if lane is not None and lane.more_body:
            lane.chunks.append(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        lane = self._lane
        if lane is None or not lane.more_body:
            super().on_message_complete()
            return
        self._disarm()
        lane.more_body = False
        request = lane.request
        chunks = lane.chunks
        request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        refused = self.layers.check_host(request)
        if refused is not None:
            self._finish(lane, refused)
            return
        self._step(lane, self.layers.answer(request))

    def _step(self, lane: Lane, coroutine: Coroutine[Any, Any, Answer]) -> None:
        """Run the layers' coroutine until it answers or waits; when it waits, go on later.

        What a task would do, without one: the coroutine waits only on futures (the loop
        turn's batch, the thread pool) or yields to the loop; it resumes in their callback.
        """
        try:
            waiting = coroutine.send(None)
        except StopIteration as done:
            self._finish(lane, done.value)
            return
        except asyncio.CancelledError:  # the layers answer every Exception; not a cancelled wait
            self._finish(lane, self.layers.refusal(lane.request, InternalError("cancelled")))
            return
        if waiting is None:  # a bare yield to the loop (asyncio.sleep(0))
            self.loop.call_soon(self._step, lane, coroutine)
            return
        waiting._asyncio_future_blocking = False
        waiting.add_done_callback(lambda _: self._step(lane, coroutine))

    def _finish(self, lane: Lane, answer: Answer) -> None:
        """Write the answer in one piece, account for it, then keep the connection or close it."""
        request = lane.request
        lane.response_complete = True
        if self._lane is lane:
            self._lane = None
        close = request.close or not lane.keep_alive
        status = CLIENT_CLOSED if lane.disconnected else answer.status
        if not lane.disconnected:
            head = request.method == "HEAD"
            default = self.server_state.default_headers
            line = STATUS_LINE[answer.status]
            self.transport.write(answer_bytes(answer, line, close, head, default))
        self.layers.done(request, status, time.perf_counter() - lane.started)
        if lane.disconnected:
            return
        if close:
            self.transport.close()
            return
        self.on_response_complete()
        if self.flow.write_paused:
            # The client is not reading its answers: stop reading its requests until it does.
            self.flow.pause_reading()
            self._paused_for_writes = True

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._paused_for_writes:
            self._paused_for_writes = False
            self.flow.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        lane = self._lane
        if lane is not None and not lane.response_complete:
            lane.disconnected = True
            if lane.more_body:  # the client left before its body was in
                lane.more_body = False
                self._finish(lane, Answer(CLIENT_CLOSED, b""))
        if isinstance(self.cycle, Lane):  # uvicorn's own clean-up expects its cycle or none
            self.cycle = None  # type: ignore[assignment]
        super().connection_lost(exc)

    def _late(self) -> None:
        lane = self._lane
        if lane is None or not lane.more_body or self.transport.is_closing():
            super()._late()
            return
        self._timer = None
        lane.more_body = False
        self._finish(lane, self.layers.refusal(lane.request, ReadTimeoutError(LATE_BODY)))


def serving_protocol(settings: ServeSettings, layers: Layers) -> type[LaneProtocol]:
    """The protocol class for uvicorn's `http=` setting: these settings' limits, these layers."""
    return type(
        "ServingProtocol",
        (LaneProtocol,),
        {
            "header_cap": settings.max_header_bytes,
            "body_cap": settings.max_body_bytes * DISCARD_FACTOR,
            "body_limit": settings.max_body_bytes,
            "read_timeout": settings.read_timeout,
            "on_refusal": staticmethod(layers.refused),
            "layers": layers,
        },
    )
