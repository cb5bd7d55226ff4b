"""Build the insurance image with podman and run it hardened, for real.

Skipped (with the reason) only where podman or the local base image is missing; `make test`
installs both through scripts/setup-podman.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tabship.predictor import Predictor
from tabship.workflow import TrainedModel

from ..servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.container]

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("TABSHIP_TEST_BASE_IMAGE", "localhost/debian-python:bookworm")
TABSHIP = str(Path(sys.executable).with_name("tabship"))
PATIENT = {
    "age": 47,
    "sex": "female",
    "bmi": 33.2,
    "children": 3,
    "smoker": "yes",
    "region": "southwest",
}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=600
    )


@pytest.fixture(scope="module")
def image(insurance_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed; `make test` installs it (scripts/setup-podman.sh)")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.skip(f"base image {BASE_IMAGE} is missing; run scripts/setup-podman.sh")
    tag = f"localhost/tabship-e2e-{uuid.uuid4().hex[:8]}:test"
    wheelhouse = REPO / ".pytest_cache" / "tabship-cache" / "wheels"
    started = time.monotonic()
    built = subprocess.run(
        [
            TABSHIP,
            "build",
            str(insurance_model.artifact.directory),
            "-t",
            tag,
            "--engine",
            "podman",
            "--base-image",
            BASE_IMAGE,
            "--wheelhouse",
            str(wheelhouse),
            "--context-dir",
            str(tmp_path_factory.mktemp("ctx") / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    print(f"\nbuild: {time.monotonic() - started:.1f} s")
    try:
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)
        podman(
            "image", "prune", "--force", "--filter", "label=io.tabship.stage=builder", check=False
        )


def test_image_metadata(image: str, insurance_model: TrainedModel) -> None:
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    config = info["Config"]
    user = config["User"].split(":")[0]
    assert user.isdigit() and int(user) >= 10000
    assert "/healthz" in " ".join(info["Healthcheck"]["Test"])
    assert config["Labels"]["io.tabship.model.sha256"] == insurance_model.artifact.sha256
    assert config["Cmd"] == ["/opt/venv/bin/python", "-m", "tabship.serve", "/opt/app/model"]
    listing = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--health-cmd",
        "none",
        image,
        "/opt/venv/bin/python",
        "-c",
        "import importlib.util as u, shutil; print([m for m in ('sklearn', 'scipy', 'pandas', 'pip', 'skops') if u.find_spec(m)], shutil.which('gcc'), shutil.which('cc'))",
    )
    assert listing.stdout.strip() == "[] None None"


def test_runs_hardened_answers_like_the_local_predictor_and_stops_cleanly(
    image: str, insurance_model: TrainedModel
) -> None:
    port = free_port()
    name = f"tabship-e2e-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        "10001:10001",
        "--health-cmd",
        "none",
        "--env",
        f"TABSHIP_PORT={port}",
        image,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        ready_after = None
        while time.monotonic() - started < 60:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    ready_after = time.monotonic() - started
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert ready_after is not None, podman("logs", name, check=False).stdout
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        answer = httpx.post(url + "/predict_api", json=PATIENT)
        expected = Predictor.load(insurance_model.artifact.directory).predict([PATIENT]).values[0]
        assert answer.status_code == 200 and answer.json() == pytest.approx(expected, rel=1e-9)
        assert (
            httpx.post(url + "/predict_api", json={**PATIENT, "smoker": "male"}).status_code == 422
        )
        stop_started = time.monotonic()
        podman("stop", "--time", "10", name)
        stopped_after = time.monotonic() - stop_started
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0 and stopped_after < 10
        logs = podman("logs", name).stdout.splitlines()
        assert any('"route": "/predict_api", "status": 200' in line for line in logs)
        print(
            f"\nready after {ready_after:.2f} s; stop took {stopped_after:.2f} s; exit {state['ExitCode']}"
        )
    finally:
        podman("rm", "--force", name, check=False)
