"""KServe objects for a model (pure): an InferenceService on a ServingRuntime that speaks v2.

KServe finds the container for `predictor.model` in a ServingRuntime that supports the
model's format and protocol; this one runs the tabship image, which serves the Open Inference
Protocol under /v2 with the model name set to the InferenceService's (KServe routes
/v2/models/NAME/infer by that name). RawDeployment mode gives a plain Deployment and an HPA
on CPU, so the pod is the one `render_manifests` makes: the same security context, probes,
resources, grace period and /tmp volume.
"""

from __future__ import annotations

from typing import Any

from tabship.artifact import Artifact
from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import render_manifests
from tabship.errors import ConfigError

MODEL_FORMAT = "tabship"
KSERVE_CONTAINER = "kserve-container"
# Fields of the model's container the InferenceService repeats: KServe's webhook fills empty
# resources with its own defaults, which would replace the runtime's in the merged pod.
REPEATED = ("resources",)


def render_kserve(artifact: Artifact, options: ManifestOptions) -> list[dict[str, Any]]:
    """ServiceAccount, ServingRuntime and InferenceService (v1beta1, protocolVersion v2)."""
    plain = render_manifests(artifact, options)
    by_kind = {obj["kind"]: obj for obj in plain}
    deployment = by_kind["Deployment"]
    metadata = deployment["metadata"]
    name = metadata["name"]
    if not name[0].isalpha():
        raise ConfigError(f"--name {name!r}: an InferenceService name must start with a letter")
    pod = deployment["spec"]["template"]["spec"]
    container = dict(pod["containers"][0])
    container["name"] = KSERVE_CONTAINER
    container["env"] = [*container["env"], {"name": "TABSHIP_MODEL_NAME", "value": name}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {k: v for k, v in metadata.items() if k != "annotations"},
        "spec": {
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2"],
            "containers": [container],
            "volumes": pod["volumes"],
        },
    }
    model: dict[str, Any] = {
        "modelFormat": {"name": MODEL_FORMAT, "version": "1"},
        "runtime": name,
        "protocolVersion": "v2",
        **{key: container[key] for key in REPEATED},
    }
    predictor = {
        "minReplicas": options.min_replicas,
        "maxReplicas": options.max_replicas,
        "scaleMetric": "cpu",
        "scaleTarget": options.cpu_target,
        "labels": labels,
        "annotations": deployment["spec"]["template"]["metadata"]["annotations"],
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": pod["terminationGracePeriodSeconds"],
        "securityContext": pod["securityContext"],
        "topologySpreadConstraints": pod["topologySpreadConstraints"],
        "model": model,
    }
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            **metadata,
            "annotations": {
                **metadata["annotations"],
                # A plain Deployment and HPA, no Knative: the probes and grace period hold as written.
                "serving.kserve.io/deploymentMode": "RawDeployment",
                "serving.kserve.io/autoscalerClass": "hpa",
            },
        },
        "spec": {"predictor": predictor},
    }
    return [by_kind["ServiceAccount"], runtime, service]
