"""Deploy plans: a list of steps, each an argument list, run in order by `apply_plan`.

A step may have a check that skips it when its resource exists, so `--dry-run` prints exactly
what a real run executes. The plan for any cluster kubectl reaches is here (`plan_k8s`); GKE's
adds its registry, image and cluster steps before the same ones (gke.py).
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tabship.artifact import Artifact
from tabship.deploy.canary import CanaryOptions
from tabship.deploy.manifest_options import ManifestOptions, app_name
from tabship.deploy.manifests import render_manifests, to_yaml, write_manifests
from tabship.errors import TabshipError
from tabship.runner import Runner, ToolError

if TYPE_CHECKING:
    from tabship.deploy.batch_job import BatchJobOptions


EXTERNAL_IP_TRIES = 60
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


@dataclass
class DeployState:
    """What earlier steps learned for later ones."""

    digest: str | None = None
    external_ip: str = ""


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


def workload_steps(
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
    return workload_steps(
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
