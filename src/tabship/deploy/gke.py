"""Deploy plans: GKE (the tutorial's steps 3-10 on today's GCP) and any cluster kubectl reaches.

A plan is a list of steps, each an argument list (with an optional check that skips it when
its resource exists), so `--dry-run` prints exactly what a real run executes.
"""

from __future__ import annotations

import re
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tabship.artifact import Artifact
from tabship.container import ImageOptions, build_image, check_builder
from tabship.deploy.canary import CanaryOptions
from tabship.deploy.manifest_options import ManifestOptions, app_name, model_version
from tabship.deploy.manifests import render_manifests, to_yaml, write_manifests
from tabship.errors import ConfigError, TabshipError
from tabship.runner import Runner, ToolError

if TYPE_CHECKING:
    from tabship.deploy.batch_job import BatchJobOptions

EXTERNAL_IP_TRIES = 60
# A Standard cluster's node pool: GKE's limit per zone.
MAX_NODES = 1000
# Names gcloud takes, and how a refusal describes them.
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+(-[a-z])?")
_CLUSTER = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
_REPOSITORY = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
EXTERNAL_IP_WAIT_SECONDS = 5.0


@dataclass
class Step:
    """One step: skipped when `check` succeeds; `command` runs, or `work` does it in-process."""

    title: str
    command: list[str]
    check: list[str] | None = None
    work: Callable[[], None] | None = None
    capture: Callable[[str], None] | None = None
    # What a dry run prints besides the command (the manifests a step would write).
    show: Callable[[], str] | None = None


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


@dataclass
class DeployState:
    """What earlier steps learned for later ones."""

    digest: str | None = None
    external_ip: str = ""


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


def _rollout_steps(
    kubectl: list[str],
    name: str,
    directory: Path,
    state: DeployState,
    runner: Runner,
    namespace: str | None,
) -> list[Step]:
    ns = ["--namespace", namespace] if namespace else []

    def wait_for_ip() -> None:
        for _ in range(EXTERNAL_IP_TRIES):
            result = runner.run(
                [
                    *kubectl,
                    "get",
                    "service",
                    name,
                    *ns,
                    "--output",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ],
                step="read the Service's external IP",
            )
            state.external_ip = result.stdout.strip()
            if state.external_ip:
                return
            time.sleep(EXTERNAL_IP_WAIT_SECONDS)
        raise ToolError(
            f"the Service {name} got no external IP in {EXTERNAL_IP_TRIES * EXTERNAL_IP_WAIT_SECONDS:.0f} s; see `kubectl describe service {name}`"
        )

    return [
        Step("apply the manifests", [*kubectl, "apply", "--kustomize", str(directory)]),
        Step(
            "wait for the rollout",
            [*kubectl, "rollout", "status", f"deployment/{name}", *ns, "--timeout", "600s"],
        ),
        Step(
            "wait for the external IP",
            [
                *kubectl,
                "get",
                "service",
                name,
                *ns,
                "--output",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
            work=wait_for_ip,
        ),
    ]


def _manifest_step(
    artifact: Artifact,
    image: Callable[[], str],
    directory: Path,
    name: str,
    namespace: str | None,
    extra: dict[str, object],
) -> Step:
    def options() -> ManifestOptions:
        return ManifestOptions(image=image(), name=name, namespace=namespace, **extra)  # type: ignore[arg-type]

    def write() -> None:
        write_manifests(artifact, options(), directory, force=True)

    def show() -> str:
        return "---\n".join(to_yaml(obj) for obj in render_manifests(artifact, options()))

    return Step(
        "write the Kubernetes manifests",
        ["tabship", "manifests", str(artifact.directory), "--image", "IMAGE", "-o", str(directory)],
        work=write,
        show=show,
    )


def manifests_scratch(runner: Runner) -> Path:
    """A new private folder for the manifests a deploy applies; for a dry run only its
    name (a dry run runs nothing, and left an empty folder behind each time)."""
    if runner.dry_run:
        return Path(tempfile.gettempdir()) / "tabship-k8s-XXXXXXXX"
    return Path(tempfile.mkdtemp(prefix="tabship-k8s-"))


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
        return _workload_steps(
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


def _workload_steps(
    artifact: Artifact,
    image: Callable[[], str],
    directory: Path,
    name: str,
    namespace: str | None,
    extra: dict[str, object],
    how: tuple[list[str], DeployState, Runner, BatchJobOptions | None],
) -> list[Step]:
    """The server's manifests and rollout, or with --batch-job the scoring Job and its wait."""
    kubectl, state, runner, batch = how
    if batch is None:
        return [
            _manifest_step(artifact, image, directory, name, namespace, extra),
            *_rollout_steps(kubectl, name, directory, state, runner, namespace),
        ]
    from tabship.deploy.batch_job import plan_batch_steps

    options = ManifestOptions(image="IMAGE", name=name, namespace=namespace, **extra)  # type: ignore[arg-type]
    return plan_batch_steps(artifact, image, options, batch, directory, kubectl, runner)


def plan_k8s(
    artifact: Artifact,
    image: str,
    context: str | None,
    runner: Runner,
    state: DeployState,
    name: str | None = None,
    namespace: str | None = None,
    manifests_dir: Path | None = None,
    extra: dict[str, object] | None = None,
    canary: CanaryOptions | None = None,
    batch: BatchJobOptions | None = None,
) -> list[Step]:
    """`tabship deploy k8s`: manifests for an existing image, applied to the cluster kubectl reaches."""
    resolved = app_name(artifact, name)
    directory = manifests_dir or manifests_scratch(runner)
    kubectl = ["kubectl", *(["--context", context] if context else [])]
    if canary is not None:
        from tabship.deploy.rollout import canary_steps

        manifest = ManifestOptions(image=image, name=resolved, namespace=namespace, **(extra or {}))  # type: ignore[arg-type]
        return canary_steps(kubectl, artifact, lambda: image, directory, manifest, canary, runner)
    return _workload_steps(
        artifact,
        lambda: image,
        directory,
        resolved,
        namespace,
        extra or {},
        (kubectl, state, runner, batch),
    )


def apply_plan(steps: list[Step], runner: Runner, say: Callable[[str], None]) -> None:
    """Run the steps in order; skip those whose check passes; stop at the first failure with advice."""
    total = len(steps)
    for number, step in enumerate(steps, start=1):
        label = f"[{number}/{total}] {step.title}"
        if runner.dry_run:
            say(label)
            if step.check:
                say("    skip if this succeeds: " + shlex.join(step.check))
            say("    " + shlex.join(step.command))
            if step.show is not None:
                say(step.show())
            continue
        try:
            if step.check and runner.run(step.check, step=step.title, check=False).returncode == 0:
                say(f"{label}: exists, skipped")
                continue
            say(label)
            if step.work is not None:
                step.work()
            elif step.capture is not None:
                # Only a hint for later steps (the digest): without it they use the tag.
                result = runner.run(step.command, step=step.title, check=False)
                step.capture(result.stdout if result.returncode == 0 else "")
            else:
                runner.run(step.command, step=step.title)
        except TabshipError as exc:
            raise ToolError(
                f"step {number}/{total} ({step.title}) failed: {exc}. Fix the cause and run the same command again: finished steps are skipped"
            ) from None
