"""Canary rollouts: a second Deployment for the new model version, a weighted Gateway API route.

The stable Deployment and its Service stay as they are. The canary is the same set of
objects rendered under `APP-VERSION` (its own Service, ClusterIP, so it gets traffic only
through the route), labelled `tabship.io/canary-of: APP` so promote and rollback find it.
A Gateway API `Gateway` and `HTTPRoute`, both named APP, split traffic between the two
Services by weight. On GKE the Gateway uses a GKE gateway class, and a HealthCheckPolicy per
Service points the load balancer's health check at /readyz (its default, `/`, may need a key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tabship.artifact import Artifact
from tabship.deploy.manifest_options import DNS_SUBDOMAIN, ManifestOptions, app_name, model_version
from tabship.deploy.manifests import render_manifests, to_yaml
from tabship.deploy.policy import check_objects
from tabship.errors import ConfigError, OutputExistsError

GATEWAY_API = "gateway.networking.k8s.io/v1"
CANARY_OF = "tabship.io/canary-of"
TRACK = "tabship.io/track"
# A global external Application Load Balancer: needs no proxy-only subnet in the region.
GKE_GATEWAY_CLASS = "gke-l7-global-external-managed"
CANARY_KINDS = (
    "deployment,service,horizontalpodautoscaler,poddisruptionbudget,networkpolicy,serviceaccount"
)


@dataclass(frozen=True)
class CanaryOptions:
    """What `--canary PERCENT` asked for."""

    percent: int
    gateway_class: str
    gke: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.percent <= 99:
            raise ConfigError(
                f"--canary {self.percent}: give the canary's share of traffic, 1 to 99 percent"
            )


def canary_options(percent: int, gateway_class: str | None, gke: bool) -> CanaryOptions:
    """The canary's options from the command line; GKE has a default gateway class."""
    if gateway_class is None and not gke:
        raise ConfigError(
            "--canary needs --gateway-class: the GatewayClass your cluster's Gateway API "
            "implementation installed (kubectl get gatewayclass)"
        )
    if gateway_class is not None and not DNS_SUBDOMAIN.fullmatch(gateway_class):
        # '' silently meant GKE's class; other odd names reached gatewayClassName.
        raise ConfigError(
            f"--gateway-class {gateway_class[:80]!r} is not a GatewayClass name (lower-case "
            "letters, digits, '-' and '.'; kubectl get gatewayclass lists them)"
        )
    return CanaryOptions(percent, gateway_class or GKE_GATEWAY_CLASS, gke)


def canary_name(app: str, version: str) -> str:
    """The canary's object name: APP-VERSION, within Kubernetes' 63 characters."""
    name = f"{app}-{version}"
    if len(name) > 63:
        raise ConfigError(f"{name!r} is over 63 characters; pass a shorter --name or --version")
    return name


def _rename_app(node: Any, canary: str, app: str) -> None:
    """Label the canary's objects and selectors as part of APP (the instance stays APP-VERSION).

    The selectors then still differ from the stable side's by instance, so neither
    Deployment nor Service ever picks the other's pods.
    """
    if isinstance(node, dict):
        if node.get("app.kubernetes.io/name") == canary:
            node["app.kubernetes.io/name"] = app
        for value in node.values():
            _rename_app(value, canary, app)
    elif isinstance(node, list):
        for value in node:
            _rename_app(value, canary, app)


def _mark(obj: dict[str, Any], app: str) -> None:
    labels = obj["metadata"].setdefault("labels", {})
    obj["metadata"]["labels"] = {**labels, CANARY_OF: app, TRACK: "canary"}


def render_route(app: str, canary: str, percent: int, namespace: str | None) -> dict[str, Any]:
    """The HTTPRoute splitting APP's traffic: 100 - percent to stable, percent to the canary."""
    metadata: dict[str, Any] = {"name": app, "labels": _labels(app)}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": metadata,
        "spec": {
            "parentRefs": [{"name": app}],
            "rules": [{"backendRefs": backends(app, canary, 100 - percent, percent)}],
        },
    }


def backends(app: str, canary: str | None, stable: int, share: int) -> list[dict[str, Any]]:
    """The route's backends with their weights (the canary left out when it has none)."""
    refs = [{"name": app, "port": 80, "weight": stable}]
    if canary is not None:
        refs.append({"name": canary, "port": 80, "weight": share})
    return refs


def _labels(app: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "tabship",
        "app.kubernetes.io/managed-by": "tabship",
    }


def _gateway(app: str, gateway_class: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": app, "labels": _labels(app)}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": metadata,
        "spec": {
            "gatewayClassName": gateway_class,
            "listeners": [
                {
                    "name": "http",
                    "protocol": "HTTP",
                    "port": 80,
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }


def _health_check(service: str, namespace: str | None, canary_of: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": service, "labels": _labels(service)}
    if canary_of:
        metadata["labels"] = {**metadata["labels"], CANARY_OF: canary_of, TRACK: "canary"}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "networking.gke.io/v1",
        "kind": "HealthCheckPolicy",
        "metadata": metadata,
        "spec": {
            "default": {
                "config": {
                    "type": "HTTP",
                    "httpHealthCheck": {"port": 8080, "requestPath": "/readyz"},
                }
            },
            "targetRef": {"group": "", "kind": "Service", "name": service},
        },
    }


def render_canary(
    artifact: Artifact, options: ManifestOptions, canary: CanaryOptions
) -> list[dict[str, Any]]:
    """The canary's objects, the Gateway and the weighted HTTPRoute (and GKE health checks)."""
    app = app_name(artifact, options.name)
    version = model_version(artifact, options.version)
    name = canary_name(app, version)
    objects = render_manifests(artifact, replace(options, name=name, version=version))
    _rename_app(objects, name, app)
    for obj in objects:
        _mark(obj, app)
        if obj["kind"] == "Deployment":
            _mark(obj["spec"]["template"], app)
        if obj["kind"] == "Service":
            obj["spec"]["type"] = "ClusterIP"  # reached through the route only
    objects += [
        _gateway(app, canary.gateway_class, options.namespace),
        render_route(app, name, canary.percent, options.namespace),
    ]
    if canary.gke:
        objects += [
            _health_check(app, options.namespace, None),
            _health_check(name, options.namespace, app),
        ]
    return objects


def write_canary(
    artifact: Artifact,
    options: ManifestOptions,
    canary: CanaryOptions,
    directory: Path,
    force: bool = False,
) -> list[Path]:
    """Render, refuse what breaks the policy, and write a kustomize folder of the canary."""
    objects = render_canary(artifact, options, canary)
    findings = check_objects(objects)
    if findings:
        raise ConfigError("the canary breaks policy: " + "; ".join(map(str, findings)))
    files = {f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml": obj for obj in objects}
    taken = [name for name in [*files, "kustomization.yaml"] if (directory / name).exists()]
    if taken and not force:
        raise OutputExistsError(f"{directory} already has {', '.join(taken)}; pass --force")
    directory.mkdir(parents=True, exist_ok=True)
    for filename, obj in files.items():
        (directory / filename).write_text(to_yaml(obj))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    (directory / "kustomization.yaml").write_text(to_yaml(kustomization))
    return [directory / name for name in [*files, "kustomization.yaml"]]


def render_all(artifact: Artifact, options: ManifestOptions, canary: CanaryOptions) -> str:
    """Every canary object as one YAML stream: what a dry run shows."""
    return "---\n".join(to_yaml(obj) for obj in render_canary(artifact, options, canary))


def record_entry(action: str, detail: dict[str, Any]) -> tuple[str, str]:
    """A ConfigMap key (UTC time and action) and its JSON value for the rollout record."""
    now = datetime.now(UTC)
    key = f"{now.strftime('%Y%m%dT%H%M%S')}{now.microsecond // 1000:03d}Z-{action}"
    value = json.dumps({"at": now.isoformat(timespec="seconds"), "action": action, **detail})
    return key, value
