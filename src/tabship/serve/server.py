"""Run the app under uvicorn: SIGTERM drains (readiness 503, in-flight requests finish), then exit 0."""

from __future__ import annotations

import contextlib
import errno
import io
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import cast

import uvicorn

from tabship.config import ServeSettings, unknown_variables
from tabship.errors import ConfigError, TabshipError
from tabship.predictor import Predictor
from tabship.serve.app import App, ServerState, create_app
from tabship.serve.auth import is_regular, read_keys, warn_if_shared
from tabship.serve.lane import serving_protocol
from tabship.serve.v2 import model_name


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
        # Seconds as given: int() made 0.5 zero, and zero meant no limit at all to uvicorn.
        timeout_graceful_shutdown=cast(int, settings.graceful_timeout),
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
    try:
        predictor = predictor or _load(model, settings)
    except TabshipError as exc:  # a worker process: said in one line, as the CLI says it
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    state = ServerState()
    server = DrainingServer(
        _config(create_app(predictor, settings, state), settings), state, settings.drain_delay
    )
    server.run(sockets=[sock] if sock is not None else None)
    if not server.started:  # uvicorn could not bind or start; it has said why on stderr
        sys.exit(1)


def idle_options(settings: ServeSettings) -> list[str]:
    """Options given that do nothing without their partner (`/metrics` stayed open with
    --protect-metrics and no keys, and nothing said so)."""
    idle = []
    if settings.api_keys_file is None:
        if settings.protect_metrics:
            idle.append("--protect-metrics does nothing without --api-keys-file")
        if settings.public_pages:
            idle.append("--public-pages does nothing without --api-keys-file")
    if settings.log_db is None and settings.log_retention_days:
        idle.append("--log-retention-days does nothing without --log-db")
    return idle


def _checked_start(model: Path, settings: ServeSettings) -> Predictor:
    """What must hold before any worker starts, checked once: keys file, model, log database."""
    if settings.api_keys_file is not None:  # a missing or empty keys file stops the start
        read_keys(settings.api_keys_file)
        if settings.workers > 1 and not is_regular(settings.api_keys_file):
            raise ConfigError(
                f"API keys file {settings.api_keys_file} is a pipe, which can be read once; "
                f"with --workers {settings.workers} give a file"
            )
        warning = warn_if_shared(settings.api_keys_file)
        if warning:
            sys.stderr.write(warning + "\n")
    for warning in idle_options(settings) + unknown_variables():
        sys.stderr.write(f"warning: {warning}\n")
    predictor = _load(model, settings)  # fail here, once, on a bad model folder
    model_name(predictor, settings)  # and on a name /v2 paths cannot carry
    if settings.log_db:
        from tabship.monitor.store import check_log_db

        with settings.named_as_given("log_db"):
            check_log_db(settings.log_db)  # a bad URL or a newer schema stops here, once
    return predictor


def listening_socket(settings: ServeSettings) -> socket.socket:
    """The socket every worker accepts on, bound here so a bad host or a port in use is one
    clear error before anything starts, and port 0's real port can be said."""
    where = f"--host {settings.host!r}"
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise ConfigError(
            f"{where} is not an address or a name this machine resolves ({reason}); give "
            "127.0.0.1, 0.0.0.0 or a host name without http:// or a port"
        ) from None
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"--port {settings.port} is in use on {settings.host}; stop what listens there "
                "or choose another --port (or TABSHIP_PORT, as for `make demo`)"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{where} is not an address of this machine") from None
        raise ConfigError(f"{where} --port {settings.port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def shown_address(sock: socket.socket, host: str) -> str:
    """The URL a user opens: localhost for the loopback and every-interface addresses, IPv6
    in brackets, the port bound (port 0 means any free one)."""
    port = sock.getsockname()[1]
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host  # noqa: S104
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def serve(
    model: Path, settings: ServeSettings, announce: Callable[[str], None] | None = None
) -> None:
    """Serve `model`: in this process for one worker, else N worker processes on one socket;
    `announce` gets the address once everything is checked and the socket bound."""
    # The port first: a port in use stops the start before anything is made (the log's file).
    sock = listening_socket(settings)
    try:
        predictor = _checked_start(model, settings)
    except BaseException:
        sock.close()
        raise
    if announce is not None:
        announce(shown_address(sock, settings.host))
    if settings.workers == 1:
        run_worker(model, settings, sock, predictor=predictor)
        sock.close()
        return
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
