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
import numpy as np
import pytest

from tabship.predictor import Predictor
from tabship.workflow import TrainedModel

from ..servers import TABSHIP, free_port

pytestmark = [pytest.mark.slow, pytest.mark.container]

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("TABSHIP_TEST_BASE_IMAGE", "localhost/debian-python:bookworm")
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
            "--builder",
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
    started = time.monotonic()
    name = run_container(image, port)
    ready_after = time.monotonic() - started
    url = f"http://127.0.0.1:{port}"
    try:
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        answer = httpx.post(url + "/predict_api", json=PATIENT)
        expected = Predictor.load(insurance_model.artifact.directory).predict([PATIENT]).values[0]
        assert answer.status_code == 200 and answer.json() == pytest.approx(expected, rel=1e-9)
        assert httpx.post(url + "/predict_api", json={**PATIENT, "age": "old"}).status_code == 422
        # A category not seen in training is predicted as unknown, not refused.
        assert (
            httpx.post(url + "/predict_api", json={**PATIENT, "region": "mars"}).status_code == 200
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


def run_container(image: str, port: int, *extra: str, env: dict[str, str] | None = None) -> str:
    name = f"tabship-e2e-{uuid.uuid4().hex[:8]}"
    env_args = [
        a
        for k, v in {"TABSHIP_PORT": str(port), **(env or {})}.items()
        for a in ("--env", f"{k}={v}")
    ]
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
        *env_args,
        *extra,
        image,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return name
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(podman("logs", name, check=False).stdout)


def test_container_drains_two_hundred_requests_on_podman_stop(image: str) -> None:
    from ..integration.test_operations import finish_request, open_request, wait_for_gauge

    port = free_port()
    name = run_container(image, port, env={"TABSHIP_MAX_CONCURRENCY": "256"})
    url = f"http://127.0.0.1:{port}"
    try:
        held = [open_request(port) for _ in range(200)]
        wait_for_gauge(url, "tabship_requests_open", 200)
        started = time.monotonic()
        stopper = subprocess.Popen(
            ["podman", "stop", "--time", "30", name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while httpx.get(url + "/readyz", timeout=1).status_code != 503:
            assert time.monotonic() < deadline, "readiness never turned 503"
            time.sleep(0.02)
        results = [finish_request(conn) for conn in held]
        assert [status for status, _ in results] == [200] * 200
        assert stopper.wait(timeout=40) == 0
        stopped_after = time.monotonic() - started
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        print(
            f"\ncontainer drained 200 requests; stopped {stopped_after:.2f} s after podman stop; exit {state['ExitCode']}"
        )
        assert state["ExitCode"] == 0 and stopped_after < 30
        with pytest.raises(httpx.ConnectError):  # after the drain, new connections are refused
            httpx.get(url + "/readyz", timeout=1)
    finally:
        podman("rm", "--force", name, check=False)


def test_memory_stays_bounded_under_the_biggest_batches(image: str) -> None:
    port = free_port()
    name = run_container(image, port, "--memory", "512m", "--cpus", "1")
    try:
        load = subprocess.run(
            [
                sys.executable,
                str(REPO / "tests" / "soak" / "load.py"),
                f"http://127.0.0.1:{port}",
                "30",
                "4",
                "1000",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        counts = json.loads(load.stdout)
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        peak = (
            int(
                podman(
                    "exec", name, "cat", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"
                ).stdout
            )
            / 2**20
        )
        print(
            f"\n512m/1 CPU container: {counts['ok']} rounds of 1,000-row batches, {counts['errors']} errors; peak {peak:.0f} MiB; OOM killed: {state['OOMKilled']}"
        )
        assert counts["errors"] == 0 and counts["ok"] > 0
        assert state["Running"] and not state["OOMKilled"]
        assert peak < 400
    finally:
        podman("rm", "--force", name, check=False)


def test_hostile_labels_read_back_exactly_from_a_real_build(tmp_path: Path) -> None:
    """The quoted LABEL instruction, built by podman on an empty image, holds the exact strings."""
    from tabship.container import ImageOptions, render_dockerfile

    from ..test_container import HOSTILE_TARGET, final_stage, train_hostile

    if shutil.which("podman") is None:
        pytest.skip("podman is not installed; `make test` installs it (scripts/setup-podman.sh)")
    label = 'Cost "$1" \\ ${HOME} RUN id'
    model = train_hostile(tmp_path / "train", HOSTILE_TARGET, target_label=label)
    rendered = final_stage(render_dockerfile(model.artifact, ImageOptions(tag="t:1")))
    instruction = rendered[rendered.index("\nLABEL ") + 1 : rendered.index("\nCOPY ")]
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM scratch\n{instruction}\n")
    tag = f"localhost/tabship-labels-{uuid.uuid4().hex[:8]}:test"
    podman("build", "--format", "docker", "--quiet", "--tag", tag, str(context))
    try:
        labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", tag).stdout)
    finally:
        podman("rmi", "--force", tag, check=False)
    assert labels["org.opencontainers.image.title"] == f"tabship model ridge ({HOSTILE_TARGET})"
    assert labels["org.opencontainers.image.description"] == f"predicts {label}"
    assert labels["io.tabship.model.sha256"] == model.artifact.sha256


def test_runs_as_the_kserve_runtime_says_and_speaks_v2(
    image: str, insurance_model: TrainedModel
) -> None:
    """The image with the environment the KServe ServingRuntime gives it: probes, then V2."""
    import tritonclient.http as triton

    from tabship.deploy.kserve import render_kserve
    from tabship.deploy.manifest_options import ManifestOptions

    objects = render_kserve(insurance_model.artifact, ManifestOptions(image=image))
    container = next(o for o in objects if o["kind"] == "ServingRuntime")["spec"]["containers"][0]
    port = free_port()
    env = {item["name"]: item["value"] for item in container["env"]} | {"TABSHIP_PORT": str(port)}
    name = run_container(image, port, env=env)
    try:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200, probe
        client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
        try:
            model = env["TABSHIP_MODEL_NAME"]
            assert client.is_server_ready() and client.is_model_ready(model)
            inputs = []
            for tensor in client.get_model_metadata(model)["inputs"]:
                value = PATIENT[tensor["name"]]
                dtype = {"BYTES": object, "INT64": "int64", "FP64": "float64"}[tensor["datatype"]]
                data = triton.InferInput(tensor["name"], [1], tensor["datatype"])
                data.set_data_from_numpy(np.array([value], dtype=dtype))
                inputs.append(data)
            result = client.infer(model, inputs).as_numpy("predict")
        finally:
            client.close()
        expected = Predictor.load(insurance_model.artifact.directory).predict([PATIENT]).values[0]
        assert result.tolist() == [pytest.approx(expected, rel=1e-9)]
        logs = podman("logs", name).stdout.splitlines()
        assert any('"route": "/v2/models/{name}/infer", "status": 200' in line for line in logs)
    finally:
        podman("rm", "--force", name, check=False)
