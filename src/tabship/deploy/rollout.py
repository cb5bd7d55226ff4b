"""Plans that replace a served model: add a canary, then promote it or roll it back.

Each is a list of steps run by `apply_plan`, so `--dry-run` prints every command (and the
manifests) and a real run does exactly that. Every promote and rollback, like every canary,
is written into the ConfigMap `APP-rollouts`: one key per event (UTC time and action), a
JSON value saying which version, image and weights, so the cluster keeps what ran when.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tabship.artifact import Artifact
from tabship.deploy.canary import (
    CANARY_KINDS,
    CANARY_OF,
    CanaryOptions,
    backends,
    canary_name,
    record_entry,
    render_all,
    write_canary,
)
from tabship.deploy.manifest_options import DNS_LABEL, ManifestOptions, app_name, model_version
from tabship.deploy.plan import Step
from tabship.errors import ConfigError
from tabship.runner import Runner, ToolError


def canary_steps(
    kubectl: list[str],
    artifact: Artifact,
    image: Callable[[], str],
    directory: Path,
    options: ManifestOptions,
    canary: CanaryOptions,
    runner: Runner,
) -> list[Step]:
    """Write and apply the canary beside the running stable side, wait for it, record it."""
    app = app_name(artifact, options.name)
    version = model_version(artifact, options.version)
    name = canary_name(app, version)
    ns = ["--namespace", options.namespace] if options.namespace else []
    record = f"{app}-rollouts"

    def resolved() -> ManifestOptions:
        return replace(options, image=image())

    def write() -> None:
        write_canary(artifact, resolved(), canary, directory, force=True)

    def detail() -> dict[str, object]:
        return {
            "version": version,
            "image": image(),
            "weights": {app: 100 - canary.percent, name: canary.percent},
        }

    def record_command(key: str, value: str) -> list[str]:
        patch = json.dumps({"data": {key: value}})
        return [*kubectl, "patch", "configmap", record, *ns, "--type", "merge", "--patch", patch]

    def remember() -> None:
        runner.run(record_command(*record_entry("canary", detail())), step="record the rollout")

    return [
        Step(
            f"write the canary manifests ({canary.percent}% to {name})",
            [
                "tabship",
                "manifests",
                str(artifact.directory),
                "--canary",
                str(canary.percent),
                "-o",
                str(directory),
            ],
            work=write,
            show=lambda: render_all(artifact, resolved(), canary),
        ),
        Step(
            "create the rollout record (if missing)",
            [*kubectl, "create", "configmap", record, *ns],
            check=[*kubectl, "get", "configmap", record, *ns],
        ),
        Step("apply the canary and the route", [*kubectl, "apply", "--kustomize", str(directory)]),
        Step(
            "wait for the canary's rollout",
            [*kubectl, "rollout", "status", f"deployment/{name}", *ns, "--timeout", "600s"],
        ),
        Step(
            "record the rollout",
            record_command("UTC_TIME-canary", json.dumps({"action": "canary", **detail()})),
            work=remember,
        ),
    ]


def _discard(_: object) -> None:
    """A step's work returns nothing; the runner has already checked the exit status."""


@dataclass
class Found:
    """The running canary, read from the cluster by the first step."""

    name: str = "APP-VERSION"
    image: str = "CANARY_IMAGE"
    version: str = "VERSION"
    sha256: str = ""


def _read_canary(app: str, found: Found) -> Callable[[str], None]:
    def read(out: str) -> None:
        items = json.loads(out or "{}").get("items", [])
        if len(items) != 1:
            raise ToolError(
                f"{len(items)} Deployments are labelled {CANARY_OF}={app}; expected one canary "
                f"(start one with `tabship deploy k8s MODEL --canary PERCENT`)"
            )
        deployment: dict[str, Any] = items[0]
        meta = deployment["metadata"]
        found.name = meta["name"]
        found.version = meta.get("labels", {}).get("app.kubernetes.io/version", "")
        found.sha256 = meta.get("annotations", {}).get("tabship.io/model-sha256", "")
        found.image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]

    return read


@dataclass(frozen=True)
class RolloutTarget:
    """Which app, where, with which kubectl."""

    app: str
    namespace: str | None = None
    context: str | None = None
    gke: bool = False

    def __post_init__(self) -> None:
        """The names go into label selectors and patch targets: a name that is not one
        (`x,app!=y`) would select other objects."""
        for flag, value in (("APP_NAME", self.app), ("--namespace", self.namespace)):
            if value is not None and not DNS_LABEL.fullmatch(value):
                raise ConfigError(
                    f"{flag} {value[:80]!r} is not a Kubernetes name (lower-case letters, "
                    "digits and '-', at most 63)"
                )
        if self.context is not None and not self.context.strip():
            raise ConfigError("--context is empty; leave it out to use kubectl's current context")

    @property
    def kubectl(self) -> list[str]:
        """kubectl with the context, if one was given."""
        return ["kubectl", *(["--context", self.context] if self.context else [])]

    @property
    def ns(self) -> list[str]:
        """The namespace flag, if one was given."""
        return ["--namespace", self.namespace] if self.namespace else []


def _route_patch(
    target: RolloutTarget, refs: Callable[[], list[dict[str, Any]]], title: str, runner: Runner
) -> Step:
    def command() -> list[str]:
        patch = json.dumps({"spec": {"rules": [{"backendRefs": refs()}]}})
        return [
            *target.kubectl,
            "patch",
            "httproute",
            target.app,
            *target.ns,
            "--type",
            "merge",
            "--patch",
            patch,
        ]

    return Step(title, command(), work=lambda: _discard(runner.run(command(), step=title)))


def _common_head(target: RolloutTarget, found: Found) -> Step:
    return Step(
        f"find the canary of {target.app}",
        [
            *target.kubectl,
            "get",
            "deployments",
            *target.ns,
            "--selector",
            f"{CANARY_OF}={target.app}",
            "--output",
            "json",
        ],
        capture=_read_canary(target.app, found),
    )


def _common_tail(target: RolloutTarget, found: Found, action: str, runner: Runner) -> list[Step]:
    kinds = CANARY_KINDS + (",healthcheckpolicies.networking.gke.io" if target.gke else "")
    record = f"{target.app}-rollouts"

    def remember() -> None:
        key, value = record_entry(
            action, {"version": found.version, "image": found.image, "canary": found.name}
        )
        patch = json.dumps({"data": {key: value}})
        command = [*target.kubectl, "patch", "configmap", record, *target.ns]
        runner.run([*command, "--type", "merge", "--patch", patch], step="record the rollout")

    return [
        Step(
            "remove the canary",
            [
                *target.kubectl,
                "delete",
                kinds,
                *target.ns,
                "--selector",
                f"{CANARY_OF}={target.app}",
            ],
        ),
        Step(
            "record the rollout",
            [
                *target.kubectl,
                "patch",
                "configmap",
                record,
                *target.ns,
                "--type",
                "merge",
                "--patch",
                json.dumps({"data": {f"UTC_TIME-{action}": "VERSION, IMAGE AND CANARY NAME"}}),
            ],
            work=remember,
        ),
    ]


def plan_rollback(target: RolloutTarget, runner: Runner) -> list[Step]:
    """All traffic back to the stable side, the canary removed, the event recorded."""
    found = Found()
    return [
        _common_head(target, found),
        _route_patch(
            target,
            lambda: backends(target.app, None, 100, 0),
            "send all traffic to the stable side",
            runner,
        ),
        *_common_tail(target, found, "rollback", runner),
    ]


def plan_promote(target: RolloutTarget, runner: Runner) -> list[Step]:
    """All traffic to the canary, the stable Deployment moved to its model, back, canary removed."""
    found = Found()

    def stable_patch() -> list[str]:
        template = {
            "metadata": {
                "labels": {"app.kubernetes.io/version": found.version},
                "annotations": {"tabship.io/model-sha256": found.sha256},
            },
            "spec": {"containers": [{"name": "predictor", "image": found.image}]},
        }
        patch = {
            "metadata": template["metadata"],
            "spec": {"template": template},
        }
        return [
            *target.kubectl,
            "patch",
            "deployment",
            target.app,
            *target.ns,
            "--type",
            "strategic",
            "--patch",
            json.dumps(patch),
        ]

    title = "move the stable Deployment to the canary's model"
    return [
        _common_head(target, found),
        _route_patch(
            target,
            lambda: backends(target.app, found.name, 0, 100),
            "send all traffic to the canary",
            runner,
        ),
        Step(title, stable_patch(), work=lambda: _discard(runner.run(stable_patch(), step=title))),
        Step(
            "wait for the stable side's rollout",
            [
                *target.kubectl,
                "rollout",
                "status",
                f"deployment/{target.app}",
                *target.ns,
                "--timeout",
                "600s",
            ],
        ),
        _route_patch(
            target,
            lambda: backends(target.app, None, 100, 0),
            "send all traffic to the stable side",
            runner,
        ),
        *_common_tail(target, found, "promote", runner),
    ]
