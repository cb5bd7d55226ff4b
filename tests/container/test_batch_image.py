"""The batch Job's own command in an image built `--with batch`, run hardened with podman.

Skipped (with the reason) only where podman or the local base image is missing; `make test`
installs both through scripts/setup-podman.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tabship.deploy.batch_job import BatchJobOptions, render_batch_job
from tabship.deploy.manifest_options import ManifestOptions
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


def test_job_command_scores_its_shard_in_the_batch_image(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed; `make test` installs it (scripts/setup-podman.sh)")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.skip(f"base image {BASE_IMAGE} is missing; run scripts/setup-podman.sh")
    tag = f"localhost/tabship-batch-{uuid.uuid4().hex[:8]}:test"
    built = subprocess.run(
        [
            TABSHIP,
            "build",
            str(tiny_model.artifact.directory),
            "-t",
            tag,
            "--with",
            "batch",
            "--builder",
            "podman",
            "--base-image",
            BASE_IMAGE,
            "--wheelhouse",
            str(REPO / ".pytest_cache" / "tabship-cache" / "wheels"),
            "--context-dir",
            str(tmp_path / "ctx"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        data, out = tmp_path / "data", tmp_path / "out"
        data.mkdir()
        out.mkdir()
        out.chmod(0o777)  # the container's user 10001 writes here
        for number in range(4):
            make_tiny_table(rows=50, seed=number).drop(columns="charges").to_parquet(
                data / f"in-{number}.parquet"
            )
        batch = BatchJobOptions(source="/data", output="/out", shards=2)
        job = next(
            o
            for o in render_batch_job(tiny_model.artifact, ManifestOptions(image=tag), batch)
            if o["kind"] == "Job"
        )
        command = job["spec"]["template"]["spec"]["containers"][0]["command"]
        ran = podman(
            "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", "10001:10001", "--health-cmd", "none",
            "--env", "JOB_COMPLETION_INDEX=1",
            "--volume", f"{data}:/data:ro", "--volume", f"{out}:/out",
            tag, *command,
            check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "shard 1/2: predicted 100 rows into /out/part-00001-of-00002.parquet" in ran.stdout
        scored = pd.read_parquet(out / "part-00001-of-00002.parquet")
        assert len(scored) == 100 and scored["predicted_charges"].notna().all()
        assert sorted(p.name for p in out.iterdir()) == [
            "part-00001-of-00002.parquet",
            "part-00001-of-00002.summary.json",
        ]
    finally:
        podman("rmi", "--force", tag, check=False)
        podman(
            "image", "prune", "--force", "--filter", "label=io.tabship.stage=builder", check=False
        )
