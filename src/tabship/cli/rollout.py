"""`tabship rollout`: judge a canary by both sides' metrics, then promote or roll it back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tabship.cli.common import app

if TYPE_CHECKING:
    from tabship.deploy.plan import Step
    from tabship.deploy.rollout import RolloutTarget
    from tabship.runner import Runner

rollout_app = typer.Typer(help="Canary rollouts: check, promote, roll back.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")

NOT_ENOUGH = 2


@rollout_app.command("check")
def check(
    stable: Annotated[str, typer.Option(help="Base URL of the stable side, e.g. http://10.0.0.5")],
    canary: Annotated[str, typer.Option(help="Base URL of the canary side.")],
    max_error_ratio: Annotated[
        float, typer.Option(help="Fail when the canary's 5xx rate is over this x the stable's.")
    ] = 1.5,
    max_p99_ratio: Annotated[
        float, typer.Option(help="Fail when the canary's p99 latency is over this x the stable's.")
    ] = 1.5,
    min_requests: Annotated[
        int, typer.Option(help="Fewer requests on either side: no verdict (exit 2).")
    ] = 20,
    window: Annotated[
        float,
        typer.Option(help="Seconds between two scrapes to compare (0: since each start)."),
    ] = 0.0,
    api_key_file: Annotated[
        Path | None, typer.Option(help="Keys file whose first key reads a protected /metrics.")
    ] = None,
) -> None:
    """Exit 1 when the canary is worse than the stable side, 2 when there is too little traffic."""
    from tabship.deploy.health import check_rollout, read_key

    verdict = check_rollout(
        stable,
        canary,
        max_error_ratio,
        max_p99_ratio,
        min_requests,
        window,
        read_key(api_key_file),
    )
    for line in verdict.lines():
        typer.echo(line)
    if not verdict.enough:  # too few requests to judge either way
        typer.echo(f"not enough traffic yet: each side needs {min_requests} requests")
        raise typer.Exit(NOT_ENOUGH)
    if verdict.reasons:
        for reason in verdict.reasons:
            typer.echo(f"canary is worse: {reason}")
        raise typer.Exit(1)
    typer.echo("canary is not worse than stable")


AppArg = Annotated[str, typer.Argument(help="The stable Deployment's name (tabship-TARGET).")]
Namespace = Annotated[str | None, typer.Option(help="Namespace of the app.")]
Context = Annotated[str | None, typer.Option(help="kubectl context (default: the current one).")]
Gke = Annotated[bool, typer.Option(help="Also remove the canary's GKE HealthCheckPolicy.")]
DryRun = Annotated[bool, typer.Option(help="Print every command; change nothing.")]


@rollout_app.command("promote")
def promote(
    app_name: AppArg,
    namespace: Namespace = None,
    context: Context = None,
    gke: Gke = False,
    dry_run: DryRun = False,
) -> None:
    """All traffic to the canary, the stable side moved to its model, the canary removed."""
    from tabship.deploy.rollout import plan_promote

    _settle(plan_promote, app_name, namespace, context, gke, dry_run)
    if not dry_run:
        typer.echo(
            f"promoted: {app_name} serves the canary's model; recorded in {app_name}-rollouts"
        )


@rollout_app.command("rollback")
def rollback(
    app_name: AppArg,
    namespace: Namespace = None,
    context: Context = None,
    gke: Gke = False,
    dry_run: DryRun = False,
) -> None:
    """All traffic back to the stable side, and the canary removed."""
    from tabship.deploy.rollout import plan_rollback

    _settle(plan_rollback, app_name, namespace, context, gke, dry_run)
    if not dry_run:
        typer.echo(
            f"rolled back: {app_name} serves the stable model; recorded in {app_name}-rollouts"
        )


def _settle(
    plan: Callable[[RolloutTarget, Runner], list[Step]],
    app_name: str,
    namespace: str | None,
    context: str | None,
    gke: bool,
    dry_run: bool,
) -> None:
    """Run a promote or rollback plan against the app's stable and canary sides."""
    from tabship.deploy.plan import apply_plan
    from tabship.deploy.rollout import RolloutTarget
    from tabship.runner import Runner

    runner = Runner(dry_run=dry_run)
    apply_plan(plan(RolloutTarget(app_name, namespace, context, gke), runner), runner, typer.echo)
