"""Commands that use a model: predict a file, serve it, the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tabship.cli.common import app, fail
from tabship.cli.training import run_training


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    data: Annotated[Path, typer.Argument(help="CSV or Parquet table to score.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the scored table.")
    ],
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    engine: Annotated[
        str | None, typer.Option(help="onnx or sklearn (default: the model's).")
    ] = None,
) -> None:
    """Score a whole file in chunks: the input columns plus the prediction."""
    import os

    from tabship.errors import TabshipError
    from tabship.predictor import Predictor
    from tabship.scoring import score_file

    try:
        threads = os.cpu_count() or 1
        summary = score_file(
            Predictor.load(model, engine, threads=threads), data, output, force=force
        )
    except TabshipError as exc:
        fail(exc)
        return
    for note in summary.warnings[:20]:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"scored {summary.rows} rows into {summary.output}")


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [TABSHIP_HOST, default 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [TABSHIP_PORT, default 8080].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [TABSHIP_WORKERS, default 1].")
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option(help="Most records per /v1/predict [TABSHIP_MAX_BATCH, 1000].")
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(help="Requests handled at once before 503 [TABSHIP_MAX_CONCURRENCY, 64]."),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds before a request gets 504 [TABSHIP_REQUEST_TIMEOUT, 30]."),
    ] = None,
    drain_delay: Annotated[
        float | None,
        typer.Option(
            help="Seconds to keep serving after SIGTERM with readiness 503 [TABSHIP_DRAIN_DELAY, 2]."
        ),
    ] = None,
    graceful_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds for requests in flight to finish [TABSHIP_GRACEFUL_TIMEOUT, 20]."
        ),
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="onnx or sklearn [TABSHIP_ENGINE, default: the model's].")
    ] = None,
) -> None:
    """Serve the web form and the JSON API for a model folder."""
    from tabship.config import ServeSettings
    from tabship.errors import TabshipError

    flags = {
        "host": host,
        "port": port,
        "workers": workers,
        "max_batch": max_batch,
        "max_concurrency": max_concurrency,
        "drain_delay": drain_delay,
        "graceful_timeout": graceful_timeout,
        "request_timeout": request_timeout,
        "engine": engine,
    }
    try:
        settings = ServeSettings.resolve(flags)
        from tabship.serve.server import serve as run_server

        display = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host  # noqa: S104 - shown, not bound
        typer.echo(
            f"serving {model} on http://{display}:{settings.port}  (form: /, API docs: /docs)",
            err=True,
        )
        run_server(model, settings)
    except TabshipError as exc:
        fail(exc)


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder.")] = Path(
        "models/insurance"
    ),
    port: Annotated[
        int | None, typer.Option(help="Port to serve on [TABSHIP_PORT, default 8080].")
    ] = None,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Train (if needed) and stop.")
    ] = False,
) -> None:
    """The insurance showcase: get the data, train once, serve on http://localhost:8080."""
    from tabship.datasets import BUILTIN

    dataset = BUILTIN["insurance"]
    if (output / "tabship.json").is_file():
        typer.echo(f"{output} already holds a model; serving it (delete the folder to train again)")
    else:
        run_training(
            dataset.name,
            dataset.target,
            output,
            target_label=dataset.target_label,
            unit=dataset.unit,
        )
    if not no_serve:
        serve(output, port=port)
