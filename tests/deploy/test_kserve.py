"""KServe objects: the InferenceService and its runtime, a strict schema check with the kserve
SDK's models, kustomize, and the policy checker's KServe rules (one bad fixture each)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tabship.deploy.kserve import render_kserve
from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import render_manifests
from tabship.deploy.policy import RULES, check_objects, load_folder
from tabship.errors import ConfigError
from tabship.workflow import TrainedModel

from ..servers import TABSHIP

REPO = Path(__file__).resolve().parents[2]
KSERVE_PYTHON = REPO / ".venv-kserve" / "bin" / "python"
SCHEMA_CHECK = REPO / "tests" / "clients" / "kserve_schema.py"
OPTIONS = ManifestOptions(image="registry.example/team/charges:v1")


@pytest.fixture
def objects(tiny_model: TrainedModel) -> list[dict[str, Any]]:
    return render_kserve(tiny_model.artifact, OPTIONS)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def predictor(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objects)["InferenceService"]["spec"]["predictor"]  # type: ignore[no-any-return]


def runtime(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objects)["ServingRuntime"]["spec"]  # type: ignore[no-any-return]


def test_inference_service_speaks_v2_on_the_deployments_pod(
    objects: list[dict[str, Any]], tiny_model: TrainedModel
) -> None:
    assert [obj["kind"] for obj in objects] == [
        "ServiceAccount",
        "ServingRuntime",
        "InferenceService",
    ]
    service = by_kind(objects)["InferenceService"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == (
        "RawDeployment"
    )
    model = predictor(objects)["model"]
    assert model["protocolVersion"] == "v2" and model["runtime"] == "tabship-charges"
    assert runtime(objects)["protocolVersions"] == ["v2"]
    assert runtime(objects)["supportedModelFormats"][0]["name"] == model["modelFormat"]["name"]
    # The same container, security context, probes, resources and grace as the Deployment.
    plain = by_kind(render_manifests(tiny_model.artifact, OPTIONS))["Deployment"]
    pod = plain["spec"]["template"]["spec"]
    served = runtime(objects)["containers"][0]
    for key in ("image", "securityContext", "startupProbe", "readinessProbe", "livenessProbe"):
        assert served[key] == pod["containers"][0][key], key
    assert served["resources"] == model["resources"] == pod["containers"][0]["resources"]
    assert served["lifecycle"] == pod["containers"][0]["lifecycle"]
    for key in ("securityContext", "terminationGracePeriodSeconds", "serviceAccountName"):
        assert predictor(objects)[key] == pod[key]
    assert predictor(objects)["automountServiceAccountToken"] is False
    assert runtime(objects)["volumes"] == pod["volumes"]
    # KServe routes /v2/models/NAME/infer by the InferenceService's name.
    assert {"name": "TABSHIP_MODEL_NAME", "value": "tabship-charges"} in served["env"]
    assert check_objects(objects) == []


def test_a_name_that_is_not_a_kserve_name_is_refused(tiny_model: TrainedModel) -> None:
    with pytest.raises(ConfigError, match="must start with a letter"):
        render_kserve(tiny_model.artifact, ManifestOptions(image="x:1", name="1charges"))


def test_cli_writes_a_folder_that_passes_the_schema_kustomize_and_policy(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    out = tmp_path / "kserve"
    made = subprocess.run(
        [
            TABSHIP,
            "manifests",
            str(tiny_model.artifact.directory),
            "--image",
            "registry.example/x:v1",
            "--kserve",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert "policy: 0 findings" in made.stdout
    files = ["serviceaccount.yaml", "servingruntime.yaml", "inferenceservice.yaml"]
    assert yaml.safe_load((out / "kustomization.yaml").read_text())["resources"] == files
    assert KSERVE_PYTHON.is_file(), (
        "the kserve SDK's environment is missing: run `make kserve-client`"
    )
    strict = subprocess.run(
        [str(KSERVE_PYTHON), str(SCHEMA_CHECK), *(str(out / name) for name in files)],
        capture_output=True,
        text=True,
    )
    assert strict.returncode == 0 and strict.stdout.strip() == "ok", strict.stdout + strict.stderr
    assert subprocess.run([TABSHIP, "check-manifests", str(out)]).returncode == 0
    assert len(load_folder(out)) == 3
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is missing; `make test` installs it")
    rendered = subprocess.run(["kubectl", "kustomize", str(out)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    assert len(list(yaml.safe_load_all(rendered.stdout))) == 3


def test_the_schema_check_catches_an_unknown_field_and_a_wrong_type(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\n"
        "spec: {predictor: {minReplicas: '2', model: {protocolVersion: v2, runtme: x}}}\n"
    )
    strict = subprocess.run(
        [str(KSERVE_PYTHON), str(SCHEMA_CHECK), str(bad)], capture_output=True, text=True
    )
    assert strict.returncode == 1
    assert "spec.predictor.model.runtme: not a field of V1beta1ModelSpec" in strict.stdout
    assert "spec.predictor.minReplicas: '2' is not int" in strict.stdout


def _model(o: list[dict[str, Any]]) -> dict[str, Any]:
    return predictor(o)["model"]  # type: ignore[no-any-return]


# One deliberately bad variant per KServe rule, and container and pod rules reached through
# the InferenceService (the model's fields override its runtime's container).
BAD: dict[str, Callable[[list[dict[str, Any]]], Any]] = {
    "kserve-protocol-v2": lambda o: _model(o).update(protocolVersion="v1"),
    "kserve-runtime": lambda o: _model(o).update(runtime="somewhere-else"),
    "kserve-raw-deployment": lambda o: by_kind(o)["InferenceService"]["metadata"][
        "annotations"
    ].pop("serving.kserve.io/deploymentMode"),
    "privileged-container": lambda o: _model(o).update(
        securityContext={**runtime(o)["containers"][0]["securityContext"], "privileged": True}
    ),
    "container-memory-requests-equal-limits": lambda o: _model(o).update(
        resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    ),
    "automount-service-account-token": lambda o: predictor(o).pop("automountServiceAccountToken"),
    "termination-grace-period": lambda o: predictor(o).update(terminationGracePeriodSeconds=10),
}
MORE_BAD: dict[str, Callable[[list[dict[str, Any]]], Any]] = {
    "runtime without v2": lambda o: runtime(o).update(protocolVersions=["v1"]),
    "runtime of another format": lambda o: runtime(o)["supportedModelFormats"][0].update(
        name="sklearn"
    ),
}


def test_every_kserve_rule_has_a_bad_fixture() -> None:
    assert {rule for rule in RULES if rule.startswith("kserve-")} <= set(BAD)


@pytest.mark.parametrize("rule", sorted(BAD))
def test_each_bad_fixture_fires_its_rule(objects: list[dict[str, Any]], rule: str) -> None:
    bad = copy.deepcopy(objects)
    BAD[rule](bad)
    findings = check_objects(bad)
    assert {f.rule for f in findings} == {rule}, findings
    assert findings[0].path.startswith("InferenceService/tabship-charges.spec.predictor")


@pytest.mark.parametrize("case", sorted(MORE_BAD))
def test_a_runtime_that_cannot_serve_the_model_is_found(
    objects: list[dict[str, Any]], case: str
) -> None:
    bad = copy.deepcopy(objects)
    MORE_BAD[case](bad)
    assert {f.rule for f in check_objects(bad)} == {"kserve-runtime"}
