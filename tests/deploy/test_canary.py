"""Canary rollouts: the rendered objects, the policy, and the plans against a recording kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tabship.deploy.canary import CanaryOptions, canary_options, render_canary
from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import render_manifests
from tabship.deploy.policy import check_objects, load_folder
from tabship.errors import ConfigError
from tabship.workflow import TrainedModel

from ..servers import TABSHIP

pytestmark = pytest.mark.slow

VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))
IMAGE = "registry.example/team/charges:v2"


def kinds(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def test_the_canary_runs_beside_the_stable_side(tiny_model: TrainedModel) -> None:
    artifact = tiny_model.artifact
    options = ManifestOptions(image=IMAGE)
    stable = kinds(render_manifests(artifact, options))
    canary = render_canary(artifact, options, CanaryOptions(10, "example-gateway"))
    by_kind = kinds(canary)
    version = artifact.sha256[:12]
    deployment = by_kind["Deployment"][0]
    assert deployment["metadata"]["name"] == f"tabship-charges-{version}"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == version
    assert deployment["metadata"]["labels"]["tabship.io/canary-of"] == "tabship-charges"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/name"] == "tabship-charges"
    # Neither side's selector picks the other's pods.
    stable_selector = stable["Deployment"][0]["spec"]["selector"]["matchLabels"]
    stable_pods = stable["Deployment"][0]["spec"]["template"]["metadata"]["labels"]
    assert any(pod_labels.get(k) != v for k, v in stable_selector.items())
    canary_selector = deployment["spec"]["selector"]["matchLabels"]
    assert any(stable_pods.get(k) != v for k, v in canary_selector.items())
    assert by_kind["Service"][0]["spec"]["type"] == "ClusterIP"
    assert by_kind["Service"][0]["spec"]["selector"] == canary_selector
    route = by_kind["HTTPRoute"][0]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "tabship-charges", "port": 80, "weight": 90},
        {"name": f"tabship-charges-{version}", "port": 80, "weight": 10},
    ]
    assert by_kind["Gateway"][0]["spec"]["gatewayClassName"] == "example-gateway"
    assert "HealthCheckPolicy" not in by_kind
    assert check_objects(canary) == []
    named = render_canary(
        artifact, ManifestOptions(image=IMAGE, version="v2"), CanaryOptions(25, "gc")
    )
    assert kinds(named)["Deployment"][0]["metadata"]["name"] == "tabship-charges-v2"


def test_gke_adds_health_checks_on_readyz(tiny_model: TrainedModel) -> None:
    options = canary_options(5, None, gke=True)
    assert options.gateway_class == "gke-l7-global-external-managed"
    objects = render_canary(tiny_model.artifact, ManifestOptions(image=IMAGE), options)
    checks = kinds(objects)["HealthCheckPolicy"]
    assert {c["spec"]["targetRef"]["name"] for c in checks} == {
        "tabship-charges",
        f"tabship-charges-{tiny_model.artifact.sha256[:12]}",
    }
    assert {c["spec"]["default"]["config"]["httpHealthCheck"]["requestPath"] for c in checks} == {
        "/readyz"
    }
    assert check_objects(objects) == []


@pytest.mark.parametrize(
    ("percent", "gateway", "gke", "said"),
    [
        (0, "gc", False, "1 to 99 percent"),
        (100, "gc", False, "1 to 99 percent"),
        (10, None, False, "--canary needs --gateway-class"),
    ],
)
def test_bad_canary_options_are_refused(
    percent: int, gateway: str | None, gke: bool, said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        canary_options(percent, gateway, gke)


def test_bad_versions_are_refused(tiny_model: TrainedModel) -> None:
    for version in ("V2", "-v2", "a" * 21, "v2\n"):
        with pytest.raises(ConfigError, match="--version"):
            render_canary(
                tiny_model.artifact,
                ManifestOptions(image=IMAGE, version=version),
                CanaryOptions(10, "gc"),
            )


def test_the_canary_folder_validates_and_renders(tiny_model: TrainedModel, tmp_path: Path) -> None:
    out = tmp_path / "canary"
    done = subprocess.run(
        [
            TABSHIP,
            "manifests",
            str(tiny_model.artifact.directory),
            "--image",
            IMAGE,
            "--canary",
            "20",
            "--gateway-class",
            "example-gateway",
            "--version",
            "v2",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    objects = load_folder(out)
    assert check_objects(objects) == []
    core = [
        str(p)
        for p in out.iterdir()
        if p.name.split("-")[0] not in ("gateway", "httproute", "kustomization.yaml")
    ]
    validated = subprocess.run(
        [VALIDATE, "--strict", "--kubernetes-version", "1.30.0", *core],
        capture_output=True,
        text=True,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is missing; `make test` installs it")
    rendered = subprocess.run(["kubectl", "kustomize", str(out)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: HTTPRoute" in rendered.stdout and "weight: 20" in rendered.stdout


KUBECTL = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["get", "deployments"]:
    items = json.loads(os.environ.get("STANDIN_CANARIES", "[]"))
    print(json.dumps({{"items": items}}))
"""


@pytest.fixture
def kubectl(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(KUBECTL.format(python=sys.executable))
    (bin_dir / "kubectl").chmod(0o755)
    canary = {
        "metadata": {
            "name": "charges-v2",
            "labels": {"app.kubernetes.io/version": "v2"},
            "annotations": {"tabship.io/model-sha256": "ab" * 32},
        },
        "spec": {"template": {"spec": {"containers": [{"name": "predictor", "image": IMAGE}]}}},
    }
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STANDIN_LOG": str(tmp_path / "calls.jsonl"),
        "STANDIN_CANARIES": json.dumps([canary]),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TABSHIP, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def calls(env: dict[str, str]) -> list[list[str]]:
    return [json.loads(line) for line in Path(env["STANDIN_LOG"]).read_text().splitlines()]


def test_deploy_k8s_canary_applies_and_records(
    tiny_model: TrainedModel, kubectl: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    model = str(tiny_model.artifact.directory)
    done = run(
        kubectl,
        *("deploy", "k8s", model, "--image", IMAGE, "--name", "charges", "--version", "v2"),
        *("--canary", "10", "--gateway-class", "example-gateway", "-o", str(out)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    made = calls(kubectl)
    canary = [c for c in made if "charges-v2" in " ".join(c) or "charges-rollouts" in c]
    assert canary[0] == ["get", "configmap", "charges-rollouts"]  # exists: create is skipped
    assert ["apply", "--kustomize", str(out)] in made
    assert ["rollout", "status", "deployment/charges-v2", "--timeout", "600s"] in made
    record = made[-1]
    assert record[:5] == ["patch", "configmap", "charges-rollouts", "--type", "merge"]
    entry = json.loads(record[-1])["data"]
    ((key, value),) = entry.items()
    assert key.endswith("Z-canary")
    assert json.loads(value)["weights"] == {"charges": 90, "charges-v2": 10}
    assert (out / "httproute-charges.yaml").is_file()


def test_promote_moves_the_stable_side_then_removes_the_canary(kubectl: dict[str, str]) -> None:
    done = run(kubectl, "rollout", "promote", "charges")
    assert done.returncode == 0, done.stdout + done.stderr
    made = calls(kubectl)
    assert made[0] == [
        "get", "deployments", "--selector", "tabship.io/canary-of=charges", "--output", "json"
    ]  # fmt: skip
    weights = [
        [(b["name"], b["weight"]) for b in json.loads(c[-1])["spec"]["rules"][0]["backendRefs"]]
        for c in made
        if c[:2] == ["patch", "httproute"]
    ]
    assert weights == [[("charges", 0), ("charges-v2", 100)], [("charges", 100)]]
    stable = next(c for c in made if c[:3] == ["patch", "deployment", "charges"])
    template = json.loads(stable[-1])["spec"]["template"]
    assert template["spec"]["containers"] == [{"name": "predictor", "image": IMAGE}]
    assert template["metadata"]["labels"]["app.kubernetes.io/version"] == "v2"
    order = [c[0] + " " + c[1] for c in made]
    assert order.index("rollout status") < order.index("delete " + made[-2][1])
    assert made[-2][-2:] == ["--selector", "tabship.io/canary-of=charges"]
    assert json.loads(json.loads(made[-1][-1])["data"].popitem()[1])["action"] == "promote"


def test_rollback_sends_everything_back_and_removes_the_canary(kubectl: dict[str, str]) -> None:
    done = run(kubectl, "rollout", "rollback", "charges", "--namespace", "ml")
    assert done.returncode == 0, done.stdout + done.stderr
    made = calls(kubectl)
    assert [c[:2] for c in made] == [
        ["get", "deployments"],
        ["patch", "httproute"],
        ["delete", "deployment,service,horizontalpodautoscaler,poddisruptionbudget,"
         "networkpolicy,serviceaccount"],
        ["patch", "configmap"],
    ]  # fmt: skip
    assert all("--namespace" in c and "ml" in c for c in made)
    assert not any(c[:2] == ["patch", "deployment"] for c in made)


def test_no_canary_is_a_clear_error(kubectl: dict[str, str]) -> None:
    done = run({**kubectl, "STANDIN_CANARIES": "[]"}, "rollout", "promote", "charges")
    assert done.returncode == 1
    assert "0 Deployments are labelled tabship.io/canary-of=charges" in done.stderr
    assert len(calls(kubectl)) == 1  # nothing changed


def test_gke_canary_dry_run_prints_every_command_and_manifest(tiny_model: TrainedModel) -> None:
    done = run(
        {},
        *("deploy", "gke", str(tiny_model.artifact.directory), "--project", "demo-project"),
        *("--region", "europe-west1", "--canary", "10", "--version", "v2", "--dry-run"),
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "gcloud container clusters update tabship --gateway-api=standard" in text
    assert "europe-west1-docker.pkg.dev/demo-project/tabship/tabship-charges:v2" in text
    assert "gatewayClassName: gke-l7-global-external-managed" in text
    assert "kind: HealthCheckPolicy" in text and "requestPath: /readyz" in text
    assert "kubectl rollout status deployment/tabship-charges-v2" in text
    assert "kubectl patch configmap tabship-charges-rollouts --type merge" in text


def test_a_long_targets_default_name_leaves_room_for_the_canarys_version(
    tiny_model: TrainedModel,
) -> None:
    from types import SimpleNamespace

    from tabship.deploy.manifest_options import DEFAULT_NAME_CHARS, app_name

    long_one = SimpleNamespace(card=SimpleNamespace(target="T" * 300))
    other = SimpleNamespace(card=SimpleNamespace(target="T" * 299 + "U"))
    name = app_name(long_one, None)  # type: ignore[arg-type]
    assert len(name) == DEFAULT_NAME_CHARS and name.startswith("tabship-tttt")
    assert name != app_name(other, None)  # type: ignore[arg-type]  # a hash of the whole
    assert app_name(long_one, "mine") == "mine"  # type: ignore[arg-type]
    assert app_name(tiny_model.artifact, None) == "tabship-charges"


def test_a_long_targets_canary_renders_and_passes_the_policy(tmp_path: Path) -> None:
    """The canary's APP-VERSION fits Kubernetes' 63 characters (it was refused)."""
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    from ..conftest import make_tiny_table

    target = "yearly_medical_charges_billed_to_the_patient_" * 4
    table = make_tiny_table(rows=60).rename(columns={"charges": target})
    table.to_csv(tmp_path / "long.csv", index=False)
    options = TrainOptions(target=target, folds=2, models=["ridge"])
    artifact = train_model(str(tmp_path / "long.csv"), options, tmp_path / "model").artifact
    canary = render_canary(artifact, ManifestOptions(image=IMAGE), CanaryOptions(10, "gc"))
    assert check_objects(canary) == []
    for obj in canary:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        labels = obj["metadata"].get("labels", {}).values()
        assert all(len(value) <= 63 for value in labels), labels
    deployment = kinds(canary)["Deployment"][0]
    assert deployment["metadata"]["name"].endswith("-" + artifact.sha256[:12])
