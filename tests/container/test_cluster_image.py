"""A Dask worker from an image built `--with cluster`, started with the DaskCluster's own
worker command under the pod's restrictions, trains for a client here: same results as local.

Skipped (with the reason) only where podman or the local base image is missing; `make test`
installs both through scripts/setup-podman.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tabship.deploy.dask_cluster import DaskClusterOptions, render_dask_cluster
from tabship.deploy.manifest_options import ManifestOptions
from tabship.train import TrainOptions, train
from tabship.workflow import TrainedModel

from ..conftest import make_tiny_table
from ..servers import TABSHIP

pytestmark = [pytest.mark.slow, pytest.mark.container]

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("TABSHIP_TEST_BASE_IMAGE", "localhost/debian-python:bookworm")


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=600
    )


@pytest.fixture(scope="module")
def worker_image(
    tiny_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed; `make test` installs it (scripts/setup-podman.sh)")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.skip(f"base image {BASE_IMAGE} is missing; run scripts/setup-podman.sh")
    tag = f"localhost/tabship-workers-{uuid.uuid4().hex[:8]}:test"
    built = subprocess.run(
        [
            TABSHIP, "build", str(tiny_model.artifact.directory), "-t", tag,
            "--with", "cluster", "--builder", "podman", "--base-image", BASE_IMAGE,
            "--wheelhouse", str(REPO / ".pytest_cache" / "tabship-cache" / "wheels"),
            "--context-dir", str(tmp_path_factory.mktemp("ctx") / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)
        podman(
            "image", "prune", "--force", "--filter", "label=io.tabship.stage=builder", check=False
        )


# The image's Python is Debian's 3.11 (another patch release than here): distributed warns
# when the test's own client connects; tabship's check accepts it, as it should.
@pytest.mark.filterwarnings("ignore::distributed.versions.VersionMismatchWarning")
def test_worker_image_trains_like_this_machine(worker_image: str, tiny_model: TrainedModel) -> None:
    from distributed import LocalCluster

    cluster = next(
        o
        for o in render_dask_cluster(
            tiny_model.artifact, ManifestOptions(image=worker_image), DaskClusterOptions()
        )
        if o["kind"] == "DaskCluster"
    )
    command = cluster["spec"]["worker"]["spec"]["containers"][0]["command"]
    frame = make_tiny_table(rows=600, seed=4)
    options = TrainOptions(target="charges", folds=3, models=["ridge", "decision_tree"])
    local = train(frame, options)
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as scheduler:
        name = f"tabship-worker-{uuid.uuid4().hex[:8]}"
        podman(
            "run", "--detach", "--name", name, "--network", "host", "--read-only",
            "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", "10001:10001", "--health-cmd", "none",
            # What the operator sets in every worker pod.
            "--env", f"DASK_SCHEDULER_ADDRESS={scheduler.scheduler_address}",
            "--env", "DASK_WORKER_NAME=worker-0",
            worker_image,
            *[word.replace("$(DASK_WORKER_NAME)", "worker-0") for word in command],
        )  # fmt: skip
        try:
            client: Any = scheduler.get_client()
            try:
                client.wait_for_workers(1, timeout=120)
            except TimeoutError:
                raise AssertionError(podman("logs", name, check=False).stderr) from None
            remote = train(
                frame, TrainOptions(**{**options.__dict__, "cluster": scheduler.scheduler_address})
            )
        finally:
            podman("rm", "--force", name, check=False)
    assert [(r.name, r.mean) for r in remote.leaderboard] == [
        (r.name, r.mean) for r in local.leaderboard
    ]
    assert remote.best == local.best
