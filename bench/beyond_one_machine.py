"""Beyond one machine: training on a Dask LocalCluster against local joblib, and sharded scoring.

1. Training on a generated insurance-like table (ROWS rows, default 50,000): `train()` with
   local joblib (loky, 2 processes) and with a 2-worker LocalCluster (one thread each) on the
   same 2 cores. The ratio of wall times is the cluster's overhead (goal: under 1.3x). Both
   sides are warm, as a cluster that has trained before is: every worker process has
   imported the training modules and run one small training (timed apart, in its own line).
   The runs alternate REPEATS times (default 2) and each side's best counts; each counts
   the whole `train()` call: on the cluster also connecting, the version check and scatters.
   Starting the LocalCluster is not counted. The stages of each best run, and the cluster's
   tasks by function, show where the time goes.
2. A scaling model from the cluster run's measured times: every cross-validation call's
   per-fold task time, the scatter and the serial refit, predicted for 8 and 32 workers.
3. Sharded scoring: one `tabship predict --shard 0/1` process on one core against two
   shard processes (0/2 and 1/2) on two cores at once, in rows per second (goal: >= 1.6x).

Writes bench/beyond.json (PARTS=training or PARTS=scoring runs one part and keeps the
other's last figures). The machine may be shared: figures are ratios within one run.
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
REPEATS = int(os.environ.get("REPEATS", "2"))
WARM_ROWS = 500


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
    """One training run's wall time, its cross-validation calls, refit and cluster set-up."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.refit = 0.0
        self.setup = 0.0
        self.wall = 0.0

    def stages(self) -> dict[str, float]:
        """Where the run's wall time went; `other` is preparation and the race's bookkeeping."""
        cv = sum(self.calls)
        return {
            "session_connect_check_scatter": round(self.setup, 3),
            "cross_validation": round(cv, 3),
            "refit": round(self.refit, 3),
            "other": round(self.wall - self.setup - cv - self.refit, 3),
        }


class Recorder:
    """Times the stages of every `train()` run through the functions train.py calls."""

    def __init__(self) -> None:
        self.current = Timings()
        score, fit, session = crossval.CrossValidator.score, cluster.fit, cluster.session
        recorder = self

        def timed_score(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            row = score(self, *args, **kwargs)
            recorder.current.calls.append(time.perf_counter() - started)
            return row

        def timed_fit(*args: Any) -> Any:
            started = time.perf_counter()
            fitted = fit(*args)
            recorder.current.refit = time.perf_counter() - started
            return fitted

        @contextmanager
        def timed_session(address: str | None, *args: Any, **kwargs: Any) -> Iterator[Any]:
            started = time.perf_counter()
            with session(address, *args, **kwargs) as value:
                if address:
                    recorder.current.setup = time.perf_counter() - started
                yield value

        crossval.CrossValidator.score = timed_score  # type: ignore[method-assign]
        cluster.fit = timed_fit
        cluster.session = timed_session

    def run(self, frame: pd.DataFrame, options: TrainOptions) -> tuple[Any, Timings]:
        self.current = timings = Timings()
        started = time.perf_counter()
        result = train(frame, options)
        timings.wall = time.perf_counter() - started
        return result, timings


class TaskCounter:
    """Counts the tasks the LocalCluster's scheduler (in this process) finished, by function."""

    def __init__(self, scheduler: Any) -> None:
        from distributed.diagnostics.plugin import SchedulerPlugin

        counts: dict[str, int] = {}

        class Finished(SchedulerPlugin):
            name = "bench-finished-tasks"

            def transition(self, key: Any, start: str, finish: str, *a: Any, **k: Any) -> None:
                if finish == "memory" and "batch_of_" in str(key):
                    kind = str(key).rsplit("-", 1)[0]
                    counts[kind] = counts.get(kind, 0) + 1

        self.counts = counts
        scheduler.add_plugin(Finished())

    def take(self) -> dict[str, int]:
        taken = dict(sorted(self.counts.items()))
        self.counts.clear()
        return taken


def _warm() -> list[str]:
    """Import what a training task imports (run in each worker process before timing)."""
    import importlib

    names = ["tabship.train", "sklearn.linear_model", "sklearn.tree", "sklearn.ensemble"]
    names += ["lightgbm"] * ("lightgbm" in MODELS)
    return [importlib.import_module(name).__name__ for name in names]


def training() -> dict[str, Any]:
    from distributed import Client, LocalCluster
    from joblib import Parallel, delayed

    frame = insurance_like(ROWS)
    options = TrainOptions(target="charges", folds=FOLDS, models=MODELS, n_jobs=2)
    recorder = Recorder()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as dask,
        Client(dask.scheduler_address) as client,
    ):
        remote = TrainOptions(**{**options.__dict__, "cluster": dask.scheduler_address})
        # Both sides warm, as a cluster that has trained before is: the imports, then one
        # small training each (loky starts its two processes in the local one).
        warm: dict[str, float] = {}
        started = time.perf_counter()
        Parallel(n_jobs=2)(delayed(_warm)() for _ in range(2))
        recorder.run(frame.head(WARM_ROWS), options)
        warm["local_joblib"] = time.perf_counter() - started
        started = time.perf_counter()
        client.run(_warm)
        recorder.run(frame.head(WARM_ROWS), remote)
        warm["local_cluster"] = time.perf_counter() - started
        tasks = TaskCounter(dask.scheduler)
        # Alternating runs, best of each: a burst of load from elsewhere hits both sides alike.
        runs: dict[str, list[tuple[float, Timings]]] = {"local_joblib": [], "local_cluster": []}
        for _ in range(REPEATS):
            local, timed = recorder.run(frame, options)
            runs["local_joblib"].append((timed.wall, timed))
            tasks.take()
            result, timed = recorder.run(frame, remote)
            runs["local_cluster"].append((timed.wall, timed))
            task_counts = tasks.take()
            assert [r.name for r in result.leaderboard] == [r.name for r in local.leaderboard]
            assert result.best == local.best
    best = {side: min(results, key=lambda r: r[0])[1] for side, results in runs.items()}
    return {
        "rows": ROWS,
        "models": MODELS,
        "folds": FOLDS,
        "local_joblib_seconds": round(best["local_joblib"].wall, 2),
        "local_cluster_seconds": round(best["local_cluster"].wall, 2),
        "overhead_ratio": round(best["local_cluster"].wall / best["local_joblib"].wall, 3),
        "runs_seconds": {side: [round(w, 2) for w, _ in r] for side, r in runs.items()},
        "stages_seconds_of_best_run": {side: t.stages() for side, t in best.items()},
        "cluster_tasks_per_run": task_counts,
        "warm_up_seconds": {side: round(s, 2) for side, s in warm.items()},
        "what_the_ratio_counts": (
            "each side's whole train() call on a warm pool: preparation, connecting to the "
            "scheduler, the version check, the scatter of the table and the race's samples, "
            "every cross-validation task and the refit; best of REPEATS alternating runs"
        ),
        "excluded": (
            "starting the LocalCluster (its worker processes import this script's modules "
            "when they start) and warming both sides (separate line: imports in every worker "
            f"and one training on {WARM_ROWS} rows, which for local joblib also starts its "
            "two processes)"
        ),
        "same_leaderboard_order_and_winner": True,
        "scaling_model": scaling_model(best["local_cluster"]),
    }


def scaling_model(timings: Timings) -> dict[str, Any]:
    """Predicted wall time for more workers, from one cluster run's measured times."""
    # Each call runs FOLDS tasks on 2 workers: ceil(FOLDS / 2) rounds of one task each.
    task_seconds = [wall / math.ceil(FOLDS / 2) for wall in timings.calls]
    serial = timings.wall - sum(timings.calls) - timings.refit

    def predicted(workers: int) -> float:
        # Candidates are compared one after another, so at most FOLDS tasks run at once.
        rounds = math.ceil(FOLDS / min(workers, FOLDS))
        return serial + timings.refit + sum(t * rounds for t in task_seconds)

    return {
        "cv_calls": len(timings.calls),
        "mean_task_seconds": round(float(np.mean(task_seconds)), 3),
        "scatter_and_setup_seconds": round(timings.setup, 3),
        "serial_refit_seconds": round(timings.refit, 3),
        "other_serial_seconds": round(serial - timings.setup, 3),
        "predicted_seconds": {w: round(predicted(w), 2) for w in (2, 8, 32)},
        "limits": (
            "candidates are cross-validated one after another, so no more than FOLDS "
            "tasks run at once: 8 and 32 workers predict the same time; past that the "
            "serial refit of the winner, the scatter of the table and preparation remain"
        ),
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
    parts = os.environ.get("PARTS", "training,scoring").split(",")
    # A run of one part keeps the other's last figures.
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if "training" in parts:
        results["training"] = training()
        print(json.dumps(results["training"], indent=2))
    if "scoring" in parts:
        with tempfile.TemporaryDirectory() as scratch:
            results["sharded_scoring"] = scoring(Path(scratch))
        print(json.dumps(results["sharded_scoring"], indent=2))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
