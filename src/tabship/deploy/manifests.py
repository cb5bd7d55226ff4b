"""Kubernetes objects for a model, rendered as plain dicts (pure), and written as a kustomize folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabship import __version__
from tabship.artifact import Artifact
from tabship.deploy.logdb import log_egress, log_env, log_volume
from tabship.deploy.manifest_options import ManifestOptions, app_name, check_options, model_version
from tabship.deploy.policy import check_objects
from tabship.errors import ConfigError, OutputExistsError

PORT = 8080
RUNTIME_UID = 10001
KEYS_DIR = "/etc/tabship/api-keys"
KEYS_ITEM = "api-keys"
FILES = {
    "ServiceAccount": "serviceaccount.yaml",
    "Deployment": "deployment.yaml",
    "Service": "service.yaml",
    "HorizontalPodAutoscaler": "hpa.yaml",
    "PodDisruptionBudget": "pdb.yaml",
    "NetworkPolicy": "networkpolicy.yaml",
    "ServingRuntime": "servingruntime.yaml",
    "InferenceService": "inferenceservice.yaml",
}


def _image(options: ManifestOptions) -> str:
    if options.digest and "@" not in options.image:
        return f"{options.image.rsplit(':', 1)[0] if ':' in options.image.rsplit('/', 1)[-1] else options.image}@{options.digest}"
    return options.image


def grace_period(options: ManifestOptions) -> int:
    """Seconds Kubernetes waits after starting termination: preStop + drain + in-flight + margin."""
    return options.pre_stop_seconds + options.drain_delay + options.graceful_timeout + 3


def mount_api_keys(pod: dict[str, Any], secret: str) -> None:
    """Serve with the keys file from a Secret, mounted read-only; the keys never enter YAML."""
    container = pod["containers"][0]
    container["env"].append({"name": "TABSHIP_API_KEYS_FILE", "value": f"{KEYS_DIR}/{KEYS_ITEM}"})
    container["volumeMounts"].append({"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True})
    pod["volumes"].append(
        {
            "name": "api-keys",
            # Readable by the pod's group (fsGroup) only; updates to the Secret reach the file,
            # and the server re-reads it without a restart.
            "secret": {
                "secretName": secret,
                "defaultMode": 0o440,
                "items": [{"key": KEYS_ITEM, "path": KEYS_ITEM}],
            },
        }
    )


def render_manifests(artifact: Artifact, options: ManifestOptions) -> list[dict[str, Any]]:
    """ServiceAccount, Deployment, Service, HPA, PDB and NetworkPolicy for one model."""
    check_options(options)
    name = app_name(artifact, options.name)
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    labels = {
        **selector,
        "app.kubernetes.io/version": model_version(artifact, options.version),
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/part-of": "tabship",
        "app.kubernetes.io/managed-by": "tabship",
    }

    def metadata(kind_labels: dict[str, str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "labels": kind_labels or labels}
        if options.namespace:
            out["namespace"] = options.namespace
        return out

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    container = {
        "name": "predictor",
        "image": _image(options),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "TABSHIP_HOST", "value": "0.0.0.0"},  # noqa: S104 - inside the pod network
            {"name": "TABSHIP_PORT", "value": str(PORT)},
            {"name": "TABSHIP_DRAIN_DELAY", "value": str(options.drain_delay)},
            {"name": "TABSHIP_GRACEFUL_TIMEOUT", "value": str(options.graceful_timeout)},
            *log_env(options.log_db_secret, options.log_sqlite),
        ],
        "resources": {
            "requests": {"cpu": options.cpu, "memory": options.memory},
            "limits": {"memory": options.memory},
        },
        "startupProbe": probe("/startupz", 1, 60),
        "readinessProbe": probe("/readyz", 5, 2),
        "livenessProbe": probe("/healthz", 10, 3),
        # The endpoint is removed while the pod sleeps here, before SIGTERM starts the drain.
        "lifecycle": {"preStop": {"sleep": {"seconds": options.pre_stop_seconds}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
            *log_volume(options.log_sqlite)[1],
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **metadata(),
            "annotations": {
                "tabship.io/model-sha256": artifact.sha256,
                "tabship.io/version": __version__,
                # The column name as the table spelled it; the YAML dumper quotes it.
                "tabship.io/target": artifact.card.target,
            },
        },
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"tabship.io/model-sha256": artifact.sha256},
                },
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": grace_period(options),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNTIME_UID,
                        "runAsGroup": RUNTIME_UID,
                        "fsGroup": RUNTIME_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": key,
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                    ],
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        *log_volume(options.log_sqlite)[0],
                    ],
                },
            },
        },
    }
    if options.api_keys_secret:
        mount_api_keys(deployment["spec"]["template"]["spec"], options.api_keys_secret)  # type: ignore[index]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(),
            "automountServiceAccountToken": False,
        },
        deployment,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(),
            "spec": {
                "type": "LoadBalancer",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": options.min_replicas,
                "maxReplicas": options.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": options.cpu_target,
                            },
                        },
                    }
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": selector},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(),
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                # Load-balancer traffic arrives from outside the cluster, so the port is open to all;
                # the server needs no egress but to its log database, when it has one.
                "ingress": [{"ports": [{"port": PORT, "protocol": "TCP"}]}],
                "egress": log_egress(options.log_db_secret, options.log_db_port),
            },
        },
    ]


def render_kustomization(objects: list[dict[str, Any]], namespace: str | None) -> dict[str, Any]:
    """The kustomization.yaml listing one file per object."""
    out: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [FILES[obj["kind"]] for obj in objects],
    }
    if namespace:
        out["namespace"] = namespace
    return out


def to_yaml(obj: dict[str, Any]) -> str:
    """Block-style YAML with keys in the order they were written, and no anchors.

    The objects share their label dicts; spelling them out keeps each file readable alone.
    """
    import yaml

    class Plain(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return str(yaml.dump(obj, Dumper=Plain, sort_keys=False, default_flow_style=False))


def write_folder(
    objects: list[dict[str, Any]], directory: Path, namespace: str | None, force: bool = False
) -> list[Path]:
    """Write objects as a kustomize folder; refuse to replace files there unless `force`."""
    targets = {FILES[obj["kind"]]: obj for obj in objects}
    existing = [name for name in [*targets, "kustomization.yaml"] if (directory / name).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{directory} already has {', '.join(existing)}; choose another -o or pass --force"
        )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, obj in targets.items():
        (directory / filename).write_text(to_yaml(obj))
        written.append(directory / filename)
    (directory / "kustomization.yaml").write_text(to_yaml(render_kustomization(objects, namespace)))
    return [*written, directory / "kustomization.yaml"]


def write_manifests(
    artifact: Artifact,
    options: ManifestOptions,
    directory: Path,
    force: bool = False,
    kserve: bool = False,
) -> list[Path]:
    """Render the objects (KServe's with `kserve`), refuse them if they break the policy, write
    the kustomize folder."""
    if kserve:
        from tabship.deploy.kserve import render_kserve

        objects = render_kserve(artifact, options)
    else:
        objects = render_manifests(artifact, options)
    findings = check_objects(objects)
    if findings:
        raise ConfigError(
            "the manifests break policy: " + "; ".join(str(finding) for finding in findings)
        )
    return write_folder(objects, directory, options.namespace, force=force)
