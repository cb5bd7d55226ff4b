"""Policy for one pod and its containers: the rules every workload's pods follow.

Pod Security Standards "restricted" (privileges, user, capabilities, seccomp, read-only root),
resources, probes, image tags, literal secrets and a shutdown that fits the grace period. The
objects that make the pods (policy.py, workload_policy.py) say where each rule was broken.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

# Names of env vars that hold a credential when set to a literal (a *_FILE path is fine).
_SECRET_NAME = re.compile(r"(?i).*(secret|password|passwd|token|api_?key|credential).*")


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
    yield from _security_rules(pod, c)
    yield from _resource_rules(c)
    yield from _probe_rules(c)
    image = str(c.get("image", ""))
    last = image.rsplit("/", 1)[-1]
    if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
        yield "latest-tag", f"image {image!r} has no tag, or the tag latest"


def _security_rules(pod: dict[str, Any], c: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The container's securityContext, falling back to the pod's where Kubernetes does."""
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


def _resource_rules(c: dict[str, Any]) -> Iterator[tuple[str, str]]:
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


def _probe_rules(c: dict[str, Any]) -> Iterator[tuple[str, str]]:
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


def _env_rules(c: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for item in c.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item and _SECRET_NAME.fullmatch(name) and not name.endswith("_FILE"):
            yield "env-var-secret", f"env {name} is a literal; use a Secret (file or secretKeyRef)"


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


def _pod_container_rules(
    pod: dict[str, Any], c: dict[str, Any], where: str
) -> Iterator[tuple[str, str, str]]:
    """A container's rules, and whether its shutdown fits the pod's grace period."""
    for rule, message in (*_container_rules(pod, c), *_env_rules(c)):
        yield rule, message, f"{where}.containers[{c.get('name')}]"
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
            where,
        )
