"""`make bench-auth`: what API keys cost on the hot path, against the same server without keys.

Two `tabship serve` processes of the insurance model, one with a keys file (three keys, one
written as its sha256) and one without, take turns under wrk: server on core 0, wrk on
core 1, alternating, median of the runs. The figure is the ratio of requests per second with
keys to without (target: >= 0.95 at 1 and 32 connections).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from insurance_model import MODEL as INSURANCE
from insurance_model import ensure_model
from serve_load import BIN, free_port, wait_ready

BENCH = Path(__file__).resolve().parent
KEY = "bench-key-0123456789abcdef0123456789abcdef"
RUN_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
# Another model folder to measure (default: the insurance model every benchmark uses).
MODEL = Path(os.environ.get("BENCH_MODEL", str(INSURANCE)))


def start(port: int, keys: Path | None) -> subprocess.Popen[bytes]:
    command = [str(BIN / "tabship"), "serve", str(MODEL), "--port", str(port)]
    if keys is not None:
        command += ["--api-keys-file", str(keys)]
    return subprocess.Popen(
        ["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def rps(port: int, script: str, connections: int, seconds: int) -> float:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(BENCH / script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw refused requests:\n{out}")
    return float(out.split("Requests/sec:")[1].split()[0])


def gate_microseconds(keys: Path) -> float:
    """The key check alone, in-process: microseconds per accepted request."""
    import timeit

    from tabship.serve import auth
    from tabship.serve.prometheus import Metrics
    from tabship.serve.routes import Route, RouteTable

    async def handler(request: object) -> None:
        return None

    table = RouteTable([Route("POST", "/predict_api", handler, "predict")])  # type: ignore[arg-type]
    gate = auth.Gate(auth.KeyRing(keys), table, Metrics(), frozenset({auth.OPEN}))
    headers = [(b"host", b"x"), (b"content-type", b"application/json")]
    scope = {
        "method": "POST",
        "path": "/predict_api",
        "headers": [*headers, (b"authorization", f"Bearer {KEY}".encode())],
    }
    assert gate(scope) is None
    rounds = 200_000
    return timeit.timeit(lambda: gate(scope), number=rounds) / rounds * 1e6


def main() -> None:
    if MODEL == INSURANCE:
        ensure_model()
    with tempfile.TemporaryDirectory() as scratch:
        keys = Path(scratch) / "api-keys"
        hashed = hashlib.sha256(b"another-key").hexdigest()
        keys.write_text(f"first-key-unused\nsha256:{hashed}\n{KEY}\n")
        sides = {
            "open": (free_port(), None, "post.lua"),
            "keys": (free_port(), keys, "post_key.lua"),
        }
        servers = {name: start(port, path) for name, (port, path, _) in sides.items()}
        try:
            for name, (port, _, script) in sides.items():
                wait_ready(f"http://127.0.0.1:{port}/readyz", servers[name])
                rps(port, script, 32, 3)  # warm-up
            samples: dict[str, list[float]] = {}
            for run in range(RUNS):
                for connections in (1, 32):
                    # Alternate who goes first: the machine's other load drifts.
                    order = list(sides.items())[:: 1 if run % 2 == 0 else -1]
                    for name, (port, _, script) in order:
                        key = f"{name}@{connections}"
                        samples.setdefault(key, []).append(
                            rps(port, script, connections, RUN_SECONDS)
                        )
        finally:
            for process in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        gate_us = gate_microseconds(keys)
    results = {key: statistics.median(values) for key, values in samples.items()}
    results["gate_us_per_request"] = gate_us
    print(f"| key check in-process | {gate_us:.2f} us per request | | | |")
    for connections in (1, 32):
        ratio = results[f"keys@{connections}"] / results[f"open@{connections}"]
        results[f"ratio@{connections}"] = ratio
        print(
            f"| /predict_api at {connections} connections | with keys "
            f"{results[f'keys@{connections}']:,.0f} req/s | without {results[f'open@{connections}']:,.0f}"
            f" req/s | {ratio:.3f}x | >= 0.95x |"
        )
    (BENCH / "auth.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
