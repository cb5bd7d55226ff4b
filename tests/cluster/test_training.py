"""Training on a real Dask LocalCluster equals training here, and cluster failures are clear."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import cross_validate

import tabship.train
from tabship import cluster
from tabship.cluster import ClusterError
from tabship.errors import ConfigError
from tabship.train import TrainOptions, TrainResult, train
from tabship.tune import tune
from tests.conftest import make_tiny_table

pytestmark = pytest.mark.slow

REGRESSORS = ["ridge", "decision_tree", "gradient_boosting"]
CLASSIFIERS = ["logistic", "decision_tree", "random_forest"]


def _table(rows: int = 2_000) -> pd.DataFrame:
    return make_tiny_table(rows=rows, seed=11)


def _board(result: TrainResult) -> list[tuple[Any, ...]]:
    """The leaderboard without its timings and scores (compared apart, to the last bits)."""
    return [(r.name, r.error, r.params, r.trials, r.rows) for r in result.leaderboard]


def _scores(result: TrainResult) -> list[float]:
    return [row[key] for r in result.leaderboard for row in (r.mean, r.std) for key in sorted(row)]


def _assert_same(local: TrainResult, remote: TrainResult) -> None:
    assert _board(remote) == _board(local)
    # A random forest sums its trees' probabilities in thread order: two local runs already
    # differ in the 16th digit of its log loss. Everything else is equal to the bit.
    assert _scores(remote) == pytest.approx(_scores(local), rel=1e-12, abs=1e-15)
    assert remote.best == local.best
    assert _model_bytes(remote) == _model_bytes(local)


def _model_bytes(result: TrainResult) -> list[tuple[str, bytes]]:
    """Every fitted attribute of the pipeline as bytes, leaf by leaf.

    skops files name objects by id(), and one pickle of the whole shares equal objects by
    reference differently after a trip through a worker; neither is part of the model.
    """
    return list(_leaves(result.pipeline, "pipeline"))


def _leaves(value: Any, path: str) -> Iterator[tuple[str, bytes]]:
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _leaves(value[key], f"{path}[{key!r}]")
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        yield path, type(value).__qualname__.encode()
        yield from _leaves(vars(value), path)
    else:
        yield path, pickle.dumps(value, protocol=5)


def _step_clock(step: float) -> Callable[[], float]:
    """A clock that advances `step` seconds per reading: tuning draws the same trials each run."""
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


@pytest.mark.parametrize(
    ("target", "models"), [("charges", REGRESSORS), ("smoker", CLASSIFIERS)], ids=["reg", "clf"]
)
def test_cluster_training_equals_local(
    dask_cluster: Any, monkeypatch: pytest.MonkeyPatch, target: str, models: list[str]
) -> None:
    frame = _table()
    options = TrainOptions(target=target, folds=3, models=models, tune=True)

    def run(address: str | None) -> TrainResult:
        # Tuning is bounded by time; a clock that ticks per reading makes the trials repeatable.
        monkeypatch.setattr(tabship.train, "tune", functools.partial(tune, clock=_step_clock(6)))
        seen: list[str] = []
        result = train(
            frame,
            TrainOptions(**{**options.__dict__, "cluster": address}),
            progress=lambda label, done, total: seen.append(label),
        )
        assert any(label.startswith("tuning") for label in seen)  # progress still shows
        return result

    local = run(None)
    remote = run(dask_cluster.scheduler_address)
    assert local.tuning is not None and sum(local.tuning.trials.values()) >= 2
    _assert_same(local, remote)


def test_nested_n_jobs_does_not_deadlock(dask_cluster: Any) -> None:
    frame = _table(600)
    x, y = frame[["age", "bmi", "children"]], frame["charges"]
    out: dict[str, Any] = {}

    def work() -> None:
        with cluster.session(dask_cluster.scheduler_address, x, y):
            out["scores"] = cross_validate(
                RandomForestRegressor(n_estimators=8, n_jobs=2, random_state=0), x, y, cv=3
            )

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "nested n_jobs inside a cluster fold deadlocked"
    assert len(out["scores"]["test_score"]) == 3


def test_killed_worker_is_retried(dask_cluster: Any) -> None:
    frame = _table(3_000)
    options = TrainOptions(target="charges", folds=5, models=["random_forest", "ridge"])
    local = train(frame, options)
    client = dask_cluster.get_client() if hasattr(dask_cluster, "get_client") else None
    pids = list(client.run(os.getpid).values()) if client else []
    assert len(pids) == 2

    def kill_one() -> None:
        time.sleep(0.3)  # the random forest's folds are running
        os.kill(pids[0], signal.SIGKILL)  # a worker process this test's cluster started

    killer = threading.Thread(target=kill_one, daemon=True)

    def progress(label: str, done: int, total: int) -> None:
        if done == 0 and killer.ident is None:
            killer.start()

    remote = train(
        frame,
        TrainOptions(**{**options.__dict__, "cluster": dask_cluster.scheduler_address}),
        progress=progress,
    )
    killer.join()
    _assert_same(local, remote)
    # The nanny brings the worker back, so the next test still has two.
    client.wait_for_workers(2, timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_scheduler_is_a_clear_error() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    with (
        pytest.raises(ClusterError, match="cannot reach the Dask scheduler"),
        cluster.session(address, [1], [2], timeout=1),
    ):
        pass


def test_address_without_scheme_is_refused() -> None:
    with (
        pytest.raises(ConfigError, match="tcp://SCHEDULER:8786"),
        cluster.session("scheduler:8786", [1], [2]),
    ):
        pass


def _worker(address: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--no-nanny",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def bare_scheduler() -> Any:
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as bare:
        yield bare


def test_version_skew_is_refused(bare_scheduler: Any, tmp_path: Path) -> None:
    # The worker's environment holds another scikit-learn release than this client.
    info = tmp_path / "scikit_learn-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scikit-learn\nVersion: 0.0.1\n")
    worker = _worker(bare_scheduler.scheduler_address, {"PYTHONPATH": str(tmp_path)})
    try:
        client = bare_scheduler.get_client()
        client.wait_for_workers(1, timeout=60)
        with (
            pytest.raises(ClusterError, match=r"scikit-learn 1\.9\.1 here, 0\.0\.1 on tcp://"),
            cluster.session(bare_scheduler.scheduler_address, [1], [2]),
        ):
            pass
    finally:
        worker.kill()
        worker.wait()


def test_no_worker_left_stops_the_run(bare_scheduler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "WORKERLESS_TIMEOUT", 3.0)
    worker = _worker(bare_scheduler.scheduler_address, {})
    try:
        bare_scheduler.get_client().wait_for_workers(1, timeout=60)
        frame = _table(3_000)

        def progress(label: str, done: int, total: int) -> None:
            if done == 1:
                worker.kill()  # mid-run, the only worker, started by this test

        started = time.monotonic()
        with pytest.raises(ClusterError, match="no worker for 3 s"):
            train(
                frame,
                TrainOptions(
                    target="charges",
                    models=["ridge", "random_forest", "gradient_boosting"],
                    tune=True,
                    cluster=bare_scheduler.scheduler_address,
                ),
                progress=progress,
            )
        assert time.monotonic() - started < 60
    finally:
        worker.kill()
        worker.wait()


def test_cli_trains_on_the_cluster_from_the_variable(
    dask_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tabship.artifact import Artifact
    from tabship.cli import app

    table = tmp_path / "table.csv"
    _table(1_000).to_csv(table, index=False)
    args = ["train", str(table), "-t", "charges", "--folds", "3", "--models", "ridge,decision_tree"]
    monkeypatch.setenv("TABSHIP_DASK_SCHEDULER", dask_cluster.scheduler_address)
    remote = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "remote")])
    assert remote.exit_code == 0, remote.output
    monkeypatch.delenv("TABSHIP_DASK_SCHEDULER")
    local = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    boards = [
        [
            (r["name"], r["mean"])
            for r in Artifact.open(tmp_path / side).card.document["leaderboard"]
        ]
        for side in ("remote", "local")
    ]
    assert boards[0] == boards[1]


def test_cli_names_an_unreachable_scheduler(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tabship.cli import app

    table = tmp_path / "table.csv"
    _table(200).to_csv(table, index=False)
    address = f"tcp://127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(
        app, ["train", str(table), "-t", "charges", "--models", "ridge", "--cluster", address]
    )
    assert result.exit_code == 1
    assert f"error: cannot reach the Dask scheduler at {address}" in result.output
    assert "Traceback" not in result.output


def test_tables_are_scattered_once_not_per_task(
    dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raced table: the whole table once for the run, each smaller rung's sample once."""
    from distributed import Client

    frame = _table(12_000)  # over RACE_MIN_ROWS: a rung of 4,000 rows, then all 12,000
    options = TrainOptions(target="charges", folds=3, models=["ridge", "decision_tree"])
    local = train(frame, options)
    scatter = Client.scatter
    sizes: list[list[int]] = []

    def counted(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append([len(item) for item in data])
        return scatter(self, data, *args, **kwargs)

    monkeypatch.setattr(Client, "scatter", counted)
    remote = train(
        frame, TrainOptions(**{**options.__dict__, "cluster": dask_cluster.scheduler_address})
    )
    _assert_same(local, remote)
    # Two calls in all (5 candidate-rung CV calls, 15 fold tasks, a refit): table, then sample.
    assert sizes == [[12_000, 12_000], [4_000, 4_000]]


def test_each_fold_is_one_task_and_its_pipeline_steps_run_inside_it(dask_cluster: Any) -> None:
    """No task of its own for a column transformer's fit or transform, no two folds in one task."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Finished(SchedulerPlugin):  # type: ignore[misc]
        name = "tabship-test-finished"

        def __init__(self) -> None:
            self.keys: list[str] = []

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
            if finish == "memory" and "batch_of_" in str(key):
                self.keys.append(str(key).rsplit("-", 1)[0])

    finished = Finished()
    scheduler = dask_cluster.scheduler  # in this process: the plugin's list is read directly
    scheduler.add_plugin(finished)
    try:
        train(
            _table(),
            TrainOptions(
                target="charges",
                folds=5,
                # Quick folds first: joblib would have learned to batch them for the slower one.
                models=["linear", "ridge", "lasso", "decision_tree", "hist_gradient_boosting"],
                cluster=dask_cluster.scheduler_address,
            ),
        )
    finally:
        scheduler.remove_plugin(name=finished.name)
    # Five candidates' five folds, then the refit of the winner.
    assert (
        sorted(finished.keys)
        == ["batch_of__fit_1_calls"] + ["batch_of__fit_and_score_1_calls"] * 25
    )


def test_scheduler_gone_mid_run_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    monkeypatch.setattr(cluster, "WORKERLESS_TIMEOUT", 3.0)
    doomed = LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
    )
    closer = threading.Thread(target=doomed.close)  # a cluster this test started

    def progress(label: str, done: int, total: int) -> None:
        if done == 1 and not closer.is_alive():
            closer.start()  # mid-run: the first candidate is scored, the second starts

    started = time.monotonic()
    try:
        with pytest.raises(
            ClusterError,
            match="(lost the scheduler|the scheduler stopped answering|has no worker or stopped answering)",
        ):
            train(
                _table(3_000),
                TrainOptions(
                    target="charges",
                    models=["ridge", "random_forest", "gradient_boosting"],
                    tune=True,
                    cluster=doomed.scheduler_address,
                ),
                progress=progress,
            )
        assert closer.ident is not None
        assert time.monotonic() - started < 60
    finally:
        if closer.ident is not None:
            closer.join()
        doomed.close()
