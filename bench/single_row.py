"""`make bench-single`: single-row /predict_api against the raw ASGI yardstick, with CPU per request.

A quick same-run A/B (issue 18, goal 1): the raw app, the bare FastAPI app, tabship and tabship
with the SQLite prediction log alternate, server on core 0, wrk on core 1, `BENCH_RUNS` runs
of `BENCH_SECONDS` each at 32 connections. Besides requests/s it reports the server's CPU
time per request (user and system), read from /proc around each wrk run: on a shared machine
that figure moves much less than the rate does.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path

from insurance_model import MODEL, ensure_model
from serve_load import BIN, free_port, start, wait_ready, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
RUNS = int(os.environ.get("BENCH_RUNS", "2"))
CONNECTIONS = 32
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system time of every thread of `pid` so far."""
    user = system = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / TICKS, system / TICKS


def launch(kind: str, port: int, work: Path) -> subprocess.Popen[bytes]:
    if kind != "tabship-log":
        return start(kind, port)
    command = [str(BIN / "tabship"), "serve", str(MODEL), "--port", str(port)]
    command += ["--log-db", f"sqlite:///{work / 'bench.db'}"]
    return subprocess.Popen(
        ["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def measure(kind: str, work: Path) -> dict[str, float]:
    port = free_port()
    process = launch(kind, port, work)
    try:
        ready = "/docs" if kind == "ceiling" else "/readyz" if kind.startswith("tabship") else "/"
        wait_ready(f"http://127.0.0.1:{port}{ready}", process)
        wrk(port, CONNECTIONS, 1)  # warm-up
        user, system = cpu_seconds(process.pid)
        result = wrk(port, CONNECTIONS, SECONDS)
        user_after, system_after = cpu_seconds(process.pid)
        requests = result["rps"] * SECONDS
        result["user_us"] = (user_after - user) / requests * 1e6
        result["sys_us"] = (system_after - system) / requests * 1e6
        result["cpu_us"] = result["user_us"] + result["sys_us"]
        return result
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def main() -> None:
    ensure_model()
    kinds = ("raw", "ceiling", "tabship", "tabship-log")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(RUNS):
            for kind in kinds:
                runs[kind].append(measure(kind, Path(work)))
    report = {}
    for kind, results in runs.items():
        report[kind] = {
            key: round(statistics.median(r[key] for r in results), 2) for key in results[0]
        }
    for kind in ("tabship", "tabship-log"):
        rate = report[kind]["rps"] / report["raw"]["rps"]
        cpu = report["raw"]["cpu_us"] / report[kind]["cpu_us"]
        report[f"{kind} / raw"] = {"rps": round(rate, 3), "cpu": round(cpu, 3)}
    report["runs"] = {k: [round(r["rps"]) for r in v] for k, v in runs.items()}  # type: ignore[assignment]
    report["cores"] = os.cpu_count()  # type: ignore[assignment]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
