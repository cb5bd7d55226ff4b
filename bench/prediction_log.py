"""`make bench-log`: what the prediction log costs a server, and how fast its writer writes.

1. Single-row /predict_api with the SQLite log on against the same server with it off, in the
   same run: rounds of both in shuffled order, one server alive at a time on core 0, wrk on
   core 1; the median of the rounds' paired throughput ratios (target >= 0.9) and p99 ratios
   (target <= 1.2) with their range, next to the log rows answered, written and dropped (a
   writer that falls behind drops rows and flatters the ratio).
2. The writer's sustained rows per second into SQLite and into a real PostgreSQL (a cluster
   started from Debian's binaries in a temp dir, as the tests do).

BENCH_SECONDS and BENCH_RUNS shorten it; BENCH_LOG_MODEL names a model folder to use instead
of the insurance showcase.
"""

from __future__ import annotations

import json
import os
import random
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

from tabship.monitor.ids import Logged, prediction_ids
from tabship.monitor.store import LogStore
from tabship.monitor.writer import LogWriter

ROOT = Path(__file__).resolve().parents[1]
RUN_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WRITER_ROWS = int(os.environ.get("BENCH_WRITER_ROWS", "500000"))


def start(model: Path, port: int, log_db: str | None) -> subprocess.Popen[bytes]:
    command = [str(BIN / "tabship"), "serve", str(model), "--port", str(port)]
    if log_db:
        command += ["--log-db", log_db]
    return subprocess.Popen(
        ["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def serving(model: Path, work: Path) -> dict[str, object]:
    """Log off against SQLite log on at 32 and 1 connections: one server alive at a time (two
    would share core 0, the idle one's writer and drift timer running during the other's
    runs), rounds in shuffled order, each log-on run's ratio paired with its round's log-off
    run. This machine's speed moves by 10-20% from minute to minute: within one hour the old
    way (both servers up, alternating) gave 1.03, 0.99 and 0.88; two sets of 10 paired rounds
    gave 0.83 and 0.84."""
    url = f"sqlite:///{work / 'bench.db'}"
    runs: dict[str, list[dict[str, float]]] = {}
    answered = dropped = 0.0
    for _ in range(RUNS):
        order = ["off", "sqlite"]
        random.shuffle(order)
        for kind in order:
            port = free_port()
            server = start(model, port, url if kind == "sqlite" else None)
            try:
                wait_ready(f"http://127.0.0.1:{port}/readyz", server)
                wrk(port, 32, 3)  # warm-up
                for connections in (32, 1):
                    runs.setdefault(f"{kind}@{connections}", []).append(
                        wrk(port, connections, RUN_SECONDS)
                    )
                if kind == "sqlite":
                    counts = log_counts(port)
                    answered += counts["answered"]
                    dropped += counts["dropped"]
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
    out: dict[str, object] = {"answered": answered, "dropped": dropped}
    for key, samples in runs.items():
        out[key] = {
            "rps": statistics.median(s["rps"] for s in samples),
            "p99_ms": statistics.median(s["p99_ms"] for s in samples),
            "non_2xx": sum(int(s["non_2xx"]) for s in samples),
        }
    for connections in (32, 1):
        on, off = runs[f"sqlite@{connections}"], runs[f"off@{connections}"]
        for measure in ("rps", "p99_ms"):
            ratios = sorted(a[measure] / b[measure] for a, b in zip(on, off, strict=True))
            out[f"{measure}_ratio@{connections}"] = {
                "median": statistics.median(ratios),
                "low": ratios[0],
                "high": ratios[-1],
            }
    store = LogStore(url)
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
        f"machine: {os.cpu_count()} cores; {RUNS} rounds x {RUN_SECONDS} s, one server at a "
        "time; server core 0, wrk core 1"
    )
    print(
        "| measure | log on (SQLite), median | log off, median | paired ratio, median "
        "(lowest-highest) | target |"
    )
    print("|---|---:|---:|---:|---|")
    for connections in (32, 1):
        on, off = serve[f"sqlite@{connections}"], serve[f"off@{connections}"]
        assert isinstance(on, dict) and isinstance(off, dict)
        for measure, label, target in (
            ("rps", "requests/s", ">= 0.9"),
            ("p99_ms", "p99 ms", "<= 1.2"),
        ):
            ratio = serve[f"{measure}_ratio@{connections}"]
            assert isinstance(ratio, dict)
            shown = f"{on[measure]:,.0f}" if measure == "rps" else f"{on[measure]:.2f}"
            base = f"{off[measure]:,.0f}" if measure == "rps" else f"{off[measure]:.2f}"
            print(
                f"| {connections} conn {label} | {shown} | {base} | {ratio['median']:.2f} "
                f"({ratio['low']:.2f}-{ratio['high']:.2f}) | {target} |"
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
