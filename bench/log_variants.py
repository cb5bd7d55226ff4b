"""Paired A/B of what the prediction log costs a server, between versions of the code.

    .venv/bin/python bench/log_variants.py REV [REV ...]

Each REV (a git revision, or `.` for the working tree) is served with the SQLite log on;
the working tree's server with the log off is the baseline. One server alive at a time on
core 0, wrk on core 1, rounds in shuffled order, each run paired with log-off's run of the
same round. Reported per revision: the median paired throughput and p99 ratios, and the
log's extra CPU a request: the server's utime + stime (from /proc) over the wrk run divided
by the requests answered, minus log-off's in the same round. On this machine CPU a request
moved a few percent between rounds while requests/s moved 10-20%, so it tells versions
apart where the ratios cannot (bench/README.md, sessions 15 and 16).

LOG_AB_ROUNDS (8), LOG_AB_SECONDS (6) and LOG_AB_CONNECTIONS (32) set the runs. Each run's
database is deleted after it: gigabytes of deleted log files left the disk busy enough to
make later runs (and the batch-saturation test) drop rows.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from insurance_model import ensure_model
from prediction_log import log_counts
from serve_load import BIN, free_port, wait_ready, wrk

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("LOG_AB_ROUNDS", "8"))
SECONDS = int(os.environ.get("LOG_AB_SECONDS", "6"))
CONNECTIONS = int(os.environ.get("LOG_AB_CONNECTIONS", "32"))
BASELINE = "off"


def sources(revisions: list[str], work: Path) -> dict[str, Path]:
    """Each revision's `src` folder: the working tree's for `.`, else extracted by git."""
    found = {BASELINE: ROOT / "src"}
    for revision in revisions:
        if revision == ".":
            found[revision] = ROOT / "src"
            continue
        folder = work / f"rev-{len(found)}"
        folder.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        found[revision] = folder / "src"
    return found


def server_cpu(pid: int) -> float:
    """The process's user + system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(model: Path, source: Path, database: Path | None) -> dict[str, float]:
    """One server of `source` (the log on when `database` is given): one wrk run after a
    warm-up, with the server's CPU a request."""
    command = ["taskset", "-c", "0", str(BIN / "tabship"), "serve", str(model)]
    port = free_port()
    command += ["--port", str(port)]
    if database is not None:
        command += ["--log-db", f"sqlite:///{database}"]
    environment = {**os.environ, "PYTHONPATH": str(source)}
    server = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server)
        wrk(port, CONNECTIONS, 3)  # warm-up
        before = server_cpu(server.pid)
        result = wrk(port, CONNECTIONS, SECONDS)
        used = server_cpu(server.pid) - before
        result["us_per_request"] = used / (result["rps"] * SECONDS) * 1e6
        result["dropped"] = log_counts(port)["dropped"] if database is not None else 0.0
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main(revisions: list[str]) -> None:
    if not revisions:
        sys.exit(__doc__)
    model = ensure_model()
    work = Path(tempfile.mkdtemp(prefix="tabship-log-ab-"))
    try:
        trees = sources(revisions, work)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for round_number in range(ROUNDS):
            order = list(trees)
            random.shuffle(order)
            for name in order:
                database = None if name == BASELINE else work / "log.db"
                runs[name].append(measured(model, trees[name], database))
                for leftover in work.glob("log.db*"):
                    leftover.unlink()
            print(f"round {round_number + 1} of {ROUNDS} done", flush=True)
        report(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(runs: dict[str, list[dict[str, float]]]) -> None:
    base = runs[BASELINE]
    print(
        f"| {CONNECTIONS} connections | req/s | ratio | p99 ratio | extra µs a request | dropped |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, samples in runs.items():
        pairs = list(zip(samples, base, strict=True))
        ratio = sorted(one["rps"] / other["rps"] for one, other in pairs)
        p99 = sorted(one["p99_ms"] / other["p99_ms"] for one, other in pairs)
        extra = sorted(one["us_per_request"] - other["us_per_request"] for one, other in pairs)
        print(
            f"| {name} | {statistics.median(s['rps'] for s in samples):,.0f} "
            f"| {statistics.median(ratio):.3f} ({ratio[0]:.3f}-{ratio[-1]:.3f}) "
            f"| {statistics.median(p99):.2f} ({p99[0]:.2f}-{p99[-1]:.2f}) "
            f"| {statistics.median(extra):+.2f} ({extra[0]:+.2f} to {extra[-1]:+.2f}) "
            f"| {sum(s['dropped'] for s in samples):,.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
