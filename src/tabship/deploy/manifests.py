"""Kubernetes objects for a model, rendered as plain dicts (pure), and written as a kustomize folder."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabship import __version__
from tabship.artifact import Artifact
from tabship.deploy.logdb import log_egress, log_env, log_volume
from tabship.deploy.policy import check_objects
from tabship.errors import ConfigError, OutputExistsError
from tabship.imageref import IMAGE_REFERENCE

PORT = 8080
RUNTIME_UID = 10001
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


@dataclass(frozen=True)
class ManifestOptions:
    """What `tabship manifests` was asked for; times are in seconds."""

    image: str
    name: str | None = None
    namespace: str | None = None
    min_replicas: int = 2
    max_replicas: int = 10
    cpu_target: int = 70
    cpu: str = "250m"
    memory: str = "512Mi"
    digest: str | None = None
    pre_stop_seconds: int = 5
    drain_delay: int = 2
    graceful_timeout: int = 20
    # A Secret holding the API keys file under the key `api-keys`, mounted read-only.
    api_keys_secret: str | None = None
    # The model's version in labels (and a canary's names): --version, else the sha256[:12].
    version: str | None = None
    # The prediction log: a Secret holding the database URL, or SQLite on an emptyDir.
    log_db_secret: str | None = None
    log_db_port: int = 5432
    log_sqlite: bool = False


def app_name(artifact: Artifact, name: str | None) -> str:
    """The objects' name: --name, else tabship-TARGET cut to DEFAULT_NAME_CHARS with a hash
    of the whole, leaving room for what is added to it (`-VERSION` of a canary, `-batch`,
    KServe's `-predictor-00001`): a long target's default was refused by the canary."""
    if name:
        return dns_name(name)
    whole = dns_name(f"tabship-{artifact.card.target}")
    if len(whole) <= DEFAULT_NAME_CHARS:
        return whole
    digest = hashlib.sha256(artifact.card.target.encode()).hexdigest()[:6]
    return f"{whole[: DEFAULT_NAME_CHARS - 7].rstrip('-')}-{digest}"


def dns_name(text: str) -> str:
    """A DNS-1123 label from any text: lower case, dashes, at most 63 characters."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    if not label:
        raise ConfigError(f"{text!r} gives no usable Kubernetes name; pass --name")
    return label


def _image(options: ManifestOptions) -> str:
    if options.digest and "@" not in options.image:
        return f"{options.image.rsplit(':', 1)[0] if ':' in options.image.rsplit('/', 1)[-1] else options.image}@{options.digest}"
    return options.image


# A default name's length: 63 (a DNS label) less room for what is added to it (a canary's
# `-` and 12-character version; KServe's `-predictor-00001`).
DEFAULT_NAME_CHARS = 47
KEYS_DIR = "/etc/tabship/api-keys"
KEYS_ITEM = "api-keys"
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _check_log(options: ManifestOptions) -> None:
    if options.log_db_secret is not None and not DNS_LABEL.fullmatch(options.log_db_secret):
        raise ConfigError(
            f"--log-db-secret {options.log_db_secret!r} is not a Secret name "
            "(lower-case letters, digits and '-', at most 63)"
        )
    if options.log_db_secret and options.log_sqlite:
        raise ConfigError("--log-db-secret and --log-sqlite exclude each other; choose one")
    if not 1 <= options.log_db_port <= 65535:
        raise ConfigError(f"--log-db-port {options.log_db_port} is not a TCP port")


def _check(options: ManifestOptions) -> None:
    _check_log(options)
    if options.name is not None and not DNS_LABEL.fullmatch(options.name):
        # Rewritten silently before (`a"b`, `a: b` and `a\nb` all became `a-b`, two names
        # one object): said, with the name it would have been.
        suggestion = re.sub(r"[^a-z0-9]+", "-", options.name.lower()).strip("-")[:63].strip("-")
        raise ConfigError(
            f"--name {options.name[:80]!r} is not a Kubernetes name (lower-case letters, digits "
            "and '-', at most 63, a letter or digit at each end)"
            + (f"; e.g. --name {suggestion}" if suggestion else "")
        )
    if options.namespace is not None and not DNS_LABEL.fullmatch(options.namespace):
        raise ConfigError(
            f"--namespace {options.namespace!r} is not a Kubernetes namespace name "
            "(lower-case letters, digits and '-', at most 63)"
        )
    if options.api_keys_secret is not None and not DNS_SUBDOMAIN.fullmatch(options.api_keys_secret):
        raise ConfigError(
            f"--api-keys-secret {options.api_keys_secret!r} is not a Secret name "
            "(lower-case letters, digits, '-' and '.')"
        )
    if not IMAGE_REFERENCE.fullmatch(options.image):
        raise ConfigError(
            f"--image {options.image!r} is not an image reference such as registry/name:tag"
        )
    _check_resources(options)


def _check_resources(options: ManifestOptions) -> None:
    if not 1 <= options.min_replicas <= options.max_replicas:
        raise ConfigError(
            f"--min-replicas {options.min_replicas} and --max-replicas {options.max_replicas}: need 1 <= min <= max"
        )
    if not 1 <= options.cpu_target <= 100:
        raise ConfigError(f"--cpu-target {options.cpu_target} must be a percentage from 1 to 100")
    if options.max_replicas > MAX_REPLICAS:
        raise ConfigError(f"--max-replicas {options.max_replicas} is over {MAX_REPLICAS}")
    if not re.fullmatch(r"\d+(\.\d+)?m?", options.cpu) or not float(options.cpu.rstrip("m")):
        raise ConfigError(f"--cpu {options.cpu!r} is not a CPU quantity above 0 such as 250m or 1")
    if not re.fullmatch(r"\d+(Ki|Mi|Gi|K|M|G)?", options.memory):
        raise ConfigError(f"--memory {options.memory!r} is not a memory quantity such as 512Mi")
    if memory_bytes(options.memory) < MIN_MEMORY:
        # 0 reads as no limit at all, 512 as 512 bytes: neither runs the server.
        raise ConfigError(f"--memory {options.memory!r} is under 64Mi; the server needs more")


def memory_bytes(quantity: str) -> int:
    """A checked memory quantity (digits and an optional unit) in bytes."""
    digits = quantity.rstrip("KMGi")
    return int(digits) * _MEMORY_UNITS[quantity[len(digits) :]]


# An HPA's maxReplicas is an int32.
MAX_REPLICAS = 2**31 - 1
MIN_MEMORY = 64 * 2**20
_MEMORY_UNITS = {
    "": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
}

_VERSION = re.compile(r"[a-z0-9]([a-z0-9.-]{0,18}[a-z0-9])?")


def model_version(artifact: Artifact, version: str | None = None) -> str:
    """A model's version: `version` (a short Kubernetes-name-safe word), else its sha256[:12]."""
    if version is None:
        return artifact.sha256[:12]
    if not _VERSION.fullmatch(version):
        raise ConfigError(
            f"--version {version!r} must be 1-20 lower-case letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return version


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
    _check(options)
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
