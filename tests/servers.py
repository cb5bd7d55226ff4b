"""A real `tabship serve` subprocess on a free 127.0.0.1 port, for integration and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

TABSHIP = str(Path(sys.executable).with_name("tabship"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    port: int
    log: Path
    errors: Path
    handles: list[IO[str]] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for handle in self.handles:
                handle.close()

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def start_server(
    model: Path,
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
) -> Server:
    port = free_port()
    log = workdir / f"server-{port}.log"
    errors = workdir / f"server-{port}.err"
    handles = [log.open("w"), errors.open("w")]
    process = subprocess.Popen(
        [TABSHIP, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=handles[0],
        stderr=handles[1],
        text=True,
        env={**os.environ, **(env or {})},
    )
    server = Server(process, f"http://127.0.0.1:{port}", port, log, errors, handles)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"server exited with {process.returncode}: {errors.read_text()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError("server did not become ready")


def serving(
    model: Path, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """A server for a fixture to `yield from`: started, handed over, then stopped cleanly."""
    running = start_server(model, workdir, *args, env=env)
    yield running
    assert running.stop() == 0
