"""Policy checker: Pod Security Standards "restricted" plus tabship's hardening rules.

Rule ids follow kube-linter (privileged-container, run-as-non-root, ...) and kube-score
(container-security-context-user-group-id, deployment-has-poddisruptionbudget, ...);
the few without an equivalent there are tabship's own and say so in RULES. The rules of one pod
and its containers are pod_policy.py; this module finds the pods and the objects around them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabship.deploy.logdb import RULES as LOG_RULES
from tabship.deploy.logdb import log_rules
from tabship.deploy.pod_policy import _pod_container_rules, _pod_rules
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
    "kserve-protocol-v2": "(tabship) an InferenceService's model speaks protocolVersion v2",
    "kserve-runtime": "(tabship) the model's runtime is a ServingRuntime here that supports its format and v2",
    "kserve-raw-deployment": "(tabship) RawDeployment mode: Knative would drop the startup probe and preStop",
    "httproute-backends": "(tabship) an HTTPRoute's backends are Services with a port and a weight 0-1000000, some above 0; one in the folder uses a port it has",
    "httproute-parent": "(tabship) an HTTPRoute's parentRefs name a Gateway in the folder",
    "env-var-secret": "no key, token, secret or password as a literal env value; mount a Secret",
    "unchecked-workload": "(tabship) pods only of kinds the checker knows (Deployment, Job, DaskCluster, InferenceService)",
    **LOG_RULES,
}
# Kinds that run pods which the rules here do not read.
UNCHECKED_WORKLOADS = frozenset(
    {"Pod", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "CronJob"}
)
# Container fields an InferenceService's model may set over its runtime's container.
_MODEL_CONTAINER_KEYS = (
    "image", "env", "resources", "securityContext", "startupProbe", "readinessProbe",
    "livenessProbe", "lifecycle", "volumeMounts", "ports", "args", "command",
)  # fmt: skip


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


def _named(objects: list[dict[str, Any]], kind: str, name: object) -> dict[str, Any] | None:
    for obj in objects:
        if obj.get("kind") == kind and (obj.get("metadata") or {}).get("name") == name:
            return obj
    return None


def _runtime_rules(
    model: dict[str, Any], runtime: dict[str, Any] | None, where: str
) -> Iterator[tuple[str, str, str]]:
    name = model.get("runtime")
    if runtime is None:
        yield "kserve-runtime", f"runtime {name!r} is not a ServingRuntime in these objects", where
        return
    spec = runtime.get("spec") or {}
    if "v2" not in (spec.get("protocolVersions") or []):
        yield "kserve-runtime", f"ServingRuntime {name!r} does not list protocolVersions v2", where
    wanted = (model.get("modelFormat") or {}).get("name")
    formats = [f.get("name") for f in spec.get("supportedModelFormats") or []]
    if wanted not in formats:
        yield (
            "kserve-runtime",
            f"ServingRuntime {name!r} supports {formats}, not the model's format {wanted!r}",
            where,
        )


def _inference_service_rules(
    service: dict[str, Any], objects: list[dict[str, Any]]
) -> Iterator[tuple[str, str, str]]:
    """The predictor's pod and its runtime's containers as the model's fields override them."""
    meta = service.get("metadata") or {}
    base = f"InferenceService/{meta.get('name')}.spec.predictor"
    predictor = (service.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or {}
    if (meta.get("annotations") or {}).get("serving.kserve.io/deploymentMode") != "RawDeployment":
        yield (
            "kserve-raw-deployment",
            "the serving.kserve.io/deploymentMode annotation is not RawDeployment",
            base,
        )
    for rule, message in _pod_rules(predictor):
        yield rule, message, base
    if model.get("protocolVersion") != "v2":
        yield (
            "kserve-protocol-v2",
            f"model.protocolVersion is {model.get('protocolVersion')!r}",
            f"{base}.model",
        )
    runtime = _named(objects, "ServingRuntime", model.get("runtime"))
    yield from _runtime_rules(model, runtime, f"{base}.model.runtime")
    overrides = {key: model[key] for key in _MODEL_CONTAINER_KEYS if key in model}
    runtime_containers = ((runtime or {}).get("spec") or {}).get("containers") or []
    for c in [
        *({**c, **overrides} for c in runtime_containers),
        *(predictor.get("containers") or []),
    ]:
        yield from _pod_container_rules(predictor, c, base)


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
    policies = [
        n
        for n in objects
        if n.get("kind") == "NetworkPolicy"
        and _selects((n.get("spec") or {}).get("podSelector"), labels)
    ]
    for c in pod.get("containers") or []:
        where = f"{base}.spec.template.spec"
        yield from _pod_container_rules(pod, c, where)
        for rule, message in log_rules(pod, c, policies):
            yield rule, message, f"{where}.containers[{c.get('name')}]"
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
        if obj.get("kind") == "InferenceService":
            findings += [
                Finding(rule, message, path)
                for rule, message, path in _inference_service_rules(obj, objects)
            ]
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
    for obj in objects:
        if obj.get("kind") == "HTTPRoute":
            findings += list(_route_rules(obj, objects))
        if obj.get("kind") in UNCHECKED_WORKLOADS:
            # Their pods are not read here: passing them would vouch for what was not checked
            # (a privileged root DaemonSet came out "0 findings").
            findings.append(
                Finding(
                    "unchecked-workload",
                    f"a {obj['kind']}'s pods are not checked here; run them as a Deployment or Job",
                    f"{obj['kind']}/{(obj.get('metadata') or {}).get('name')}",
                )
            )
    # The batch Job and the DaskCluster: the same pod rules, their own workload rules.
    from tabship.deploy.workload_policy import check_workloads

    return findings + check_workloads(objects)


def _route_rules(route: dict[str, Any], objects: list[dict[str, Any]]) -> Iterator[Finding]:
    where = f"HTTPRoute/{route['metadata']['name']}.spec"
    spec = route.get("spec") or {}
    gateways = {o["metadata"]["name"] for o in objects if o.get("kind") == "Gateway"}
    services = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Service"}
    for ref in spec.get("parentRefs") or [{}]:
        if ref.get("name") not in gateways:
            yield Finding("httproute-parent", f"parentRef {ref} names no Gateway here", where)
    weights = []
    for ref in (b for rule in spec.get("rules") or [] for b in rule.get("backendRefs") or []):
        weight, port = ref.get("weight", 1), ref.get("port")
        weights.append(weight if isinstance(weight, int) else 0)
        service = services.get(ref.get("name", ""))
        ports = [p.get("port") for p in ((service or {}).get("spec") or {}).get("ports") or []]
        if ref.get("kind", "Service") != "Service" or not isinstance(port, int):
            yield Finding("httproute-backends", f"backend {ref} is not a Service port", where)
        elif not isinstance(weight, int) or not 0 <= weight <= 1_000_000:
            yield Finding("httproute-backends", f"backend {ref} weight is not 0-1000000", where)
        elif service is not None and port not in ports:
            yield Finding("httproute-backends", f"backend {ref} port is not in {ports}", where)
    if not any(weights):
        yield Finding("httproute-backends", "no backend has a weight above 0", where)


def load_folder(directory: Path) -> list[dict[str, Any]]:
    """The objects of a kustomize folder (or of every YAML file in a folder)."""
    import yaml

    if not directory.is_dir():
        raise TabshipError(f"{directory} is not a folder of manifests")
    kustomization = directory / "kustomization.yaml"
    if kustomization.is_file():
        names = (yaml.safe_load(_text(kustomization)) or {}).get("resources", [])
        files = [directory / name for name in names]
    else:  # every YAML file below, subfolders too: one left unread would pass unchecked
        files = sorted(
            p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
        )
    objects: list[dict[str, Any]] = []
    for path in files:
        if not path.resolve().is_relative_to(directory.resolve()):
            raise TabshipError(f"{path} is not a file inside {directory}")
        if path.is_dir():  # a kustomization's resource may be a folder (a base)
            objects += load_folder(path)
            continue
        if not path.is_file():
            raise TabshipError(f"{path} is not a file inside {directory}")
        try:
            objects += [doc for doc in yaml.safe_load_all(_text(path)) if isinstance(doc, dict)]
        except yaml.YAMLError as exc:
            raise TabshipError(f"{path} is not valid YAML: {exc}") from None
    if not objects:
        # "0 findings" for a folder nothing was read from would pass a gate that checked nothing.
        raise TabshipError(
            f"{directory} holds no Kubernetes objects: give the folder `tabship manifests` "
            "wrote (its kustomization.yaml lists the files), or a folder of YAML files"
        )
    return objects


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TabshipError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
