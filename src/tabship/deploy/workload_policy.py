"""Policy for the pods that are not the server: the batch Job and the DaskCluster.

They get the same pod and container rules as the Deployment (pod_policy.py), except probes, which
a run-to-completion pod has no use for, plus the rules below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tabship.deploy.pod_policy import _container_rules, _pod_rules
from tabship.deploy.policy import Finding, _selects

PROBE_RULES = frozenset(
    {"no-startup-probe", "no-readiness-probe", "no-liveness-probe", "pod-probes"}
)
WORKLOAD_RULES: dict[str, str] = {
    "job-indexed-completion": "(tabship) a batch Job must use completionMode Indexed",
    "job-retries-per-index": "(tabship) a batch Job must set backoffLimitPerIndex and maxFailedIndexes",
    "job-restart-policy": "(tabship) a batch Job's pods must use restartPolicy Never",
    "job-ttl-after-finished": "(tabship) a batch Job must set ttlSecondsAfterFinished",
    "dask-worker-command": "(tabship) DaskCluster workers must run `dask worker`",
    "non-isolated-pod": "a NetworkPolicy must select the pods",
}
KINDS = ("Job", "DaskCluster")


def _pods(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    """(path, pod spec, pod labels) of each kind of pod the object makes."""
    name = (obj.get("metadata") or {}).get("name")
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Job":
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        yield f"Job/{name}.spec.template.spec", template.get("spec") or {}, labels
        return
    for role in ("scheduler", "worker"):
        # The operator labels every pod of the cluster with its name.
        labels = {"dask.org/cluster-name": str(name), "dask.org/component": role}
        yield (
            f"DaskCluster/{name}.spec.{role}.spec",
            (spec.get(role) or {}).get("spec") or {},
            labels,
        )


def _job_rules(job: dict[str, Any]) -> Iterator[tuple[str, str]]:
    spec = job.get("spec") or {}
    if spec.get("completionMode") != "Indexed":
        yield "job-indexed-completion", f"completionMode is {spec.get('completionMode')!r}"
    for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
        if not isinstance(spec.get(key), int):
            yield "job-retries-per-index", f"{key} is not set"
    restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if restart != "Never":
        yield "job-restart-policy", f"restartPolicy is {restart!r}; retries are per index"
    if not isinstance(spec.get("ttlSecondsAfterFinished"), int):
        yield "job-ttl-after-finished", "ttlSecondsAfterFinished is not set"


def _dask_rules(cluster: dict[str, Any]) -> Iterator[tuple[str, str]]:
    worker = ((cluster.get("spec") or {}).get("worker") or {}).get("spec") or {}
    for container in worker.get("containers") or []:
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        if "worker" not in words[1:2] and "dask-worker" not in words[:1]:
            yield "dask-worker-command", f"container {container.get('name')!r} runs {words[:2]}"


def check_workloads(objects: list[dict[str, Any]]) -> list[Finding]:
    """Every broken rule of the Jobs and DaskClusters among `objects`."""
    findings: list[Finding] = []
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    for obj in objects:
        if obj.get("kind") not in KINDS:
            continue
        name = (obj.get("metadata") or {}).get("name")
        own = _job_rules(obj) if obj["kind"] == "Job" else _dask_rules(obj)
        findings += [Finding(rule, message, f"{obj['kind']}/{name}") for rule, message in own]
        for path, pod, labels in _pods(obj):
            findings += [Finding(rule, message, path) for rule, message in _pod_rules(pod)]
            for c in pod.get("containers") or []:
                findings += [
                    Finding(rule, message, f"{path}.containers[{c.get('name')}]")
                    for rule, message in _container_rules(pod, c)
                    if rule not in PROBE_RULES
                ]
            if not any(
                _selects((p.get("spec") or {}).get("podSelector"), labels) for p in policies
            ):
                findings.append(
                    Finding("non-isolated-pod", "no NetworkPolicy selects these pods", path)
                )
    return findings
