"""`tabship deploy`: a model onto GKE (registry, image, cluster) or any cluster kubectl reaches."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tabship.cli.common import builder_choice, deploy_app
from tabship.cli.options import (
    ApiKeysSecretArg,
    BatchJobArg,
    CanaryArg,
    DryRunArg,
    EngineArg,
    GatewayClassArg,
    ModelArg,
    NameArg,
    NamespaceArg,
    OutputArg,
    ShardsArg,
    VersionArg,
    batch_options,
)


@deploy_app.command("gke")
def deploy_gke(
    model: ModelArg,
    project: Annotated[str, typer.Option(help="Google Cloud project id.")],
    region: Annotated[str, typer.Option(help="Region, e.g. europe-west1.")],
    cluster: Annotated[
        str, typer.Option(help="GKE cluster name (created if missing).")
    ] = "tabship",
    repository: Annotated[
        str, typer.Option(help="Artifact Registry repository (created if missing).")
    ] = "tabship",
    nodes: Annotated[
        int | None,
        typer.Option(help="Standard cluster with N nodes per zone (default: Autopilot)."),
    ] = None,
    autopilot: Annotated[
        bool,
        typer.Option(
            "--autopilot",
            show_default=False,
            help="Autopilot cluster: what is made without --nodes; said for clarity.",
        ),
    ] = False,
    builder: Annotated[
        str | None, typer.Option(help="docker or podman, to build and push (default docker).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Object and image name (default tabship-TARGET).")
    ] = None,
    output: OutputArg = None,
    dry_run: DryRunArg = False,
    engine: EngineArg = None,
    version: VersionArg = None,
    canary: CanaryArg = None,
    gateway_class: Annotated[
        str | None,
        typer.Option(
            help="GatewayClass of the canary's Gateway (GKE: default gke-l7-global-external-managed)."
        ),
    ] = None,
    api_keys_secret: ApiKeysSecretArg = None,
    batch_job: BatchJobArg = None,
    shards: ShardsArg = None,
) -> None:
    """Artifact Registry, build and push, GKE cluster, kubectl apply, rollout, external IP."""
    from tabship.artifact import Artifact
    from tabship.config import Settings
    from tabship.deploy.canary import canary_options
    from tabship.deploy.gke import GkeOptions, plan_gke
    from tabship.deploy.plan import DeployState, apply_plan
    from tabship.errors import ConfigError
    from tabship.runner import Runner

    if nodes is not None and autopilot:
        raise ConfigError("--nodes makes a Standard cluster; do not combine it with --autopilot")
    runner = Runner(dry_run=dry_run)
    state = DeployState()
    options = GkeOptions(
        project=project,
        region=region,
        cluster=cluster,
        repository=repository,
        nodes=nodes,
        builder=builder_choice(builder, engine) or "docker",
        name=name,
        manifests_dir=output,
        wheelhouse=Settings.from_env().cache_dir / "wheels",
        version=version,
        manifest_options={"version": version, "api_keys_secret": api_keys_secret},
        canary=None if canary is None else canary_options(canary, gateway_class, gke=True),
        batch=batch_options(batch_job, shards),
    )
    apply_plan(plan_gke(Artifact.open(model), options, runner, state), runner, typer.echo)
    if canary is not None and not dry_run:
        typer.echo(f"canary running; its Gateway: kubectl get gateway {name or 'APP'}")
    else:
        _done(dry_run, options.batch, state.external_ip)


@deploy_app.command("k8s")
def deploy_k8s(
    model: ModelArg,
    image: Annotated[
        str, typer.Option(help="An image the cluster can pull (built with `tabship build`).")
    ],
    context: Annotated[
        str | None, typer.Option(help="kubectl context (default: the current one).")
    ] = None,
    name: NameArg = None,
    namespace: NamespaceArg = None,
    output: OutputArg = None,
    dry_run: DryRunArg = False,
    version: VersionArg = None,
    canary: CanaryArg = None,
    gateway_class: GatewayClassArg = None,
    api_keys_secret: ApiKeysSecretArg = None,
    batch_job: BatchJobArg = None,
    shards: ShardsArg = None,
) -> None:
    """Apply the manifests to any cluster kubectl reaches, wait for the rollout and the IP."""
    from tabship.artifact import Artifact
    from tabship.deploy.canary import canary_options
    from tabship.deploy.plan import DeployState, apply_plan, plan_k8s
    from tabship.runner import Runner

    runner = Runner(dry_run=dry_run)
    state = DeployState()
    chosen = None if canary is None else canary_options(canary, gateway_class, gke=False)
    extra: dict[str, object] = {"version": version, "api_keys_secret": api_keys_secret}
    batch = batch_options(batch_job, shards)
    apply_plan(
        plan_k8s(
            Artifact.open(model),
            image,
            context,
            runner,
            state,
            name,
            namespace,
            output,
            extra,
            chosen,
            batch=batch,
        ),
        runner,
        typer.echo,
    )
    if chosen is not None and not dry_run:
        typer.echo(f"canary running at {chosen.percent}%; judge it with `tabship rollout check`")
    else:
        _done(dry_run, batch, state.external_ip)


def _done(dry_run: bool, batch: Any, external_ip: str) -> None:
    if dry_run:
        return
    if batch is not None:
        typer.echo(f"every shard of {batch.source} is scored into {batch.output}")
    else:
        typer.echo(f"deployed: http://{external_ip}/")
