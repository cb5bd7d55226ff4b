"""Commands that make models: datasets, train, report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from tabship.cli.common import app, console, datasets_app, split_names

if TYPE_CHECKING:
    from tabship.crossval import Row


@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in datasets."""
    from tabship.datasets import BUILTIN

    for dataset in BUILTIN.values():
        typer.echo(f"{dataset.name}\ttarget={dataset.target}\t{dataset.description}")


@datasets_app.command("fetch")
def datasets_fetch(name: str) -> None:
    """Find or download a built-in dataset, verify its sha256 and print its path."""
    from tabship import datasets

    typer.echo(str(datasets.fetch(name)))


def _task_line(result: Any, chosen: bool) -> str:
    """What was predicted and why it is that task: said, as a 3-valued number became a
    regression with nothing printed."""
    from tabship.feature import listed

    target = repr(result.target)
    if result.task == "classification":
        what = f"classification of {target} into {len(result.classes)} classes ({listed(result.classes)})"
        if len(result.classes) == 2:  # scikit-learn's binary F1 scores the second
            what += f"; F1, precision and recall of {result.classes[1]!r}"
        other = "regression"
    else:
        what = f"regression of {target} (a number with {len(np.unique(result.labels)):,} values)"
        other = "classification"
    if chosen:
        return f"task: {what}"
    # Text classes cannot be a regression: no hint that would only fail.
    numeric = result.task == "regression" or result.label_type in ("integer", "number")
    return f"task: {what}; inferred" + (f", --task {other} to change it" if numeric else "")


def _leaderboard_table(
    rows: list[Row], metrics: tuple[str, ...], best: str, limit: int | None = None
) -> Any:
    from rich.table import Table

    from tabship.metrics import format_score

    table = Table(title="Cross-validated leaderboard (mean ± std over folds)")
    table.add_column("#", justify="right")
    table.add_column("model")
    for name in metrics:
        table.add_column(name.upper(), justify="right")
    table.add_column("fit s", justify="right")
    for position, row in enumerate(rows[:limit], start=1):
        if row.error:
            table.add_row(str(position), row.label, *["failed"] * len(metrics), "")
            continue
        marker = " *" if row.name == best else ""
        cells = [format_score(row.mean[m], row.std[m]) for m in metrics]
        table.add_row(str(position), row.label + marker, *cells, f"{row.fit_seconds:.2f}")
    return table


def _progress_text(label: str) -> str:
    # Training names its stage in every label ("comparing on 3,000 rows: ...", "tuning ...").
    return label


def run_training(
    data: str,
    target: str,
    output: Path,
    **kwargs: Any,
) -> None:
    """Train with a progress bar, then print the leaderboard and where the model went."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tabship import metrics
    from tabship.artifact import REPORT_FILE
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    option_names = set(TrainOptions.__dataclass_fields__) - {"target"}
    options = TrainOptions(target=target, **{k: v for k, v in kwargs.items() if k in option_names})
    extra = {k: v for k, v in kwargs.items() if k not in option_names}
    out = console()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as bar:
        task_id = bar.add_task("cross-validating", total=None)
        said: list[str] = []

        def report(label: str, done: int, total: int) -> None:
            bar.update(task_id, description=_progress_text(label), completed=done, total=total)
            # Not a terminal (a CI log, `| tee`): Rich draws no bar there, and nothing was
            # printed for minutes; each stage is one plain line on stderr instead.
            if not out.is_terminal and said[-1:] != [label]:
                said.append(label)
                step = f" ({done + 1}/{total})" if total > 1 else ""
                typer.echo(f"[{time.monotonic() - started:6.1f} s] {label}{step}", err=True)

        trained = train_model(data, options, output, progress=report, **extra)
    result = trained.result
    for note in result.warnings:
        # Notes quote column names and values: `[red]x[/red]` is a name, not markup.
        out.print(f"[yellow]warning:[/] {escape(note)}")
    out.print(_task_line(result, chosen=options.task is not None), markup=False)
    out.print(_leaderboard_table(result.leaderboard, metrics.names(result.task), result.best))
    parity = trained.artifact.card.onnx
    out.print(
        f"best: {result.chosen.label} by {result.sort_by} (CV); engine: {trained.engine} "
        f"({parity.reason}); trained in {result.train_seconds:.1f} s "
        f"({time.monotonic() - started:.1f} s with the export, checks and report)",
        markup=False,  # a conversion failure's reason may quote a column name
    )
    if result.tuning:
        out.print(
            f"tuning: {result.tuning.seconds:.1f} s of the {result.tuning.budget:.1f} s budget, "
            f"trials {result.tuning.trials}"
        )
    if result.holdout:
        scores = result.holdout.scores
        out.print(
            f"holdout ({len(result.holdout.labels)} rows no model saw): "
            + ", ".join(f"{m} {metrics.format_score(scores[m])}" for m in scores)
        )
    out.print(f"model saved to {output}; report: {output / REPORT_FILE}", markup=False)


@app.command()
def train(
    data: Annotated[str, typer.Argument(help="CSV or Parquet file, or a built-in dataset name.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Column to predict.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")] = Path(
        "model"
    ),
    task: Annotated[
        str | None, typer.Option(help="regression or classification (default: inferred).")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for folds, holdout, tuning and models.")] = 123,
    models: Annotated[
        list[str] | None, typer.Option(help="Only these candidates (comma-separated).")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Leave out these candidates.")] = None,
    sort_by: Annotated[str | None, typer.Option(help="Metric that picks the winner.")] = None,
    positive_class: Annotated[
        str | None,
        typer.Option(
            help="Two classes: the one F1, precision and recall score (default: 1 or true, "
            "else the rarer)."
        ),
    ] = None,
    holdout: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.9, help="Keep this share of rows out of all training, e.g. 0.2."
        ),
    ] = 0.0,
    tune: Annotated[
        bool, typer.Option(help="Randomised search over the top 3 candidates' settings.")
    ] = False,
    time_budget: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Seconds the whole training may take (comparison, tuning, refit); "
            "--tune alone gets 60.",
        ),
    ] = None,
    target_label: Annotated[
        str | None, typer.Option(help="How the form names the prediction.")
    ] = None,
    unit: Annotated[str | None, typer.Option(help="Unit of the prediction, e.g. USD.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing model folder.")] = False,
    keep_background: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            help="Seal N sampled training rows as the explanations' baseline "
            "(default: 10 k-means centroids, no raw rows).",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run folds, tuning trials and the refit on this Dask scheduler, e.g. "
            "tcp://SCHEDULER:8786 [TABSHIP_DASK_SCHEDULER, default: this machine]."
        ),
    ] = None,
) -> None:
    """Cross-validate candidate pipelines, keep the best, write the model folder and its report."""
    from tabship.config import dask_scheduler_from_env
    from tabship.errors import ConfigError

    if task not in (None, "regression", "classification"):
        raise ConfigError(f"--task {task!r} is not one of: regression, classification")
    run_training(
        data,
        target,
        output,
        task=task,
        folds=folds,
        seed=seed,
        models=split_names(models, "--models"),
        exclude=split_names(exclude, "--exclude"),
        sort_by=sort_by,
        positive_class=positive_class,
        holdout=holdout,
        tune=tune,
        time_budget=time_budget,
        target_label=target_label,
        unit=unit,
        force=force,
        keep_background=keep_background,
        cluster=cluster or dask_scheduler_from_env(),
    )


@app.command()
def report(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the report in the default web browser.")
    ] = False,
) -> None:
    """Print the path of the model's training report (verified), or open it."""
    import webbrowser

    from tabship.artifact import REPORT_FILE, Artifact
    from tabship.errors import ArtifactError

    artifact = Artifact.open(model)
    if REPORT_FILE not in artifact.card.files:
        raise ArtifactError(
            f"{model} has no {REPORT_FILE} (trained by an older tabship); train it again"
        )
    artifact.read(REPORT_FILE)  # checks its sha256 before anyone reads it
    path = (model / REPORT_FILE).resolve()
    typer.echo(str(path))
    if open_browser and not webbrowser.open(path.as_uri()):
        typer.echo("no web browser found; open the path above", err=True)
