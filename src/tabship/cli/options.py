"""The options several commands take, declared once, and how --batch-job and --shards combine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ModelArg = Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")]
EngineArg = Annotated[str | None, typer.Option(hidden=True, help="Deprecated alias of --builder.")]
NameArg = Annotated[str | None, typer.Option(help="Object name (default tabship-TARGET).")]
NamespaceArg = Annotated[str | None, typer.Option(help="Namespace for every object.")]
VersionArg = Annotated[
    str | None, typer.Option(help="Model version in labels and names (default: sha256[:12]).")
]
CanaryArg = Annotated[
    int | None,
    typer.Option(
        help="Keep the stable Deployment and add this model as a canary taking PERCENT of "
        "the traffic, through a Gateway API HTTPRoute."
    ),
]
GatewayClassArg = Annotated[
    str | None,
    typer.Option(help="GatewayClass of the canary's Gateway [required with --canary]."),
]
OutputArg = Annotated[
    Path | None, typer.Option("--output", "-o", help="Keep the manifests in this folder.")
]
DryRunArg = Annotated[bool, typer.Option(help="Print every command; change nothing.")]
ApiKeysSecretArg = Annotated[
    str | None,
    typer.Option(help="Secret holding the API keys file (key `api-keys`), mounted read-only."),
]
BatchJobArg = Annotated[
    tuple[str, str] | None,
    typer.Option(
        "--batch-job",
        help="INPUT OUTPUT: an Indexed Job scoring INPUT (folder, glob, gs:// or s3:// URL) "
        "into OUTPUT, one pod per shard.",
    ),
]
ShardsArg = Annotated[int | None, typer.Option(min=1, help="--batch-job: shards (pods).")]


def batch_options(batch_job: tuple[str, str] | None, shards: int | None) -> Any:
    """The --batch-job run asked for, None without one; --shards goes with it."""
    from tabship.deploy.batch_job import BatchJobOptions
    from tabship.errors import ConfigError

    if batch_job is None:
        if shards is not None:
            raise ConfigError("--shards goes with --batch-job INPUT OUTPUT")
        return None
    if shards is None:
        raise ConfigError("--batch-job needs --shards N, the number of pods that share the input")
    return BatchJobOptions(source=batch_job[0], output=batch_job[1], shards=shards)
