"""The GKE deploy plan: the tutorial's steps 3-10 on today's GCP.

Artifact Registry, the image built and pushed, the cluster, then the manifests and rollout
steps every cluster gets (plan.py, whose steps and runner these are).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tabship.artifact import Artifact
from tabship.container import ImageOptions, build_image, check_builder
from tabship.deploy.canary import CanaryOptions
from tabship.deploy.manifest_options import ManifestOptions, app_name, model_version
from tabship.deploy.plan import DeployState, Step, manifests_scratch, workload_steps
from tabship.errors import ConfigError
from tabship.runner import Runner

if TYPE_CHECKING:
    from tabship.deploy.batch_job import BatchJobOptions

# A Standard cluster's node pool: GKE's limit per zone.
MAX_NODES = 1000
# Names gcloud takes, and how a refusal describes them.
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+(-[a-z])?")
_CLUSTER = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
_REPOSITORY = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class GkeOptions:
    """What `tabship deploy gke` was asked for."""

    project: str
    region: str
    cluster: str = "tabship"
    repository: str = "tabship"
    nodes: int | None = None
    builder: str = "docker"
    name: str | None = None
    namespace: str | None = None
    manifests_dir: Path | None = None
    wheelhouse: Path | None = None
    manifest_options: dict[str, object] = field(default_factory=dict)
    version: str | None = None
    canary: CanaryOptions | None = None
    # --batch-job: run the scoring Job instead of rolling out the server.
    batch: BatchJobOptions | None = None

    def __post_init__(self) -> None:
        """Refuse what gcloud would refuse only after earlier steps changed the project (an
        empty --project, -1 nodes), and say which flag: a bad project or region surfaced as
        a bad --image, which `deploy gke` has no flag for."""
        for flag, value, pattern, what in (
            ("--project", self.project, _PROJECT, "a Google Cloud project ID (6-30 characters)"),
            ("--region", self.region, _REGION, "a region or zone such as europe-west1"),
            ("--cluster", self.cluster, _CLUSTER, "a GKE cluster name (at most 40 characters)"),
            ("--repository", self.repository, _REPOSITORY, "an Artifact Registry repository"),
        ):
            if not pattern.fullmatch(value):
                raise ConfigError(
                    f"{flag} {value[:80]!r} is not {what}: lower-case letters, digits and '-'"
                )
        if self.nodes is not None and not 1 <= self.nodes <= MAX_NODES:
            raise ConfigError(f"--nodes {self.nodes} must be from 1 to {MAX_NODES}")


def registry_host(region: str) -> str:
    """Artifact Registry's Docker host for a region (gcr.io no longer takes pushes)."""
    return f"{region}-docker.pkg.dev"


def gke_image(artifact: Artifact, options: GkeOptions, name: str) -> str:
    """REGION-docker.pkg.dev/PROJECT/REPOSITORY/NAME:TAG, tagged with the model's sha256 prefix."""
    tag = model_version(artifact, options.version)
    return f"{registry_host(options.region)}/{options.project}/{options.repository}/{name}:{tag}"


def _cluster_steps(options: GkeOptions) -> list[Step]:
    where = ["--location", options.region, "--project", options.project]
    if options.nodes is None:
        create = ["gcloud", "container", "clusters", "create-auto", options.cluster, *where]
    else:
        create = [
            "gcloud",
            "container",
            "clusters",
            "create",
            options.cluster,
            "--num-nodes",
            str(options.nodes),
            *where,
        ]
    return [
        Step(
            "create the GKE cluster (if missing)",
            create,
            check=["gcloud", "container", "clusters", "describe", options.cluster, *where],
        ),
        Step(
            "get cluster credentials for kubectl",
            ["gcloud", "container", "clusters", "get-credentials", options.cluster, *where],
        ),
    ]


def plan_gke(
    artifact: Artifact, options: GkeOptions, runner: Runner, state: DeployState
) -> list[Step]:
    """Every step of `tabship deploy gke`, in order."""
    name = app_name(artifact, options.name)
    image = gke_image(artifact, options, name)
    directory = options.manifests_dir or manifests_scratch(runner)
    where = ["--location", options.region, "--project", options.project]
    builder = check_builder(options.builder)

    def build() -> None:
        build_image(
            artifact.directory,
            ImageOptions(tag=image, builder=builder, wheelhouse=options.wheelhouse),
            runner,
            (options.wheelhouse or directory / "wheels"),
        )

    def remember_digest(out: str) -> None:
        digest = out.strip().rsplit("@", 1)[-1]
        state.digest = digest if digest.startswith("sha256:") else None

    def image_ref() -> str:
        return f"{image.rsplit(':', 1)[0]}@{state.digest}" if state.digest else image

    in_registry = [
        "gcloud",
        "artifacts",
        "docker",
        "images",
        "describe",
        image,
        "--project",
        options.project,
    ]
    inspect = [
        builder,
        "image",
        "inspect",
        "--format",
        "{{.Digest}}" if builder == "podman" else "{{index .RepoDigests 0}}",
        image,
    ]
    return [
        Step(
            "enable the Artifact Registry and GKE APIs",
            [
                "gcloud",
                "services",
                "enable",
                "artifactregistry.googleapis.com",
                "container.googleapis.com",
                "--project",
                options.project,
            ],
        ),
        Step(
            "create the Artifact Registry repository (if missing)",
            [
                "gcloud",
                "artifacts",
                "repositories",
                "create",
                options.repository,
                "--repository-format",
                "docker",
                *where,
            ],
            check=["gcloud", "artifacts", "repositories", "describe", options.repository, *where],
        ),
        Step(
            "let the container builder push there",
            ["gcloud", "auth", "configure-docker", registry_host(options.region), "--quiet"],
        ),
        Step(
            "build the image (if this model's tag is not in the registry)",
            ["tabship", "build", str(artifact.directory), "--tag", image, "--builder", builder],
            check=in_registry,
            work=build,
        ),
        Step(
            "push the image",
            [builder, "push", image],
            check=in_registry,
        ),
        Step("read the image digest", inspect, capture=remember_digest),
        *_cluster_steps(options),
        *_gke_tail(artifact, options, image_ref, directory, name, state, runner),
    ]


def _gke_tail(
    artifact: Artifact,
    options: GkeOptions,
    image: Callable[[], str],
    directory: Path,
    name: str,
    state: DeployState,
    runner: Runner,
) -> list[Step]:
    """The manifests and the rollout: the whole app, or a canary beside the stable side."""
    from tabship.deploy.rollout import canary_steps

    if options.canary is None:
        return workload_steps(
            artifact,
            image,
            directory,
            name,
            options.namespace,
            options.manifest_options,
            (["kubectl"], state, runner, options.batch),
        )
    where = ["--location", options.region, "--project", options.project]
    manifest = ManifestOptions(
        image="IMAGE",
        name=name,
        namespace=options.namespace,
        **options.manifest_options,  # type: ignore[arg-type]
    )
    return [
        Step(
            "enable the Gateway API on the cluster (GKE's gateway classes)",
            [
                "gcloud",
                "container",
                "clusters",
                "update",
                options.cluster,
                "--gateway-api=standard",
                *where,
            ],
        ),
        *canary_steps(["kubectl"], artifact, image, directory, manifest, options.canary, runner),
    ]
