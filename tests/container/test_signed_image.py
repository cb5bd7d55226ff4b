"""A signed model in a real container: the image holds the public key and verifies at start."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tabship.workflow import TrainedModel

from ..servers import TABSHIP, free_port
from ..test_signing import key_pair
from .test_image import BASE_IMAGE, REPO, podman, run_container

pytestmark = [pytest.mark.slow, pytest.mark.container]

RECORD = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


@pytest.fixture(scope="module")
def signed_image(
    tiny_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed; `make test` installs it (scripts/setup-podman.sh)")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.skip(f"base image {BASE_IMAGE} is missing; run scripts/setup-podman.sh")
    folder = tmp_path_factory.mktemp("signed-image")
    private, public = key_pair(folder, "trainers")
    _, other = key_pair(folder, "someone-else")
    model = folder / "model"
    shutil.copytree(tiny_model.artifact.directory, model)
    sign = [TABSHIP, "sign", str(model), "--private-key", str(private)]
    assert subprocess.run(sign, capture_output=True, text=True).returncode == 0
    tag = f"localhost/tabship-signed-{uuid.uuid4().hex[:8]}:test"
    built = subprocess.run(
        [
            TABSHIP,
            "build",
            str(model),
            "-t",
            tag,
            "--builder",
            "podman",
            "--base-image",
            BASE_IMAGE,
            "--trust",
            str(public),
            "--wheelhouse",
            str(REPO / ".pytest_cache" / "tabship-cache" / "wheels"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        yield tag, other
    finally:
        podman("rmi", "--force", tag, check=False)
        podman(
            "image", "prune", "--force", "--filter", "label=io.tabship.stage=builder", check=False
        )


def test_the_signed_image_verifies_and_serves(signed_image: tuple[str, Path]) -> None:
    tag, _ = signed_image
    env = podman("image", "inspect", "--format", "{{json .Config.Env}}", tag).stdout
    assert "TABSHIP_TRUST=/opt/app/trust.pem" in env
    port = free_port()
    name = run_container(tag, port)
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/predict_api", json=RECORD, timeout=10)
        assert answer.status_code == 200
        listed = podman("exec", name, "ls", "/opt/app/model").stdout.split()
        assert "model.sig" in listed
    finally:
        podman("rm", "--force", name, check=False)


def test_the_container_refuses_to_start_with_another_key(signed_image: tuple[str, Path]) -> None:
    tag, other = signed_image
    started = time.monotonic()
    done = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--health-cmd",
        "none",
        "--volume",
        f"{other}:/opt/app/other.pem:ro",
        "--env",
        "TABSHIP_TRUST=/opt/app/other.pem",
        tag,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "was made with another key than --trust /opt/app/other.pem" in done.stderr
    assert time.monotonic() - started < 60


def test_keys_from_a_read_only_mount_protect_the_container(
    signed_image: tuple[str, Path], tmp_path: Path
) -> None:
    """What `manifests --api-keys-secret` sets up, in a real container: a read-only keys file."""
    tag, _ = signed_image
    keys = tmp_path / "api-keys"
    keys.write_text("container-key-5d1f\n")
    keys.chmod(0o444)
    port = free_port()
    name = run_container(
        tag,
        port,
        "--volume",
        f"{keys}:/etc/tabship/api-keys/api-keys:ro",
        env={"TABSHIP_API_KEYS_FILE": "/etc/tabship/api-keys/api-keys"},
    )
    url = f"http://127.0.0.1:{port}/predict_api"
    try:
        refused = httpx.post(url, json=RECORD, timeout=10)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        ok = httpx.post(url, json=RECORD, headers={"x-api-key": "container-key-5d1f"}, timeout=10)
        assert ok.status_code == 200
        logs = podman("logs", name, check=False)
        assert "container-key-5d1f" not in logs.stdout + logs.stderr
        assert '"event": "auth_failed"' in logs.stderr
    finally:
        podman("rm", "--force", name, check=False)
