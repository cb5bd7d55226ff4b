"""Rendered manifests: their content, the official schemas, kustomize, and the policy checker."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import (
    FILES,
    grace_period,
    render_manifests,
    write_folder,
    write_manifests,
)
from tabship.deploy.policy import RULES, check_objects, load_folder
from tabship.errors import ConfigError, OutputExistsError, TabshipError
from tabship.workflow import TrainedModel

from ..servers import TABSHIP

VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def objects(tiny_model: TrainedModel) -> list[dict[str, Any]]:
    return render_manifests(
        tiny_model.artifact, ManifestOptions(image="registry.example/team/charges:v1")
    )


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_objects_are_production_shaped(
    objects: list[dict[str, Any]], tiny_model: TrainedModel
) -> None:
    kinds = by_kind(objects)
    assert list(kinds) == [
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    deployment = kinds["Deployment"]
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = deployment["spec"]["template"]["spec"]
    assert (
        pod["automountServiceAccountToken"] is False
        and pod["serviceAccountName"] == "tabship-charges"
    )
    c = container(objects)
    paths = [c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert paths == ["/startupz", "/readyz", "/healthz"]
    assert c["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "512Mi"},
    }
    sc = c["securityContext"]
    assert (
        sc["runAsNonRoot"]
        and sc["runAsUser"] >= 10000
        and sc["readOnlyRootFilesystem"]
        and not sc["allowPrivilegeEscalation"]
    )
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    assert (
        c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        and pod["volumes"][0]["emptyDir"]
    )
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert (
        pre_stop + 2 + 20
        < pod["terminationGracePeriodSeconds"]
        == grace_period(ManifestOptions(image="x:1"))
    )
    service = kinds["Service"]["spec"]
    assert service["type"] == "LoadBalancer" and service["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert c["ports"][0]["containerPort"] == 8080
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (
        hpa["minReplicas"],
        hpa["maxReplicas"],
        hpa["metrics"][0]["resource"]["target"]["averageUtilization"],
    ) == (2, 10, 70)
    labels = deployment["metadata"]["labels"]
    assert (
        labels["app.kubernetes.io/name"] == "tabship-charges"
        and labels["app.kubernetes.io/managed-by"] == "tabship"
    )
    assert (
        deployment["metadata"]["annotations"]["tabship.io/model-sha256"]
        == tiny_model.artifact.sha256
    )


def test_image_by_digest_and_options(tiny_model: TrainedModel) -> None:
    options = ManifestOptions(
        image="registry.example/team/charges:v1",
        digest=DIGEST,
        name="charges-api",
        namespace="ml",
        min_replicas=3,
        max_replicas=6,
        cpu="500m",
        memory="1Gi",
    )
    objects = render_manifests(tiny_model.artifact, options)
    c = container(objects)
    assert c["image"] == f"registry.example/team/charges@{DIGEST}"
    assert all(
        obj["metadata"]["namespace"] == "ml" and obj["metadata"]["name"] == "charges-api"
        for obj in objects
    )
    assert c["resources"]["limits"]["memory"] == "1Gi"
    with pytest.raises(ConfigError, match="need 1 <= min <= max"):
        render_manifests(
            tiny_model.artifact, ManifestOptions(image="x:1", min_replicas=5, max_replicas=2)
        )
    with pytest.raises(ConfigError, match="not a memory quantity"):
        render_manifests(tiny_model.artifact, ManifestOptions(image="x:1", memory="lots"))


def validate_folder(folder: Path, objects: list[dict[str, Any]]) -> None:
    """Both schema versions with kubernetes-validate --strict, then kubectl kustomize."""
    resources = [str(folder / FILES[obj["kind"]]) for obj in objects]
    for version in ("1.30.0", "1.37.0"):
        result = subprocess.run(
            [VALIDATE, "--strict", "--kubernetes-version", version, *resources],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("passed") == len(resources)
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is missing; `make test` installs it")
    rendered = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr

    def by_kind_name(obj: dict[str, Any]) -> str:
        return str(obj["kind"])

    # kustomize re-emits every object; they must come back exactly as rendered.
    assert sorted(yaml.safe_load_all(rendered.stdout), key=by_kind_name) == sorted(
        objects, key=by_kind_name
    )


# Quotes, a flow mapping, a comment sign, a YAML document of its own, unicode.
HOSTILE_TARGET = 'Chärges": {x: 1}\n# not a comment\n---\nkind: Secret\n"\\ \'#'


def test_hostile_target_name_round_trips_through_yaml(tmp_path: Path) -> None:
    from ..test_container import train_hostile

    model = train_hostile(tmp_path / "train", HOSTILE_TARGET)
    options = ManifestOptions(image="registry.example/team/charges:v1", namespace="ml-prod")
    objects = render_manifests(model.artifact, options)
    name = objects[0]["metadata"]["name"]
    assert name == "tabship-ch-rges-x-1-not-a-comment-kind-secret"
    deployment = by_kind(objects)["Deployment"]
    assert deployment["metadata"]["annotations"]["tabship.io/target"] == HOSTILE_TARGET
    written = write_manifests(model.artifact, options, tmp_path / "k8s")
    assert [yaml.safe_load(path.read_text()) for path in written[:-1]] == objects
    assert sorted(obj["kind"] for obj in load_folder(tmp_path / "k8s")) == sorted(
        obj["kind"] for obj in objects
    )
    validate_folder(tmp_path / "k8s", objects)


def test_user_strings_that_are_not_kubernetes_names_are_refused(tiny_model: TrainedModel) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("--namespace 'ml\\nkind: x' is not a Kubernetes")
    ):
        render_manifests(tiny_model.artifact, ManifestOptions(image="x:1", namespace="ml\nkind: x"))
    # Docker's grammar, the one `build -t` checks (imageref.py): `A_B` reached the manifest and
    # the policy checker, which called it an image without a tag.
    for image in ("x:1 # y", "A_B", "x@sha256:short", "-x:1"):
        with pytest.raises(ConfigError, match=f"--image '{re.escape(image)}' is not an image ref"):
            render_manifests(tiny_model.artifact, ManifestOptions(image=image))
    digest = "sha256:" + "0" * 64
    objects = render_manifests(
        tiny_model.artifact, ManifestOptions(image=f"r.example/a:v1@{digest}")
    )
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"r.example/a:v1@{digest}"
    )
    with pytest.raises(ConfigError, match="--name 'ÄÖ: #' is not a Kubernetes name .*end\\)$"):
        render_manifests(tiny_model.artifact, ManifestOptions(image="x:1", name="ÄÖ: #"))
    # Never rewritten into another name (`a"b` and `a: b` both became `a-b`): said, with one.
    for given in ('a"b', "a: b", "Charges API", "x" * 64):
        with pytest.raises(ConfigError, match="is not a Kubernetes name .*; e.g. --name [a-z]"):
            render_manifests(tiny_model.artifact, ManifestOptions(image="x:1", name=given))
    # Values no cluster takes, or that weaken what the policy asks for.
    for options, said in (
        ({"max_replicas": 10**30}, "--max-replicas 1000000000000000000000000000000 is over"),
        ({"memory": "0"}, "--memory '0' is under 64Mi"),
        ({"memory": "512"}, "--memory '512' is under 64Mi"),
        ({"cpu": "0"}, "--cpu '0' is not a CPU quantity above 0"),
        ({"cpu": "0.0m"}, "--cpu '0.0m' is not a CPU quantity above 0"),
    ):
        with pytest.raises(ConfigError, match=re.escape(said)):
            render_manifests(tiny_model.artifact, ManifestOptions(image="x:1", **options))


def test_write_manifests_refuses_what_breaks_policy(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    options = ManifestOptions(image="registry.example/team/charges:latest")
    with pytest.raises(ConfigError, match="the manifests break policy: latest-tag"):
        write_manifests(tiny_model.artifact, options, tmp_path / "k8s")
    assert not (tmp_path / "k8s").exists()


def test_folder_validates_against_official_schemas_and_kustomize(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    written = write_folder(objects, tmp_path / "k8s", None)
    assert "&id" not in (tmp_path / "k8s" / "deployment.yaml").read_text()  # no YAML anchors
    resources = [str(p) for p in written if p.name != "kustomization.yaml"]
    for version in ("1.30.0", "1.37.0"):
        result = subprocess.run(
            [VALIDATE, "--strict", "--kubernetes-version", version, *resources],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("passed") == len(resources)
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is missing; `make test` installs it")
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    kinds = [line for line in rendered.stdout.splitlines() if line.startswith("kind: ")]
    assert sorted(kinds) == sorted(f"kind: {obj['kind']}" for obj in objects)
    with pytest.raises(OutputExistsError, match="pass --force"):
        write_folder(objects, tmp_path / "k8s", None)


def test_our_manifests_pass_policy(objects: list[dict[str, Any]]) -> None:
    assert check_objects(objects) == []


def _pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objs)["Deployment"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _sc(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return container(objs)["securityContext"]  # type: ignore[no-any-return]


def _drop_kind(kind: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(objs: list[dict[str, Any]]) -> None:
        objs[:] = [o for o in objs if o["kind"] != kind]

    return mutate


def _gateway_and_route(port: int = 80, gateway: str = "tabship-charges") -> list[dict[str, Any]]:
    meta = {"name": "tabship-charges"}
    gateway_obj = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta,
    }
    backend = {"name": "tabship-charges", "port": port, "weight": 100}
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {"parentRefs": [{"name": gateway}], "rules": [{"backendRefs": [backend]}]},
    }
    return [gateway_obj, route]


# One deliberately bad variant per rule: the checker must name exactly that rule.
BAD: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "privileged-container": lambda o: _sc(o).update(privileged=True),
    "privilege-escalation-container": lambda o: _sc(o).update(allowPrivilegeEscalation=True),
    "run-as-non-root": lambda o: (
        _sc(o).pop("runAsNonRoot"),
        _pod(o)["securityContext"].pop("runAsNonRoot"),
    ),
    "container-security-context-user-group-id": lambda o: _sc(o).update(runAsUser=1000),
    "drop-net-raw-capability": lambda o: _sc(o).update(
        capabilities={"drop": ["ALL"], "add": ["NET_RAW"]}
    ),
    "container-seccomp-profile": lambda o: _sc(o).update(seccompProfile={"type": "Unconfined"}),
    "no-read-only-root-fs": lambda o: _sc(o).update(readOnlyRootFilesystem=False),
    "unset-cpu-requirements": lambda o: container(o)["resources"]["requests"].pop("cpu"),
    "unset-memory-requirements": lambda o: container(o)["resources"].pop("limits"),
    "container-memory-requests-equal-limits": lambda o: container(o)["resources"]["limits"].update(
        memory="2Gi"
    ),
    "no-startup-probe": lambda o: container(o).pop("startupProbe"),
    "no-readiness-probe": lambda o: container(o).pop("readinessProbe"),
    "no-liveness-probe": lambda o: container(o).pop("livenessProbe"),
    "pod-probes": lambda o: container(o)["livenessProbe"]["httpGet"].update(path="/readyz"),
    "latest-tag": lambda o: container(o).update(image="registry.example/team/charges:latest"),
    "host-network": lambda o: _pod(o).update(hostNetwork=True),
    "host-pid": lambda o: _pod(o).update(hostPID=True),
    "host-ipc": lambda o: _pod(o).update(hostIPC=True),
    "writable-host-mount": lambda o: _pod(o)["volumes"].append(
        {"name": "host", "hostPath": {"path": "/var"}}
    ),
    "automount-service-account-token": lambda o: _pod(o).pop("automountServiceAccountToken"),
    "default-service-account": lambda o: _pod(o).pop("serviceAccountName"),
    "no-rolling-update-strategy": lambda o: by_kind(o)["Deployment"]["spec"].update(
        strategy={"type": "Recreate"}
    ),
    "deployment-targeted-by-hpa-does-not-have-replicas-configured": lambda o: by_kind(o)[
        "Deployment"
    ]["spec"].update(replicas=3),
    "deployment-has-poddisruptionbudget": _drop_kind("PodDisruptionBudget"),
    "non-isolated-pod": _drop_kind("NetworkPolicy"),
    "termination-grace-period": lambda o: _pod(o).update(terminationGracePeriodSeconds=10),
    "dangling-service": lambda o: by_kind(o)["Service"]["spec"].update(
        selector={"app.kubernetes.io/name": "other"}
    ),
    "httproute-backends": lambda o: o.extend(_gateway_and_route(port=8080)),
    "httproute-parent": lambda o: o.extend(_gateway_and_route(gateway="elsewhere")),
    "env-var-secret": lambda o: container(o)["env"].append(
        {"name": "TABSHIP_API_KEY", "value": "s3cr3t"}
    ),
    "log-db-url-from-secret": lambda o: (
        container(o)["env"].append(
            {"name": "TABSHIP_LOG_DB", "value": "postgresql://u:pw@db:5432/log"}
        ),
        by_kind(o)["NetworkPolicy"]["spec"].update(egress=[{"ports": [{"port": 5432}]}]),
    ),
    "log-db-egress": lambda o: container(o)["env"].append(
        {"name": "TABSHIP_LOG_DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}
    ),
    "sqlite-log-on-volume": lambda o: container(o)["env"].append(
        {"name": "TABSHIP_LOG_DB", "value": "sqlite:////srv/log.db"}
    ),
    # The same pods as a DaemonSet: not read by the pod rules, so never passed.
    "unchecked-workload": lambda o: o.append(
        {**copy.deepcopy(by_kind(o)["Deployment"]), "kind": "DaemonSet"}
    ),
}


def test_every_rule_has_a_bad_fixture() -> None:
    # The KServe rules have theirs in test_kserve.py.
    assert set(BAD) == {rule for rule in RULES if not rule.startswith("kserve-")}


@pytest.mark.parametrize("rule", sorted(BAD))
def test_each_bad_fixture_fires_its_rule(objects: list[dict[str, Any]], rule: str) -> None:
    bad = copy.deepcopy(objects)
    BAD[rule](bad)
    findings = check_objects(bad)
    assert {f.rule for f in findings} == {rule}, findings
    assert findings[0].path.startswith(
        (
            "Deployment/tabship-charges",
            "Service/tabship-charges",
            "HTTPRoute/tabship-charges",
            "DaemonSet/tabship-charges",
        )
    )


def test_a_folder_with_nothing_to_check_is_refused(tmp_path: Path) -> None:
    """ "0 findings" would pass a gate that read nothing: an empty folder, YAML that holds no
    objects, a file that is not UTF-8."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TabshipError, match="holds no Kubernetes objects"):
        load_folder(empty)
    (empty / "notes.yaml").write_text("- just\n- a list\n")
    with pytest.raises(TabshipError, match="holds no Kubernetes objects"):
        load_folder(empty)
    # A workload in a subfolder is read (and flagged), not skipped.
    (empty / "sub").mkdir()
    (empty / "sub" / "pod.yaml").write_text("kind: Pod\nmetadata: {name: root}\n")
    found = check_objects(load_folder(empty))
    assert [(f.rule, f.path) for f in found] == [("unchecked-workload", "Pod/root")]
    (empty / "latin.yaml").write_bytes("kind: D\xe9ployment\n".encode("latin-1"))
    with pytest.raises(TabshipError, match="latin.yaml is not UTF-8 text"):
        load_folder(empty)


def test_cli_manifests_and_check(tiny_model: TrainedModel, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    made = subprocess.run(
        [
            TABSHIP,
            "manifests",
            str(tiny_model.artifact.directory),
            "--image",
            "registry.example/x:v1",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0 and "policy: 0 findings" in made.stdout
    assert (
        subprocess.run(
            [TABSHIP, "check-manifests", str(out)], capture_output=True, text=True
        ).returncode
        == 0
    )
    text = (
        (out / "deployment.yaml")
        .read_text()
        .replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    )
    (out / "deployment.yaml").write_text(text)
    checked = subprocess.run([TABSHIP, "check-manifests", str(out)], capture_output=True, text=True)
    assert checked.returncode == 1
    assert checked.stdout.startswith(
        "no-read-only-root-fs: Deployment/tabship-charges.spec.template.spec.containers[predictor]: "
    )
    assert len(load_folder(out)) == 6


def test_api_keys_come_from_a_secret_mounted_read_only(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("a-key-that-must-never-reach-yaml\n")
    out = tmp_path / "k8s"
    done = subprocess.run(
        [
            TABSHIP,
            "manifests",
            str(tiny_model.artifact.directory),
            "--image",
            "r.example/a:v1",
            "--api-keys-secret",
            "charges-api-keys",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    objects = load_folder(out)
    pod = _pod(objects)
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"] == {
        "secretName": "charges-api-keys",
        "defaultMode": 0o440,
        "items": [{"key": "api-keys", "path": "api-keys"}],
    }
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "api-keys")
    assert mount == {"name": "api-keys", "mountPath": "/etc/tabship/api-keys", "readOnly": True}
    env = {e["name"]: e["value"] for e in container(objects)["env"]}
    assert env["TABSHIP_API_KEYS_FILE"] == "/etc/tabship/api-keys/api-keys"
    assert check_objects(objects) == []
    assert not any("a-key-that" in p.read_text() for p in out.iterdir())
    files = [str(p) for p in out.iterdir() if p.name != "kustomization.yaml"]
    validated = subprocess.run(
        [VALIDATE, "--strict", "--kubernetes-version", "1.30.0", *files],
        capture_output=True,
        text=True,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    with pytest.raises(ConfigError, match="is not a Secret name"):
        render_manifests(
            tiny_model.artifact, ManifestOptions(image="r.example/a:v1", api_keys_secret="Bad Name")
        )
