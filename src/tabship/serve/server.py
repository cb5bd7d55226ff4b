"""Run the app under uvicorn: SIGTERM drains (readiness 503, in-flight requests finish), then exit 0."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from tabship.config import ServeSettings
from tabship.predictor import Predictor
from tabship.serve.app import App, ServerState, create_app
from tabship.serve.auth import read_keys, warn_if_shared
from tabship.serve.lane import serving_protocol


class DrainingServer(uvicorn.Server):
    """On SIGTERM: report not-ready at once, keep serving for the drain delay, then shut down.

    The delay lets a load balancer see the failed readiness probe before the listener closes;
    uvicorn's own graceful shutdown then lets requests in flight finish. SIGINT skips the delay.
    """

    def __init__(self, config: uvicorn.Config, state: ServerState, drain_delay: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_delay = drain_delay
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain_deadline is None and self.drain_delay > 0:
            self.state.draining = True
            self.drain_deadline = time.monotonic() + self.drain_delay
            return
        self.state.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Like uvicorn's, minus re-raising the signal afterwards: a drained server exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)


def _config(app: App, settings: ServeSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,  # the app writes its own JSON line per request
        log_level="warning",
        timeout_graceful_shutdown=int(settings.graceful_timeout) or None,
        server_header=False,
        lifespan="on",
        http=serving_protocol(settings, app.layers),
        ws="none",
    )


def _load(model: Path, settings: ServeSettings) -> Predictor:
    sealed = None
    if settings.trust is not None:  # before anything in the folder is deserialised
        from tabship.signing import verify_model

        sealed = verify_model(model, settings.trust)
    return Predictor.load(
        model, settings.engine, strict_categories=settings.strict_categories, sealed=sealed
    )


def run_worker(
    model: Path,
    settings: ServeSettings,
    sock: socket.socket | None = None,
    predictor: Predictor | None = None,
) -> None:
    """Load the model (unless given) and serve until a signal ends the process."""
    # Log collectors read stdout as lines; a block buffer would hold them back for minutes.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    predictor = predictor or _load(model, settings)
    state = ServerState()
    server = DrainingServer(
        _config(create_app(predictor, settings, state), settings), state, settings.drain_delay
    )
    server.run(sockets=[sock] if sock is not None else None)
    if not server.started:  # uvicorn could not bind or start; it has said why on stderr
        sys.exit(1)


def _checked_start(model: Path, settings: ServeSettings) -> Predictor:
    """What must hold before any worker starts, checked once: keys file, model, log database."""
    if settings.api_keys_file is not None:  # a missing or empty keys file stops the start
        read_keys(settings.api_keys_file)
        warning = warn_if_shared(settings.api_keys_file)
        if warning:
            sys.stderr.write(warning + "\n")
    predictor = _load(model, settings)  # fail here, once, on a bad model folder
    if settings.log_db:
        from tabship.monitor.store import check_log_db

        check_log_db(settings.log_db)  # a bad URL or a newer schema stops here, once
    return predictor


def serve(model: Path, settings: ServeSettings) -> None:
    """Serve `model`: in this process for one worker, else N worker processes on one socket."""
    predictor = _checked_start(model, settings)
    if settings.workers == 1:
        run_worker(model, settings, predictor=predictor)
        return
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.set_inheritable(True)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=run_worker, args=(model, settings, sock))
        for _ in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(sig: int, _: FrameType | None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, sig)

    # Ctrl-C reaches every process of the group by itself; SIGTERM comes to the parent only.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for worker in workers:
        worker.join()
    sock.close()
    codes = [worker.exitcode for worker in workers]
    if any(code not in (0, None) for code in codes):
        sys.exit(1)
