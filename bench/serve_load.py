"""`make bench`: serving load against two yardsticks, batch rates, cold start, memory.

The yardsticks run on the same uvicorn/httptools/uvloop stack: a bare FastAPI app that parses
the record with pydantic (the "ceiling" people build by hand), and a raw ASGI app that only
reads and json-loads the body (what the stack itself allows).

Every figure that depends on the machine is reported next to a baseline measured in the same
run (the ceiling app, scikit-learn, pandas), because this machine is noisy. Server on core 0,
wrk on core 1, alternating servers, 3 runs per setting after a warm-up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
from insurance_model import MODEL, ensure_model

from tabship.datasets import fetch
from tabship.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results.json"
BIN = Path(sys.executable).parent
RUN_SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
BATCH_ROWS = 1_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            time.sleep(0.005)
    raise RuntimeError(f"{url} never answered 200")


def start(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "tabship":
        command = [str(BIN / "tabship"), "serve", str(MODEL), "--port", str(port)]
        cwd = ROOT
    else:
        command = [
            str(BIN / "uvicorn"),
            "ceiling_app:app" if kind == "ceiling" else "raw_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        cwd = BENCH
    return subprocess.Popen(
        ["taskset", "-c", "0", *command],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wrk(
    port: int, connections: int, seconds: int, script: Path = BENCH / "post.lua"
) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": 1 if errors else 0,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serving() -> dict[str, object]:
    ports = {"ceiling": free_port(), "raw": free_port(), "tabship": free_port()}
    servers = {kind: start(kind, port) for kind, port in ports.items()}
    results: dict[str, object] = {}
    try:
        for kind, port in ports.items():
            path = {"tabship": "/readyz", "ceiling": "/docs", "raw": "/"}[kind]
            wait_ready(f"http://127.0.0.1:{port}{path}", servers[kind])
            wrk(port, 32, 5)  # warm-up
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(RUNS):
            for connections in (32, 1):
                for kind, port in ports.items():
                    runs.setdefault(f"{kind}@{connections}", []).append(
                        wrk(port, connections, RUN_SECONDS)
                    )
        for key, samples in runs.items():
            results[key] = {
                "rps": statistics.median(s["rps"] for s in samples),
                "p50_ms": statistics.median(s["p50_ms"] for s in samples),
                "p99_ms": statistics.median(s["p99_ms"] for s in samples),
                "non_2xx": sum(int(s["non_2xx"]) for s in samples),
                "runs": samples,
            }
        results["tabship_rss_after_load_mb"] = rss_mb(servers["tabship"].pid)
    finally:
        for process in servers.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return results


def cold_start() -> float:
    times = []
    for _ in range(3):
        port = free_port()
        process = start("tabship", port)
        try:
            times.append(wait_ready(f"http://127.0.0.1:{port}/readyz", process))
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    return statistics.median(times)


def big_table(rows: int) -> pd.DataFrame:
    frame = pd.read_csv(fetch("insurance")).drop(columns="charges")
    return frame.sample(rows, replace=True, random_state=1).reset_index(drop=True)


def batch(frame: pd.DataFrame) -> dict[str, float]:
    predictor = Predictor.load(MODEL, threads=os.cpu_count() or 1)
    pipeline = Predictor.load(MODEL, engine="sklearn").artifact.load_pipeline()
    started = time.perf_counter()
    pipeline.predict(frame)
    sklearn_rate = len(frame) / (time.perf_counter() - started)
    started = time.perf_counter()
    predictor.predict_batch(predictor.schema.validate_frame(frame))
    tabship_rate = len(frame) / (time.perf_counter() - started)
    return {
        "sklearn_rows_per_s": sklearn_rate,
        "tabship_rows_per_s": tabship_rate,
        "ratio": tabship_rate / sklearn_rate,
    }


def file_scoring(frame: pd.DataFrame) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="tabship-bench-"))
    source = work / "rows.csv"
    frame.to_csv(source, index=False)
    started = time.perf_counter()
    pd.read_csv(source).to_csv(work / "pandas.csv", index=False)
    pandas_rate = len(frame) / (time.perf_counter() - started)
    # The CLI in a fresh process that reports its own peak memory when it ends.
    script = (
        "import sys\n"
        "from tabship.cli import main\n"
        f"sys.argv = ['tabship', 'predict', {str(MODEL)!r}, {str(source)!r}, '-o', {str(work / 'scored.csv')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        # VmHWM restarts at exec; ru_maxrss would include the parent's size at fork.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('PEAK', hwm)\n"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    tabship_rate = len(frame) / (time.perf_counter() - started)
    peak = int(out.rsplit("PEAK", 1)[1]) / 1024
    return {
        "pandas_read_write_rows_per_s": pandas_rate,
        "tabship_predict_rows_per_s": tabship_rate,
        "ratio": tabship_rate / pandas_rate,
        "peak_rss_mb": peak,
    }


def main() -> None:
    ensure_model()
    results: dict[str, object] = {"cores": os.cpu_count(), "run_seconds": RUN_SECONDS, "runs": RUNS}
    results["serving"] = serve = serving()
    results["cold_start_s"] = cold = cold_start()
    frame = big_table(BATCH_ROWS)
    results["batch"] = b = batch(frame)
    results["file"] = f = file_scoring(frame)
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**existing, **results}, indent=2, default=float) + "\n")
    c32, t32, c1, t1 = (serve[k] for k in ("ceiling@32", "tabship@32", "ceiling@1", "tabship@1"))
    r32, r1 = serve["raw@32"], serve["raw@1"]
    print(
        f"machine: {os.cpu_count()} cores; {RUNS} runs x {RUN_SECONDS} s per setting; server on core 0, wrk on core 1"
    )
    print("| measure | tabship | baseline (same run) | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| 32 conn requests/s | {t32['rps']:,.0f} | ceiling {c32['rps']:,.0f} | {t32['rps'] / c32['rps']:.0%} | >= 100% |"
    )  # type: ignore[index]
    print(
        f"| 32 conn requests/s | {t32['rps']:,.0f} | raw ASGI {r32['rps']:,.0f} | {t32['rps'] / r32['rps']:.0%} | |"
    )  # type: ignore[index]
    print(f"| 32 conn p99 ms | {t32['p99_ms']:.2f} | ceiling {c32['p99_ms']:.2f} | | <= 8 ms |")  # type: ignore[index]
    print(f"| 32 conn non-2xx | {t32['non_2xx']} | | | 0 |")  # type: ignore[index]
    print(f"| 1 conn p50 ms | {t1['p50_ms']:.3f} | ceiling {c1['p50_ms']:.3f} | | <= 0.25 ms |")  # type: ignore[index]
    print(
        f"| 1 conn requests/s | {t1['rps']:,.0f} | ceiling {c1['rps']:,.0f} | {t1['rps'] / c1['rps']:.0%} | |"
    )  # type: ignore[index]
    print(
        f"| 1 conn requests/s | {t1['rps']:,.0f} | raw ASGI {r1['rps']:,.0f} | {t1['rps'] / r1['rps']:.0%} | |"
    )  # type: ignore[index]
    print(
        f"| Predictor.predict 1M rows/s | {b['tabship_rows_per_s']:,.0f} | sklearn {b['sklearn_rows_per_s']:,.0f} | {b['ratio']:.2f}x | >= 1.5x |"
    )
    print(
        f"| tabship predict 1M-row CSV rows/s | {f['tabship_predict_rows_per_s']:,.0f} | pandas read+write {f['pandas_read_write_rows_per_s']:,.0f} | {f['ratio']:.2f}x | >= 0.5x |"
    )
    print(f"| tabship predict peak RSS MB | {f['peak_rss_mb']:.0f} | | | flat |")
    print(f"| cold start to /readyz s | {cold:.2f} | | | <= 1.0 s |")
    print(f"| memory after load MB | {serve['tabship_rss_after_load_mb']:.0f} | | | <= 150 MB |")


if __name__ == "__main__":
    main()
