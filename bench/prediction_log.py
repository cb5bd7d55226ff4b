"""`make bench-log`: what the prediction log costs a server, and how fast its writer writes.

1. Single-row /predict_api with the SQLite log on against the same server with it off, in the
   same run, alternating, server on core 0 and wrk on core 1: throughput ratio (target >= 0.9)
   and p99 ratio (target <= 1.2), next to the log rows answered, written and dropped (a writer
   that falls behind drops rows and flatters the ratio).
2. The writer's sustained rows per second into SQLite and into a real PostgreSQL (a cluster
   started from Debian's binaries in a temp dir, as the tests do).

BENCH_SECONDS and BENCH_RUNS shorten it; BENCH_LOG_MODEL names a model folder to use instead
of the insurance showcase.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from insurance_model import ensure_model
from serve_load import BIN, RECORD, RESULTS, free_port, wait_ready, wrk

from tabship.monitor.ids import prediction_ids
from tabship.monitor.store import LogStore
from tabship.monitor.writer import Logged, LogWriter

ROOT = Path(__file__).resolve().parents[1]
RUN_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
WRITER_ROWS = int(os.environ.get("BENCH_WRITER_ROWS", "500000"))


def start(model: Path, port: int, log_db: str | None) -> subprocess.Popen[bytes]:
    command = [str(BIN / "tabship"), "serve", str(model), "--port", str(port)]
    if log_db:
        command += ["--log-db", log_db]
    return subprocess.Popen(
        ["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def serving(model: Path, work: Path) -> dict[str, object]:
    """Log off against SQLite log on, alternating runs, 32 and 1 connections."""
    ports = {"off": free_port(), "sqlite": free_port()}
    urls = {"off": None, "sqlite": f"sqlite:///{work / 'bench.db'}"}
    servers = {kind: start(model, port, urls[kind]) for kind, port in ports.items()}
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for kind, port in ports.items():
            wait_ready(f"http://127.0.0.1:{port}/readyz", servers[kind])
            wrk(port, 32, 3)  # warm-up
        for _ in range(RUNS):
            for connections in (32, 1):
                for kind, port in ports.items():
                    runs.setdefault(f"{kind}@{connections}", []).append(
                        wrk(port, connections, RUN_SECONDS)
                    )
        counts = log_counts(ports["sqlite"])
    finally:
        for process in servers.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    out: dict[str, object] = dict(counts)
    for key, samples in runs.items():
        out[key] = {
            "rps": statistics.median(s["rps"] for s in samples),
            "p99_ms": statistics.median(s["p99_ms"] for s in samples),
            "non_2xx": sum(int(s["non_2xx"]) for s in samples),
        }
    store = LogStore(urls["sqlite"] or "")
    out["sqlite_rows_logged"] = store.count()
    store.close()
    return out


def log_counts(port: int) -> dict[str, float]:
    """The logging server's own count of answered predictions and of log rows it dropped.

    A writer that falls behind drops rows (counted, never waited for) and so costs the
    server less: a throughput ratio only means something next to a drop count of 0.
    """
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    answered = dropped = 0.0
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "tabship_requests_total" and sample.labels.get("route") == (
                "/predict_api"
            ):
                answered += sample.value if sample.labels.get("status") == "200" else 0
            elif sample.name == "tabship_prediction_log_dropped_total":
                dropped = sample.value
    return {"answered": answered, "dropped": dropped}


def writer_rate(url: str) -> float:
    """Rows per second the writer sustains: one-row requests' entries, queued first (as a
    saturated server queues them), written by the thread while the clock runs."""
    store = LogStore(url)
    store.open()
    writer = LogWriter(store, "bench", max_queue_rows=WRITER_ROWS + 1)
    for _ in range(WRITER_ROWS):
        ids = prediction_ids(1)  # the server's own ids: one prefix, counters in order
        writer.submit(Logged(ids, [RECORD], [12345.6], None, []), "/predict_api", "", 0.0004)
    started = time.perf_counter()
    writer.start()
    assert writer.flush(timeout=600)
    seconds = time.perf_counter() - started
    written = writer.stats.written
    writer.close()
    assert written == WRITER_ROWS, (written, writer.stats)
    return WRITER_ROWS / seconds


def postgres_rate() -> float | None:
    sys.path.insert(0, str(ROOT))
    from tests.postgres import binaries, remove, start_postgres

    if binaries() is None:
        return None
    cluster = start_postgres()
    try:
        return writer_rate(cluster.url)
    finally:
        remove(cluster)


def main() -> None:
    model = (
        Path(os.environ["BENCH_LOG_MODEL"]) if os.environ.get("BENCH_LOG_MODEL") else ensure_model()
    )
    work = Path(tempfile.mkdtemp(prefix="tabship-bench-log-"))
    serve = serving(model, work)
    sqlite = writer_rate(f"sqlite:///{work / 'writer.db'}")
    postgres = postgres_rate()
    results = {
        "prediction_log": {
            "serving": serve,
            "writer_rows_per_s": {"sqlite": sqlite, "postgresql": postgres},
            "run_seconds": RUN_SECONDS,
            "runs": RUNS,
        }
    }
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**existing, **results}, indent=2, default=float) + "\n")
    print(
        f"machine: {os.cpu_count()} cores; {RUNS} runs x {RUN_SECONDS} s; server core 0, wrk core 1"
    )
    print("| measure | log on (SQLite) | log off (same run) | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for connections in (32, 1):
        on, off = serve[f"sqlite@{connections}"], serve[f"off@{connections}"]
        assert isinstance(on, dict) and isinstance(off, dict)
        print(
            f"| {connections} conn requests/s | {on['rps']:,.0f} | {off['rps']:,.0f} | "
            f"{on['rps'] / off['rps']:.2f} | >= 0.9 |"
        )
        print(
            f"| {connections} conn p99 ms | {on['p99_ms']:.2f} | {off['p99_ms']:.2f} | "
            f"{on['p99_ms'] / off['p99_ms']:.2f} | <= 1.2 |"
        )
    print(
        f"| rows logged / answered / dropped | {serve['sqlite_rows_logged']:,} / "
        f"{serve['answered']:,.0f} / {serve['dropped']:,.0f} | | | every 200, 0 dropped |"
    )
    if serve["dropped"]:
        print("the writer fell behind and dropped rows: the ratios above flatter the log")
    print(f"| writer rows/s into SQLite | {sqlite:,.0f} | | | |")
    shown = f"{postgres:,.0f}" if postgres else "PostgreSQL missing"
    print(f"| writer rows/s into PostgreSQL | {shown} | | | |")


if __name__ == "__main__":
    main()
