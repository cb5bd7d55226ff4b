"""Batch scoring as a Kubernetes Indexed Job: pod I of N runs `tabship predict ... --shards N`.

Rendered pure from the same Deployment the server gets, so the pods run with exactly its
image, service-account and security settings; Kubernetes gives each pod its shard number in
JOB_COMPLETION_INDEX and retries a failed index on its own.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabship import __version__
from tabship.artifact import Artifact
from tabship.config import MAX_SHARDS
from tabship.deploy.manifest_options import ManifestOptions
from tabship.deploy.manifests import render_manifests, to_yaml
from tabship.errors import ConfigError, OutputExistsError

MODEL_PATH = "/opt/app/model"
# Finished Jobs and their pods are removed after a day, their logs read by then.
TTL_SECONDS = 86_400
BATCH_FILES = {
    "ServiceAccount": "batch-serviceaccount.yaml",
    "NetworkPolicy": "batch-networkpolicy.yaml",
    "Job": "batch-job.yaml",
}


@dataclass(frozen=True)
class BatchJobOptions:
    """What `tabship manifests --batch-job INPUT OUTPUT --shards N` was asked for."""

    source: str
    output: str
    shards: int
    parallelism: int | None = None
    retries: int = 2
    max_failed_shards: int = 0
    output_format: str = "parquet"
    scratch: str = "2Gi"


def _check(options: BatchJobOptions) -> None:
    if not 1 <= options.shards <= MAX_SHARDS:
        raise ConfigError(f"--shards {options.shards} must be from 1 to {MAX_SHARDS}")
    if options.parallelism is not None and not 1 <= options.parallelism <= options.shards:
        raise ConfigError(f"--parallelism {options.parallelism} must be from 1 to --shards")
    if not 0 <= options.retries <= 10:
        raise ConfigError(f"--retries {options.retries} must be from 0 to 10")
    if not 0 <= options.max_failed_shards <= options.shards:
        raise ConfigError(f"--max-failed-shards {options.max_failed_shards} must be 0 to --shards")
    if options.output_format not in ("parquet", "csv"):
        raise ConfigError(f"--format {options.output_format!r} is not parquet or csv")
    for what, text in (("INPUT", options.source), ("OUTPUT", options.output)):
        # The pod's `tabship predict` reads them as arguments: one starting with '-' would be
        # read as an option of its own.
        if not text.strip() or text.startswith("-") or any(ch in text for ch in "\n\r\x00"):
            raise ConfigError(
                f"--batch-job {what} {text[:80]!r} must be a path or URL on one line, not "
                "starting with '-', e.g. gs://bucket/in/"
            )


def command(options: BatchJobOptions) -> list[str]:
    """The container's command: the image's tabship scoring its shard of INPUT into OUTPUT."""
    return [
        "/opt/venv/bin/python",
        "-m",
        "tabship",
        "predict",
        MODEL_PATH,
        options.source,
        "--output",
        options.output,
        "--shards",
        str(options.shards),
        "--format",
        options.output_format,
        # A retried index replaces what an earlier attempt of it may have finished.
        "--force",
    ]


def render_batch_job(
    artifact: Artifact, options: ManifestOptions, batch: BatchJobOptions
) -> list[dict[str, Any]]:
    """ServiceAccount, NetworkPolicy and the Indexed Job for one model."""
    _check(batch)
    serving = {o["kind"]: o for o in render_manifests(artifact, options)}
    deployment = serving["Deployment"]
    name = _job_name(artifact, options)
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    labels = {
        **deployment["metadata"]["labels"],
        **selector,
        "app.kubernetes.io/component": "batch",
    }
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if options.namespace:
        metadata["namespace"] = options.namespace
    pod = copy.deepcopy(deployment["spec"]["template"]["spec"])
    served = pod["containers"][0]
    container = {
        "name": "batch",
        "image": served["image"],
        "imagePullPolicy": served["imagePullPolicy"],
        "command": command(batch),
        "resources": served["resources"],
        "securityContext": served["securityContext"],
        "volumeMounts": served["volumeMounts"],
    }
    pod.update(
        serviceAccountName=name,
        restartPolicy="Never",
        containers=[container],
        # Remote output is written to /tmp first and uploaded whole: on disk, not in memory.
        volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": batch.scratch}}],
    )
    for key in ("topologySpreadConstraints", "terminationGracePeriodSeconds"):
        pod.pop(key, None)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **metadata,
            "annotations": {
                "tabship.io/model-sha256": artifact.sha256,
                "tabship.io/version": __version__,
                "tabship.io/input": batch.source,
                "tabship.io/output": batch.output,
            },
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": batch.shards,
            "parallelism": batch.parallelism or batch.shards,
            "backoffLimitPerIndex": batch.retries,
            "maxFailedIndexes": batch.max_failed_shards,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            # A replacement pod starts only once the old one is gone, so two attempts of one
            # shard never write its output at the same time.
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    # Preemption and eviction are not the shard's fault: they use no retry.
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    }
                ]
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"tabship.io/model-sha256": artifact.sha256},
                },
                "spec": pod,
            },
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata,
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata,
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                # Nothing calls a scoring pod; it calls DNS and the storage API (HTTPS) only.
                "ingress": [],
                "egress": [
                    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {"ports": [{"port": 443, "protocol": "TCP"}]},
                ],
            },
        },
        job,
    ]


def write_objects(
    objects: list[dict[str, Any]],
    files: dict[str, str],
    directory: Path,
    namespace: str | None,
    force: bool = False,
) -> list[Path]:
    """Objects as a kustomize folder, one file per kind; policy-checked before anything is written."""
    from tabship.deploy.policy import check_objects

    findings = check_objects(objects)
    if findings:
        raise ConfigError("the manifests break policy: " + "; ".join(str(f) for f in findings))
    targets = {files[obj["kind"]]: obj for obj in objects}
    existing = [n for n in [*targets, "kustomization.yaml"] if (directory / n).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{directory} already has {', '.join(existing)}; choose another -o or pass --force"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for filename, obj in targets.items():
        (directory / filename).write_text(to_yaml(obj))
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(targets),
    }
    if namespace:
        kustomization["namespace"] = namespace
    (directory / "kustomization.yaml").write_text(to_yaml(kustomization))
    return [*(directory / n for n in targets), directory / "kustomization.yaml"]


def plan_batch_steps(
    artifact: Artifact,
    image: Any,
    options: ManifestOptions,
    batch: BatchJobOptions,
    directory: Path,
    kubectl: list[str],
    runner: Any,
) -> list[Any]:
    """Steps that write, replace and run the Job, then wait for every shard (deploy --batch-job)."""
    import time
    from dataclasses import replace as with_changes

    from tabship.deploy.plan import Step
    from tabship.runner import ToolError

    probe = _job_name(artifact, options)
    ns = ["--namespace", options.namespace] if options.namespace else []

    def write() -> None:
        objects = render_batch_job(artifact, with_changes(options, image=image()), batch)
        write_objects(objects, BATCH_FILES, directory, options.namespace, force=True)

    def wait() -> None:
        while True:
            status = runner.run(
                [
                    *kubectl,
                    "get",
                    "job",
                    probe,
                    *ns,
                    "--output",
                    "jsonpath={.status.succeeded}/{.status.failed}/{.status.conditions[*].type}",
                ],
                step="read the Job's status",
            ).stdout.strip()
            if "Complete" in status or "SuccessCriteriaMet" in status:
                return
            if "Failed" in status:
                raise ToolError(
                    f"the Job {probe} failed ({status}); see `kubectl describe job {probe}` and "
                    "the failed shards' logs; their summaries name the rows at fault"
                )
            time.sleep(JOB_POLL_SECONDS)

    return [
        Step(
            "write the batch Job manifests",
            [
                "tabship",
                "manifests",
                str(artifact.directory),
                "--image",
                "IMAGE",
                "--batch-job",
                batch.source,
                batch.output,
                "--shards",
                str(batch.shards),
                "-o",
                str(directory),
            ],
            work=write,
        ),
        # A Job's pod template cannot change; a new run replaces the finished one.
        Step(
            "delete the previous run of the Job (if any)",
            [*kubectl, "delete", "job", probe, *ns, "--ignore-not-found", "--wait"],
        ),
        Step("apply the batch Job", [*kubectl, "apply", "--kustomize", str(directory)]),
        Step(
            "wait for every shard",
            [*kubectl, "wait", f"job/{probe}", *ns, "--for=condition=Complete", "--timeout=-1s"],
            work=wait,
        ),
    ]


JOB_POLL_SECONDS = 10.0


def _job_name(artifact: Artifact, options: ManifestOptions) -> str:
    from tabship.deploy.manifest_options import app_name

    base = app_name(artifact, options.name)
    return f"{base[:57].rstrip('-')}-batch"


def write_workload(
    artifact: Artifact,
    options: ManifestOptions,
    directory: Path,
    batch: BatchJobOptions | None,
    dask: tuple[int, str, str] | None,
    force: bool = False,
) -> list[Path]:
    """`tabship manifests --batch-job ...` and/or `--dask-cluster`: their folder, policy-checked."""
    from tabship.deploy.dask_cluster import DASK_FILES, DaskClusterOptions, render_dask_cluster

    if batch is not None and dask is not None:
        # Each writes a ServiceAccount and a NetworkPolicy of its own: two folders, two runs.
        raise ConfigError("write --batch-job and --dask-cluster to separate folders (two runs)")
    objects: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    if batch is not None:
        objects += render_batch_job(artifact, options, batch)
        files.update(BATCH_FILES)
    if dask is not None:
        workers, cpu, memory = dask
        objects += render_dask_cluster(artifact, options, DaskClusterOptions(workers, cpu, memory))
        files.update(DASK_FILES)
    return write_objects(objects, files, directory, options.namespace, force=force)
