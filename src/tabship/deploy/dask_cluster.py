"""A Dask cluster for `tabship train --cluster`, as a DaskCluster of the dask-kubernetes operator.

Scheduler and workers run the image `tabship build` makes (the serving image's hardened base:
numeric non-root user, read-only root file system, no capabilities), started with the
`dask scheduler` / `dask worker` commands, so client and workers share one set of pins.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from tabship.artifact import Artifact
from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import render_manifests
from tabship.errors import ConfigError

SCHEDULER_PORT = 8786
SCHEDULER_DASHBOARD = 8787
WORKER_DASHBOARD = 8788
DASK_FILES = {
    "ServiceAccount": "dask-serviceaccount.yaml",
    "NetworkPolicy": "dask-networkpolicy.yaml",
    "DaskCluster": "daskcluster.yaml",
}


@dataclass(frozen=True)
class DaskClusterOptions:
    """Workers, and what each may use (one thread per CPU it requests)."""

    workers: int = 4
    worker_cpu: str = "1"
    worker_memory: str = "4Gi"


def _threads(cpu: str) -> int:
    millis = float(cpu[:-1]) if cpu.endswith("m") else float(cpu) * 1000
    return max(1, int(millis // 1000))


def _check(options: DaskClusterOptions) -> None:
    if not 1 <= options.workers <= 1000:
        raise ConfigError(f"--workers {options.workers} must be from 1 to 1000")
    if not re.fullmatch(r"\d+(\.\d+)?m?", options.worker_cpu):
        raise ConfigError(f"--worker-cpu {options.worker_cpu!r} is not a CPU quantity such as 1")
    if not re.fullmatch(r"\d+(Ki|Mi|Gi|K|M|G)?", options.worker_memory):
        raise ConfigError(f"--worker-memory {options.worker_memory!r} is not such as 4Gi")


def _container(
    served: dict[str, Any], name: str, args: list[str], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": served["image"],
        "imagePullPolicy": served["imagePullPolicy"],
        "command": ["/opt/venv/bin/dask", *args],
        "ports": ports,
        # Spilled data and the worker's scratch files go to the pod's own /tmp.
        "env": [{"name": "DASK_TEMPORARY_DIRECTORY", "value": "/tmp"}],  # noqa: S108
        "resources": copy.deepcopy(served["resources"]),
        "securityContext": served["securityContext"],
        "volumeMounts": served["volumeMounts"],
    }


def render_dask_cluster(
    artifact: Artifact, options: ManifestOptions, dask: DaskClusterOptions
) -> list[dict[str, Any]]:
    """ServiceAccount, NetworkPolicy and the DaskCluster (kubernetes.dask.org/v1)."""
    _check(dask)
    deployment = next(o for o in render_manifests(artifact, options) if o["kind"] == "Deployment")
    base = deployment["metadata"]["name"]
    name = f"{base[:58].rstrip('-')}-dask"
    labels = {
        **deployment["metadata"]["labels"],
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "training",
    }
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if options.namespace:
        metadata["namespace"] = options.namespace
    template = deployment["spec"]["template"]["spec"]
    served = template["containers"][0]

    def pod(container: dict[str, Any]) -> dict[str, Any]:
        return {
            "serviceAccountName": name,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": template["securityContext"],
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}}],
        }

    worker = _container(
        served,
        "worker",
        [
            "worker",
            "--name",
            "$(DASK_WORKER_NAME)",
            "--nthreads",
            str(_threads(dask.worker_cpu)),
            "--memory-limit",
            "auto",
            "--local-directory",
            "/tmp",  # noqa: S108
            "--dashboard-address",
            f":{WORKER_DASHBOARD}",
        ],
        [{"name": "http-dashboard", "containerPort": WORKER_DASHBOARD, "protocol": "TCP"}],
    )
    worker["resources"] = {
        "requests": {"cpu": dask.worker_cpu, "memory": dask.worker_memory},
        "limits": {"memory": dask.worker_memory},
    }
    worker["livenessProbe"] = {
        "httpGet": {"path": "/health", "port": "http-dashboard"},
        "periodSeconds": 15,
        "failureThreshold": 4,
    }
    scheduler = _container(
        served,
        "scheduler",
        [
            "scheduler",
            "--port",
            str(SCHEDULER_PORT),
            "--dashboard-address",
            f":{SCHEDULER_DASHBOARD}",
        ],
        [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": SCHEDULER_DASHBOARD, "protocol": "TCP"},
        ],
    )
    scheduler["readinessProbe"] = {"tcpSocket": {"port": "tcp-comm"}, "periodSeconds": 5}
    scheduler["livenessProbe"] = {
        "httpGet": {"path": "/health", "port": "http-dashboard"},
        "periodSeconds": 15,
        "failureThreshold": 4,
    }
    members = {"dask.org/cluster-name": name}
    cluster = {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": metadata,
        "spec": {
            "worker": {"replicas": dask.workers, "spec": pod(worker)},
            "scheduler": {
                "spec": pod(scheduler),
                "service": {
                    "type": "ClusterIP",
                    "selector": {**members, "dask.org/component": "scheduler"},
                    "ports": [
                        {
                            "name": "tcp-comm",
                            "protocol": "TCP",
                            "port": SCHEDULER_PORT,
                            "targetPort": "tcp-comm",
                        },
                        {
                            "name": "http-dashboard",
                            "protocol": "TCP",
                            "port": SCHEDULER_DASHBOARD,
                            "targetPort": "http-dashboard",
                        },
                    ],
                },
            },
        },
    }
    inside = {"podSelector": {"matchLabels": members}}
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": members},
            "policyTypes": ["Ingress", "Egress"],
            # Scheduler and workers talk to each other on any port; the client (in or out
            # of the cluster, through a port-forward) reaches the scheduler and dashboard.
            "ingress": [
                {"from": [inside]},
                {
                    "ports": [
                        {"port": SCHEDULER_PORT, "protocol": "TCP"},
                        {"port": SCHEDULER_DASHBOARD, "protocol": "TCP"},
                    ]
                },
            ],
            "egress": [
                {"to": [inside]},
                {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            ],
        },
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata,
        "automountServiceAccountToken": False,
    }
    return [account, policy, cluster]
