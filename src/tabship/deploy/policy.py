"""Policy checker: Pod Security Standards "restricted" plus tabship's hardening rules.

Rule ids follow kube-linter (privileged-container, run-as-non-root, ...) and kube-score
(container-security-context-user-group-id, deployment-has-poddisruptionbudget, ...);
the few without an equivalent there are tabship's own and say so in RULES.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabship.errors import TabshipError

RULES: dict[str, str] = {
    "privileged-container": "containers must not run privileged",
    "privilege-escalation-container": "allowPrivilegeEscalation must be false",
    "run-as-non-root": "runAsNonRoot must be true",
    "container-security-context-user-group-id": "runAsUser and runAsGroup must be set and >= 10000",
    "drop-net-raw-capability": "capabilities must drop ALL and add nothing but NET_BIND_SERVICE",
    "container-seccomp-profile": "seccompProfile must be RuntimeDefault or Localhost",
    "no-read-only-root-fs": "readOnlyRootFilesystem must be true",
    "unset-cpu-requirements": "a CPU request must be set",
    "unset-memory-requirements": "a memory request and limit must be set",
    "container-memory-requests-equal-limits": "the memory limit must equal the request",
    "no-startup-probe": "a startup probe must be set",
    "no-readiness-probe": "a readiness probe must be set",
    "no-liveness-probe": "a liveness probe must be set",
    "pod-probes": "startup, readiness and liveness probes must use different paths",
    "latest-tag": "images must have a tag other than latest, or a digest",
    "host-network": "hostNetwork must not be used",
    "host-pid": "hostPID must not be used",
    "host-ipc": "hostIPC must not be used",
    "writable-host-mount": "hostPath volumes are not allowed",
    "automount-service-account-token": "(tabship) automountServiceAccountToken must be false",
    "default-service-account": "pods must use a dedicated service account",
    "no-rolling-update-strategy": "RollingUpdate with maxUnavailable 0",
    "deployment-targeted-by-hpa-does-not-have-replicas-configured": "no replicas when an HPA scales the Deployment",
    "deployment-has-poddisruptionbudget": "a PodDisruptionBudget must select the pods",
    "non-isolated-pod": "a NetworkPolicy must select the pods",
    "termination-grace-period": "(tabship) preStop + drain + in-flight time must fit the grace period",
    "dangling-service": "a Service must select the pods of a Deployment",
}


@dataclass(frozen=True)
class Finding:
    """One broken rule at one place."""

    rule: str
    message: str
    path: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.path}: {self.message}"


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    wanted = (selector or {}).get("matchLabels", selector or {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _env_seconds(container: dict[str, Any], name: str) -> float:
    for item in container.get("env", []):
        if item.get("name") == name:
            try:
                return float(item.get("value", 0))
            except ValueError:
                return 0.0
    return 0.0


ContainerCheck = Callable[[dict[str, Any], dict[str, Any]], Iterator[tuple[str, str]]]


def _container_rules(pod: dict[str, Any], c: dict[str, Any]) -> Iterator[tuple[str, str]]:
    sc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}

    def effective(key: str) -> Any:
        return sc.get(key, psc.get(key))

    if sc.get("privileged"):
        yield "privileged-container", "securityContext.privileged is true"
    if sc.get("allowPrivilegeEscalation") is not False:
        yield (
            "privilege-escalation-container",
            "securityContext.allowPrivilegeEscalation is not false",
        )
    if effective("runAsNonRoot") is not True:
        yield "run-as-non-root", "runAsNonRoot is not true in the container or pod securityContext"
    for key in ("runAsUser", "runAsGroup"):
        value = effective(key)
        if not isinstance(value, int) or value < 10000:
            yield (
                "container-security-context-user-group-id",
                f"{key} is {value!r}; set it to 10000 or more",
            )
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        yield (
            "drop-net-raw-capability",
            f"capabilities are {caps}; drop ALL and add nothing but NET_BIND_SERVICE",
        )
    seccomp = (effective("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        yield "container-seccomp-profile", f"seccompProfile type is {seccomp!r}"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield "no-read-only-root-fs", "securityContext.readOnlyRootFilesystem is not true"
    resources = c.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    if "cpu" not in requests:
        yield "unset-cpu-requirements", "resources.requests.cpu is not set"
    if "memory" not in requests or "memory" not in limits:
        yield (
            "unset-memory-requirements",
            "resources.requests.memory and resources.limits.memory must both be set",
        )
    elif requests["memory"] != limits["memory"]:
        yield (
            "container-memory-requests-equal-limits",
            f"memory request {requests['memory']} != limit {limits['memory']}",
        )
    paths = []
    for probe, rule in (
        ("startupProbe", "no-startup-probe"),
        ("readinessProbe", "no-readiness-probe"),
        ("livenessProbe", "no-liveness-probe"),
    ):
        if not c.get(probe):
            yield rule, f"{probe} is not set"
        else:
            paths.append((c[probe].get("httpGet") or {}).get("path"))
    if len(paths) != len(set(paths)):
        yield (
            "pod-probes",
            f"probe paths {paths} repeat; startup, readiness and liveness mean different things",
        )
    image = str(c.get("image", ""))
    last = image.rsplit("/", 1)[-1]
    if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
        yield "latest-tag", f"image {image!r} has no tag, or the tag latest"


def _pod_rules(pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, rule in (
        ("hostNetwork", "host-network"),
        ("hostPID", "host-pid"),
        ("hostIPC", "host-ipc"),
    ):
        if pod.get(key):
            yield rule, f"{key} is true"
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            yield "writable-host-mount", f"volume {volume.get('name')!r} is a hostPath"
    if pod.get("automountServiceAccountToken") is not False:
        yield (
            "automount-service-account-token",
            "automountServiceAccountToken is not false; the server needs no API access",
        )
    if pod.get("serviceAccountName") in (None, "", "default"):
        yield "default-service-account", "serviceAccountName is empty or default"


def _deployment_rules(
    deployment: dict[str, Any], objects: list[dict[str, Any]]
) -> Iterator[tuple[str, str, str]]:
    name = deployment["metadata"]["name"]
    spec = deployment.get("spec") or {}
    pod_template = spec.get("template") or {}
    pod = pod_template.get("spec") or {}
    labels = (pod_template.get("metadata") or {}).get("labels") or {}
    base = f"Deployment/{name}"
    for rule, message in _pod_rules(pod):
        yield rule, message, f"{base}.spec.template.spec"
    for c in pod.get("containers") or []:
        for rule, message in _container_rules(pod, c):
            yield rule, message, f"{base}.spec.template.spec.containers[{c.get('name')}]"
        pre_stop = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
            "seconds", 0
        )
        needed = (
            pre_stop
            + _env_seconds(c, "TABSHIP_DRAIN_DELAY")
            + _env_seconds(c, "TABSHIP_GRACEFUL_TIMEOUT")
        )
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if needed >= grace:
            yield (
                "termination-grace-period",
                f"preStop {pre_stop}s + drain + in-flight = {needed:g}s does not fit terminationGracePeriodSeconds {grace}",
                f"{base}.spec.template.spec",
            )
    strategy = spec.get("strategy") or {}
    if (
        strategy.get("type") != "RollingUpdate"
        or (strategy.get("rollingUpdate") or {}).get("maxUnavailable") != 0
    ):
        yield (
            "no-rolling-update-strategy",
            f"strategy is {strategy}; use RollingUpdate with maxUnavailable 0",
            f"{base}.spec.strategy",
        )
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj.get("kind", ""), []).append(obj)
    hpa_targets = {
        (h.get("spec") or {}).get("scaleTargetRef", {}).get("name")
        for h in by_kind.get("HorizontalPodAutoscaler", [])
    }
    if name in hpa_targets and "replicas" in spec:
        yield (
            "deployment-targeted-by-hpa-does-not-have-replicas-configured",
            "spec.replicas is set while an HPA owns the count",
            f"{base}.spec.replicas",
        )
    if not any(
        _selects((p.get("spec") or {}).get("selector"), labels)
        for p in by_kind.get("PodDisruptionBudget", [])
    ):
        yield (
            "deployment-has-poddisruptionbudget",
            "no PodDisruptionBudget selects these pods",
            base,
        )
    if not any(
        _selects((n.get("spec") or {}).get("podSelector"), labels)
        for n in by_kind.get("NetworkPolicy", [])
    ):
        yield "non-isolated-pod", "no NetworkPolicy selects these pods", base


def check_objects(objects: list[dict[str, Any]]) -> list[Finding]:
    """Every broken rule in a set of objects, in a stable order."""
    findings = []
    pod_labels = []
    for obj in objects:
        if obj.get("kind") == "Deployment":
            findings += [
                Finding(rule, message, path)
                for rule, message, path in _deployment_rules(obj, objects)
            ]
            pod_labels.append(
                (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
                    "labels"
                )
                or {}
            )
    for obj in objects:
        if obj.get("kind") == "Service" and not any(
            _selects((obj.get("spec") or {}).get("selector"), labels) for labels in pod_labels
        ):
            findings.append(
                Finding(
                    "dangling-service",
                    "its selector matches no Deployment's pods",
                    f"Service/{obj['metadata']['name']}.spec.selector",
                )
            )
    # The batch Job and the DaskCluster: the same pod rules, their own workload rules.
    from tabship.deploy.workload_policy import check_workloads

    return findings + check_workloads(objects)


def load_folder(directory: Path) -> list[dict[str, Any]]:
    """The objects of a kustomize folder (or of every YAML file in a folder)."""
    import yaml

    if not directory.is_dir():
        raise TabshipError(f"{directory} is not a folder of manifests")
    kustomization = directory / "kustomization.yaml"
    if kustomization.is_file():
        names = (yaml.safe_load(kustomization.read_text()) or {}).get("resources", [])
        files = [directory / name for name in names]
    else:
        files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    objects: list[dict[str, Any]] = []
    for path in files:
        if not path.resolve().is_relative_to(directory.resolve()) or not path.is_file():
            raise TabshipError(f"{path} is not a file inside {directory}")
        try:
            objects += [
                doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)
            ]
        except yaml.YAMLError as exc:
            raise TabshipError(f"{path} is not valid YAML: {exc}") from None
    return objects
