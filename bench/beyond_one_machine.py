"""Beyond one machine: training on a Dask LocalCluster against local joblib, and sharded scoring.

1. Training on a generated insurance-like table (ROWS rows, default 50,000): `train()` with
   local joblib (loky, 2 processes) and with a 2-worker LocalCluster (one thread each) on the
   same 2 cores. The ratio of wall times is the cluster's overhead (goal: under 1.3x).
2. A scaling model from the cluster run's measured times: every cross-validation call's
   per-fold task time, the scatter and the serial refit, predicted for 8 and 32 workers.
3. Sharded scoring: one `tabship predict --shard 0/1` process on one core against two
   shard processes (0/2 and 1/2) on two cores at once, in rows per second (goal: >= 1.6x).

Writes bench/beyond.json. The machine may be shared: figures are ratios within one run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tabship import cluster, crossval
from tabship.train import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "beyond.json"
ROWS = int(os.environ.get("ROWS", "50000"))
SCORE_ROWS = int(os.environ.get("SCORE_ROWS", "4000000"))
MODELS = os.environ.get("MODELS", "ridge,decision_tree,hist_gradient_boosting,lightgbm").split(",")
FOLDS = 5


def insurance_like(rows: int, seed: int = 5) -> pd.DataFrame:
    """The insurance table's shape at any size: age, sex, bmi, children, smoker, region."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 65, rows)
    sex = rng.choice(["female", "male"], rows)
    bmi = np.round(rng.normal(30.6, 6.1, rows), 2)
    children = rng.choice([0, 1, 2, 3, 4, 5], rows, p=[0.43, 0.24, 0.18, 0.12, 0.02, 0.01])
    smoker = rng.choice(["no", "yes"], rows, p=[0.8, 0.2])
    region = rng.choice(["northeast", "northwest", "southeast", "southwest"], rows)
    charges = (
        260 * age
        + 340 * np.maximum(bmi - 30, 0) * (1 + 3 * (smoker == "yes"))
        + 470 * children
        + 23_800 * (smoker == "yes")
        + rng.gamma(2.0, 1500, rows)
    )
    return pd.DataFrame(
        {
            "age": age,
            "sex": sex,
            "bmi": bmi,
            "children": children,
            "smoker": smoker,
            "region": region,
            "charges": np.round(charges, 2),
        }
    )


class Timings:
    """Wall time of every cross-validation call, the refit and the cluster set-up."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.refit = 0.0
        self.setup = 0.0

    def install(self) -> None:
        score, fit, session = crossval.CrossValidator.score, cluster.fit, cluster.session
        timings = self

        def timed_score(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            row = score(self, *args, **kwargs)
            timings.calls.append(time.perf_counter() - started)
            return row

        def timed_fit(*args: Any) -> Any:
            started = time.perf_counter()
            fitted = fit(*args)
            timings.refit = time.perf_counter() - started
            return fitted

        @contextmanager
        def timed_session(*args: Any, **kwargs: Any) -> Iterator[Any]:
            started = time.perf_counter()
            with session(*args, **kwargs) as value:
                timings.setup = time.perf_counter() - started
                yield value

        crossval.CrossValidator.score = timed_score  # type: ignore[method-assign]
        cluster.fit = timed_fit
        cluster.session = timed_session


def training() -> dict[str, Any]:
    from distributed import LocalCluster

    frame = insurance_like(ROWS)
    options = TrainOptions(target="charges", folds=FOLDS, models=MODELS, n_jobs=2)
    # Both start warm: loky's two processes here, the cluster's workers below.
    from joblib import Parallel, delayed

    Parallel(n_jobs=2)(delayed(abs)(-n) for n in range(4))
    started = time.perf_counter()
    local = train(frame, options)
    local_seconds = time.perf_counter() - started
    timings = Timings()
    timings.install()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
    ) as dask:
        started = time.perf_counter()
        remote = train(
            frame, TrainOptions(**{**options.__dict__, "cluster": dask.scheduler_address})
        )
        cluster_seconds = time.perf_counter() - started
    assert [r.name for r in remote.leaderboard] == [r.name for r in local.leaderboard]
    assert remote.best == local.best
    # Each call runs FOLDS tasks on 2 workers: ceil(FOLDS / 2) rounds of one task each.
    task_seconds = [wall / math.ceil(FOLDS / 2) for wall in timings.calls]
    serial = cluster_seconds - sum(timings.calls) - timings.refit

    def predicted(workers: int) -> float:
        # Candidates are compared one after another, so at most FOLDS tasks run at once.
        rounds = math.ceil(FOLDS / min(workers, FOLDS))
        return serial + timings.refit + sum(t * rounds for t in task_seconds)

    return {
        "rows": ROWS,
        "models": MODELS,
        "folds": FOLDS,
        "local_joblib_seconds": round(local_seconds, 2),
        "local_cluster_seconds": round(cluster_seconds, 2),
        "overhead_ratio": round(cluster_seconds / local_seconds, 3),
        "same_leaderboard_order_and_winner": True,
        "scaling_model": {
            "cv_calls": len(timings.calls),
            "mean_task_seconds": round(float(np.mean(task_seconds)), 3),
            "scatter_and_setup_seconds": round(timings.setup, 3),
            "serial_refit_seconds": round(timings.refit, 3),
            "other_serial_seconds": round(serial, 3),
            "predicted_seconds": {w: round(predicted(w), 2) for w in (2, 8, 32)},
            "limits": (
                "candidates are cross-validated one after another, so no more than FOLDS "
                "tasks run at once: 8 and 32 workers predict the same time; past that the "
                "serial refit of the winner, the scatter of the table and preparation remain"
            ),
        },
    }


def _shard_run(
    model: Path, source: Path, out: Path, specs: list[tuple[str, str]]
) -> tuple[float, list[float]]:
    """Wall seconds of the shard processes run at once, and each one's CPU seconds."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                "taskset",
                "-c",
                core,
                sys.executable,
                "-m",
                "tabship",
                "predict",
                str(model),
                str(source),
                "-o",
                str(out),
                "--shard",
                shard,
                "--force",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for core, shard in specs
    ]
    cpu = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"a shard failed: {proc.args}")
        cpu.append(usage.ru_utime + usage.ru_stime)
    return time.perf_counter() - started, cpu


def scoring(workdir: Path) -> dict[str, Any]:
    from tabship.workflow import train_model

    frame = insurance_like(20_000, seed=9)
    frame.to_csv(workdir / "train.csv", index=False)
    model = workdir / "model"
    train_model(
        str(workdir / "train.csv"), TrainOptions(target="charges", models=["lightgbm"]), model
    )
    source = workdir / "score.parquet"
    rows = insurance_like(SCORE_ROWS, seed=10).drop(columns="charges")
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), source, row_group_size=100_000)
    # Best of two, alternating, so a burst of load from elsewhere hits both sides alike.
    ones, twos = [], []
    for _ in range(2):
        ones.append(_shard_run(model, source, workdir / "one", [("0", "0/1")]))
        twos.append(_shard_run(model, source, workdir / "two", [("0", "0/2"), ("1", "1/2")]))
    one, one_cpu = min(ones)
    two, two_cpu = min(twos)
    return {
        "rows": SCORE_ROWS,
        "one_shard_rows_per_second": round(SCORE_ROWS / one),
        "two_shards_rows_per_second": round(SCORE_ROWS / two),
        "speedup": round(one / two, 3),
        # Whether the split adds work (sum) or is uneven (max): on two free cores the
        # speedup is one shard's CPU time over the slower half's.
        "one_shard_cpu_seconds": round(one_cpu[0], 2),
        "two_shards_cpu_seconds": [round(c, 2) for c in two_cpu],
        "cpu_bound_speedup": round(one_cpu[0] / max(two_cpu), 3),
        "load_average_during_run": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    results: dict[str, Any] = {}
    if os.environ.get("PARTS", "training,scoring").find("training") >= 0:
        results["training"] = training()
        print(json.dumps(results["training"], indent=2))
    with tempfile.TemporaryDirectory() as scratch:
        results["sharded_scoring"] = scoring(Path(scratch))
    print(json.dumps(results["sharded_scoring"], indent=2))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
