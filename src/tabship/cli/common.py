"""What every command shares: the Typer apps, the console and the one-line failure."""

from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(
    help="Train the best pipeline for a table, score files with it, serve and ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

deploy_app = typer.Typer(help="Deploy a model to Kubernetes.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def fail(exc: Exception) -> None:
    from tabship.errors import RecordError

    lines = [str(p) for p in exc.problems] if isinstance(exc, RecordError) else [str(exc)]
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(1)


def split_names(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]
