"""Commands for the prediction log: the monitor report, the export and the schema's move."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tabship.cli.common import FormulaGuardArg, app

log_app = typer.Typer(help="The prediction log.", no_args_is_help=True)
app.add_typer(log_app, name="log")

LogDb = Annotated[
    str | None,
    typer.Option(
        "--log-db",
        help="The log database: sqlite:///PATH or postgresql://... [TABSHIP_LOG_DB].",
        show_default=False,
    ),
]


def _url(log_db: str | None) -> str:
    from tabship.config import log_db_from_env
    from tabship.errors import ConfigError

    url = log_db or log_db_from_env()
    if not url:
        raise ConfigError("no log database: pass --log-db URL or set TABSHIP_LOG_DB")
    return url


@app.command()
def monitor(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    log_db: LogDb = None,
    since: Annotated[
        str, typer.Option(help="Window: 30m, 24h, 7d, 2w (a bare number: hours).")
    ] = "7d",
    form: Annotated[
        str, typer.Option("--format", help="table, json or html (any case).")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Drift against the training profile, traffic and live scores, over every pod's log."""
    from tabship.monitor.commands import check_output, monitor_report, write_report

    if output is not None:
        check_output(output, force)  # before the database is read, not after
    text = monitor_report(model, _url(log_db), since, form)
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_report(output, text, force)
        typer.echo(f"wrote {output}", err=True)


@log_app.command("export")
def export(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="rows.parquet or rows.csv to write.")
    ],
    log_db: LogDb = None,
    since: Annotated[
        str, typer.Option(help="Window: 30m, 24h, 7d, 2w (a bare number: hours).")
    ] = "7d",
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    formula_guard: FormulaGuardArg = True,
) -> None:
    """Export the model's logged predictions (inputs, prediction, feedback) to a file."""
    from tabship.monitor.commands import export_log

    done = export_log(model, _url(log_db), output, since, force, formula_guard)
    typer.echo(f"exported {done.rows} rows to {output}" + (f"; {done.note}" if done.note else ""))


@log_app.command("migrate")
def migrate(log_db: LogDb = None) -> None:
    """Move a log written by an earlier tabship to this one's schema (stop its servers first)."""
    from tabship.monitor.commands import migrate_log

    moved = migrate_log(_url(log_db))
    if moved:
        typer.echo(f"moved {moved} logged predictions (and their feedback) to this schema")
    else:
        typer.echo("the log already has this tabship's schema; nothing to move")
