"""What every command shares: the Typer apps, the console, and the one error path."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tabship.errors import ConfigError, RecordError, TabshipError


def error_lines(error: TabshipError) -> list[str]:
    """What the user reads: one line per bad field of a RecordError, else the message."""
    if isinstance(error, RecordError):
        listed = error.lines
        if error.more:
            listed.append(f"... and {error.more} more problems (the first {len(listed)} listed)")
        return listed
    return [str(error)]


class Commands(TyperGroup):
    """The root group: the only place a TabshipError from any command is caught and printed.

    It wraps every subcommand (nested groups included), so the console script and typer's
    CliRunner print the same `error: ...` lines and exit 1; commands never catch errors.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except TabshipError as error:
            for line in error_lines(error):
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(1) from None
        except OSError as error:
            # A path the user gave that the system refused (a file where a folder must be, a
            # folder that exists, no permission): said with the path, never a traceback.
            if error.filename is None:
                raise
            paths = " -> ".join(str(name) for name in (error.filename, error.filename2) if name)
            typer.echo(f"error: {paths}: {error.strerror or error}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=Commands,
    help="Train the best pipeline for a table, predict files with it, serve and ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(shown: bool) -> None:
    if shown:
        from tabship import __version__

        typer.echo(f"tabship {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print tabship's version and exit."
        ),
    ] = False,
) -> None:
    """Train the best pipeline for a table, predict files with it, serve and ship it."""


# `predict` and `log export`: one option, one rule (formulas.guard_formulas).
FormulaGuardArg = Annotated[
    bool,
    typer.Option(
        "--formula-guard/--no-formula-guard",
        help="CSV output: prefix ' to text cells starting with = + - @ tab or CR, so a "
        "spreadsheet shows them instead of running them as formulas. Numbers are never "
        "changed; Parquet output is written as it is.",
    ),
]


datasets_app = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

deploy_app = typer.Typer(help="Deploy a model to Kubernetes.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    # Not a terminal (a pipe, CI's log): rich takes 80 columns, and the leaderboard's model
    # names wrapped into three lines each; a log line is wider. COLUMNS still decides.
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() or "COLUMNS" in os.environ else 120
    return Console(stderr=stderr, width=wide)


def split_names(values: list[str] | None, flag: str = "") -> list[str] | None:
    """Comma-separated names from repeatable options; None when the option was not given.
    Given but naming nothing (`--models ''`), it is refused when `flag` names it: silently
    meaning "all" trained every candidate."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names and flag:
        raise ConfigError(
            f"{flag} {', '.join(map(repr, values))} names nothing; leave it out or name one"
        )
    return names


def builder_choice(builder: str | None, engine: str | None) -> str | None:
    """--builder, or the deprecated --engine alias of build and deploy (with a warning)."""
    if engine is None:
        return builder
    typer.echo(
        "warning: --engine is deprecated on build and deploy and goes in the next release; "
        "use --builder",
        err=True,
    )
    if builder is not None and builder != engine:
        raise ConfigError(
            f"--builder {builder!r} and --engine {engine!r} disagree; pass only --builder"
        )
    return engine
