"""`tabship deploy gke|k8s` against recording stand-ins for gcloud, kubectl and the container builder.

No cluster or GCP project is reachable here. The stand-ins are small programs put first on
PATH: each records its arguments, answers `describe` for what exists in a state folder, makes
it exist on `create`, and fails on purpose when told to. The image build itself is real up to
the builder call (context, wheelhouse); the builder is a stand-in too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tabship.workflow import TrainedModel

from ..servers import TABSHIP

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IP = "203.0.113.10"
DIGEST = "sha256:" + "cd" * 32

STANDIN = """#!{python}
import json, os, sys, pathlib
tool = pathlib.Path(sys.argv[0]).name
args = sys.argv[1:]
line = " ".join([tool, *args])
state = pathlib.Path(os.environ["STANDIN_STATE"])
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\\n")
fail = os.environ.get("STANDIN_FAIL")
if fail and fail in line:
    sys.stderr.write("ERROR: (" + tool + ") the stand-in was told to fail here\\n")
    sys.exit(1)
def key(words):
    return (tool + "-" + "-".join(w for w in words if not w.startswith("-"))[:150]).replace("/", "_")
if tool == "gcloud" and "describe" in args:
    name = key([a for a in args if a != "describe"])
    sys.exit(0 if (state / name).exists() or os.environ.get("STANDIN_ALL_EXIST") else 1)
if tool == "gcloud" and ("create" in args or "create-auto" in args):
    kind = [a for a in args if a not in ("create", "create-auto")]
    kind = [a for a in kind if a != "--num-nodes" and not a.isdigit() and a != "--repository-format" and a != "docker"]
    (state / key(kind)).touch()
if tool in ("podman", "docker") and args[:1] == ["push"]:
    (state / key(["artifacts", "docker", "images", args[1], "--project", os.environ["STANDIN_PROJECT"]])).touch()
if tool in ("podman", "docker") and args[:2] == ["image", "inspect"]:
    print("{digest}")
if tool == "kubectl" and "jsonpath={{.status.loadBalancer.ingress[0].ip}}" in args:
    print("{ip}", end="")
"""


@pytest.fixture
def standins(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "kubectl", "podman", "docker"):
        path = bin_dir / tool
        path.write_text(STANDIN.format(python=sys.executable, digest=DIGEST, ip=IP))
        path.chmod(0o755)
    (tmp_path / "state").mkdir()
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STANDIN_LOG": str(tmp_path / "calls.jsonl"),
        "STANDIN_STATE": str(tmp_path / "state"),
        "STANDIN_PROJECT": "demo-project",
        "TABSHIP_CACHE_DIR": str(REPO / ".pytest_cache" / "tabship-cache"),
    }


def deploy(model: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        TABSHIP,
        "deploy",
        "gke",
        str(model),
        "--project",
        "demo-project",
        "--region",
        "europe-west1",
        "--builder",
        "podman",
        *extra,
    ]
    return subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **env}, timeout=900
    )


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["STANDIN_LOG"])
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [" ".join(json.loads(line)) for line in lines]


def test_fresh_project_runs_every_step_in_order(
    insurance_model: TrainedModel, standins: dict[str, str], tmp_path: Path
) -> None:
    model = insurance_model.artifact.directory
    image = f"europe-west1-docker.pkg.dev/demo-project/tabship/tabship-charges:{insurance_model.artifact.sha256[:12]}"
    where = "--location europe-west1 --project demo-project"
    result = deploy(model, standins, "-o", str(tmp_path / "k8s"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"deployed: http://{IP}/")
    recorded = calls(standins)
    builds = [c for c in recorded if c.startswith("podman build")]
    assert len(builds) == 1 and builds[0].startswith(f"podman build --tag {image} --format docker ")
    sequence = [c for c in recorded if not c.startswith("podman build")]
    assert sequence == [
        "gcloud services enable artifactregistry.googleapis.com container.googleapis.com --project demo-project",
        f"gcloud artifacts repositories describe tabship {where}",
        f"gcloud artifacts repositories create tabship --repository-format docker {where}",
        "gcloud auth configure-docker europe-west1-docker.pkg.dev --quiet",
        f"gcloud artifacts docker images describe {image} --project demo-project",
        f"gcloud artifacts docker images describe {image} --project demo-project",
        f"podman push {image}",
        f"podman image inspect --format {{{{.Digest}}}} {image}",
        f"gcloud container clusters describe tabship {where}",
        f"gcloud container clusters create-auto tabship {where}",
        f"gcloud container clusters get-credentials tabship {where}",
        f"kubectl apply --kustomize {tmp_path / 'k8s'}",
        "kubectl rollout status deployment/tabship-charges --timeout 600s",
        "kubectl get service tabship-charges --output jsonpath={.status.loadBalancer.ingress[0].ip}",
    ]
    deployment = (tmp_path / "k8s" / "deployment.yaml").read_text()
    assert (
        f"image: europe-west1-docker.pkg.dev/demo-project/tabship/tabship-charges@{DIGEST}"
        in deployment
    )


def test_rerun_skips_what_exists(insurance_model: TrainedModel, standins: dict[str, str]) -> None:
    env = {**standins, "STANDIN_ALL_EXIST": "1"}
    result = deploy(insurance_model.artifact.directory, env)
    assert result.returncode == 0, result.stderr
    made = calls(env)
    assert not any(" create" in c or c.startswith(("podman build", "podman push")) for c in made), (
        made
    )
    assert result.stdout.count("exists, skipped") == 4


def test_failure_midway_stops_and_says_which_step(
    insurance_model: TrainedModel, standins: dict[str, str]
) -> None:
    env = {**standins, "STANDIN_ALL_EXIST": "1", "STANDIN_FAIL": "clusters get-credentials"}
    result = deploy(insurance_model.artifact.directory, env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "step 8/12 (get cluster credentials for kubectl) failed" in result.stderr
    assert (
        "the stand-in was told to fail here" in result.stderr
        and "run the same command again" in result.stderr
    )
    assert not any(c.startswith("kubectl") for c in calls(env))


def test_standard_cluster_and_dry_run(
    insurance_model: TrainedModel, standins: dict[str, str], tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**standins, "TMPDIR": str(scratch)}
    result = deploy(insurance_model.artifact.directory, env, "--nodes", "2", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert calls(standins) == []  # nothing ran
    assert list(scratch.iterdir()) == []  # nor was anything made (an empty folder, each run)
    assert (
        "gcloud container clusters create tabship --num-nodes 2 --location europe-west1 --project demo-project"
        in result.stdout
    )
    assert "skip if this succeeds: gcloud container clusters describe tabship" in result.stdout
    assert (
        "[12/12] wait for the external IP" in result.stdout
        and "kubectl apply --kustomize" in result.stdout
    )


def test_deploy_k8s_with_a_context(
    insurance_model: TrainedModel, standins: dict[str, str], tmp_path: Path
) -> None:
    args = [
        TABSHIP,
        "deploy",
        "k8s",
        str(insurance_model.artifact.directory),
        "--image",
        "registry.example/team/charges:v1",
        "--context",
        "prod",
        "-o",
        str(tmp_path / "k8s"),
    ]
    result = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **standins}, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert calls(standins) == [
        f"kubectl --context prod apply --kustomize {tmp_path / 'k8s'}",
        "kubectl --context prod rollout status deployment/tabship-charges --timeout 600s",
        "kubectl --context prod get service tabship-charges --output jsonpath={.status.loadBalancer.ingress[0].ip}",
    ]
    assert f"deployed: http://{IP}/" in result.stdout
