"""Commands that use a model: predict a file, serve it, the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tabship.cli.common import FormulaGuardArg, app, split_names
from tabship.cli.training import run_training
from tabship.errors import shown_field
from tabship.feature import rows_text

WARNINGS_SHOWN = 20


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    data: Annotated[
        str,
        typer.Argument(
            help="CSV or Parquet table to predict; or a folder, glob or gs:// / s3:// URL of "
            "them (sharded output)."
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the table with predictions (.csv or .parquet); a folder or "
            "URL for sharded output.",
        ),
    ],
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    engine: Annotated[
        str | None, typer.Option(help="onnx or sklearn (default: the model's).")
    ] = None,
    strict_categories: Annotated[
        bool | None,
        typer.Option(
            "--strict-categories/--no-strict-categories",
            help="Refuse rows holding a category not seen in training, instead of predicting "
            "them as unknown [TABSHIP_STRICT_CATEGORIES, off].",
            show_default=False,
        ),
    ] = None,
    formula_guard: FormulaGuardArg = True,
    trust: Annotated[
        Path | None,
        typer.Option(
            help="Public key (PEM): refuse the model unless `tabship sign` signed it with the "
            "matching private key [TABSHIP_TRUST, default: no signature needed]."
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="Score only shard I of N (I/N, from 0) into OUTPUT/part-I-of-N.FORMAT."),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Score one of N shards, its number from JOB_COMPLETION_INDEX (Indexed Jobs).",
        ),
    ] = None,
    output_format: Annotated[
        str | None, typer.Option("--format", help="Sharded output: parquet or csv [parquet].")
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows read and predicted at a time.")
    ] = 100_000,
) -> None:
    """Predict a whole file in chunks: the input columns plus the prediction."""
    import os

    from tabship.batch import predict_file
    from tabship.config import strict_categories_from_env, trust_from_env
    from tabship.predictor import Predictor

    trust = trust or trust_from_env()
    sealed = None
    if trust is not None:
        from tabship.signing import verify_model

        sealed = verify_model(model, trust)

    strict = strict_categories_from_env() if strict_categories is None else strict_categories
    # The cores this process may use (taskset, a container's cpuset), not the machine's.
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    predictor = Predictor.load(
        model, engine, threads=threads or 1, strict_categories=strict, sealed=sealed
    )
    many = "://" in data or any(ch in data for ch in "*?[") or Path(data).is_dir()
    if shard is not None or shards is not None or many:
        fmt = "parquet" if output_format is None else output_format
        _predict_shard(
            predictor, data, output, shard, shards, fmt, force, chunk_rows, formula_guard
        )
        return
    if output_format is not None:  # ignored before: the file's suffix says its format
        from tabship.errors import ConfigError

        raise ConfigError(
            "--format goes with sharded output (a folder, glob or URL, --shard or --shards); "
            "one file is written as its -o suffix says (.csv or .parquet)"
        )
    summary = predict_file(
        predictor,
        Path(data),
        Path(output),
        force=force,
        chunk_rows=chunk_rows,
        formula_guard=formula_guard,
    )
    for note in summary.warnings[:WARNINGS_SHOWN]:
        typer.echo(f"warning: {note}", err=True)
    if len(summary.warnings) > WARNINGS_SHOWN:
        typer.echo(f"warning: ... and {len(summary.warnings) - WARNINGS_SHOWN} more", err=True)
    for field, count in summary.unseen.items():
        typer.echo(
            f"warning: {Path(data).name}: {shown_field(field)}: {rows_text(count)} held values not seen in training; "
            "predicted as unknown",
            err=True,
        )
    typer.echo(f"predicted {rows_text(summary.rows)} into {summary.output}")


def _predict_shard(
    predictor: Any,
    data: str,
    output: str,
    shard: str | None,
    shards: int | None,
    fmt: str,
    force: bool,
    chunk_rows: int,
    formula_guard: bool,
) -> None:
    from tabship.config import shard_index_from_env
    from tabship.errors import ConfigError
    from tabship.shards import Shard, predict_shard

    if shard is not None and shards is not None:
        raise ConfigError(
            "pass --shard I/N or --shards N (index from JOB_COMPLETION_INDEX), not both"
        )
    if shards is not None:
        index = shard_index_from_env()
        if index is None:
            raise ConfigError(
                "--shards N reads the shard number from JOB_COMPLETION_INDEX, which is not set; use --shard I/N"
            )
        chosen = Shard.of(index, shards)
    else:
        chosen = Shard.parse(shard) if shard is not None else Shard(0, 1)
    summary = predict_shard(
        predictor,
        data,
        output,
        chosen,
        fmt=fmt,
        force=force,
        chunk_rows=chunk_rows,
        formula_guard=formula_guard,
    )
    for note in summary.warnings[:WARNINGS_SHOWN]:
        typer.echo(f"warning: {note}", err=True)
    for field, count in summary.unseen.items():
        typer.echo(
            f"warning: {shown_field(field)}: {rows_text(count)} held values not seen in training; predicted as unknown",
            err=True,
        )
    where = summary.output or "no file (no input fell to this shard)"
    typer.echo(
        f"shard {chosen.index}/{chosen.count}: predicted {rows_text(summary.rows)} into {where}"
    )


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
    read_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a client has to send its headers and body before 408 "
            "[TABSHIP_READ_TIMEOUT, 10].",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request body in bytes, else 413 [TABSHIP_MAX_BODY_BYTES, 1048576].",
        ),
    ] = None,
    max_header_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request head in bytes, else 431 [TABSHIP_MAX_HEADER_BYTES, 16384].",
        ),
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
    strict_categories: Annotated[
        bool | None,
        typer.Option(
            "--strict-categories/--no-strict-categories",
            help="Answer 422 for a category not seen in training, instead of predicting it as "
            "unknown with a warning [TABSHIP_STRICT_CATEGORIES, off].",
            show_default=False,
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated Host header values to answer; others get 400 "
            "[TABSHIP_ALLOWED_HOSTS, default: any]."
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="The model's name in the Open Inference Protocol's /v2/models/NAME paths "
            "[TABSHIP_MODEL_NAME, default: the model folder's name]."
        ),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(
            help="File of API keys, one per line (or sha256:HEX); predictions then need "
            "`Authorization: Bearer KEY` [TABSHIP_API_KEYS_FILE, default: no keys]."
        ),
    ] = None,
    protect_metrics: Annotated[
        bool | None,
        typer.Option(
            "--protect-metrics/--open-metrics",
            help="With API keys, /metrics needs a key too [TABSHIP_PROTECT_METRICS, off].",
            show_default=False,
        ),
    ] = None,
    public_pages: Annotated[
        bool | None,
        typer.Option(
            "--public-pages/--protected-pages",
            help="With API keys, the form, /docs and the report need no key "
            "[TABSHIP_PUBLIC_PAGES, off].",
            show_default=False,
        ),
    ] = None,
    generic_errors: Annotated[
        bool | None,
        typer.Option(
            "--generic-errors/--detailed-errors",
            help="422 answers name the wrong fields only, not the allowed values or ranges "
            "[TABSHIP_GENERIC_ERRORS, off].",
            show_default=False,
        ),
    ] = None,
    trust: Annotated[
        Path | None,
        typer.Option(
            help="Public key (PEM): refuse the model unless `tabship sign` signed it with the "
            "matching private key [TABSHIP_TRUST, default: no signature needed]."
        ),
    ] = None,
    log_db: Annotated[
        str | None,
        typer.Option(
            help="Log every prediction to this database: sqlite:///PATH or postgresql://... "
            "[TABSHIP_LOG_DB, default: no log].",
            show_default=False,
        ),
    ] = None,
    log_retention_days: Annotated[
        float | None,
        typer.Option(
            help="Delete logged predictions older than this many days "
            "[TABSHIP_LOG_RETENTION_DAYS, default and 0: keep].",
        ),
    ] = None,
) -> None:
    """Serve the web form, the JSON API and the Open Inference Protocol (/v2) for a model folder."""
    from tabship.config import ServeSettings
    from tabship.serve.server import serve as run_server

    hosts = split_names([allowed_hosts] if allowed_hosts is not None else None, "--allowed-hosts")
    settings = ServeSettings.resolve(
        {
            "host": host,
            "port": port,
            "workers": workers,
            "max_batch": max_batch,
            "max_concurrency": max_concurrency,
            "drain_delay": drain_delay,
            "graceful_timeout": graceful_timeout,
            "request_timeout": request_timeout,
            "read_timeout": read_timeout,
            "max_header_bytes": max_header_bytes,
            "max_body_bytes": max_body_bytes,
            "engine": engine,
            "strict_categories": strict_categories,
            "allowed_hosts": tuple(h.lower() for h in hosts) if hosts else None,
            "model_name": model_name,
            "api_keys_file": api_keys_file,
            "protect_metrics": protect_metrics,
            "public_pages": public_pages,
            "generic_errors": generic_errors,
            "trust": trust,
            "log_db": log_db,
            "log_retention_days": log_retention_days,
        }
    )

    def announce(address: str) -> None:
        # Said once the model, keys, log and socket are checked, with the port really bound.
        typer.echo(f"serving {model} on {address}  (form: /, API docs: /docs)", err=True)
        if settings.log_db:
            from tabship.monitor.logurl import shown_log_db

            typer.echo(
                f"logging predictions to {shown_log_db(settings.log_db)}  (monitor: /monitor)",
                err=True,
            )

    run_server(model, settings, announce)


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
    log_db: Annotated[
        str | None,
        typer.Option(
            help="The prediction log [TABSHIP_LOG_DB, default: sqlite beside the model folder].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The insurance showcase: get the data, train once, serve on http://localhost:8080."""
    from tabship.datasets import BUILTIN

    dataset = BUILTIN["insurance"]
    if not no_serve:  # a bad port or log URL is said before training, not a minute after
        from tabship.config import ServeSettings, log_db_from_env
        from tabship.monitor.logurl import engine_url

        ServeSettings.resolve({"port": port})
        asked = log_db or log_db_from_env()
        if asked:
            engine_url(asked)
    if (output / "tabship.json").is_file():
        from tabship.artifact import Artifact

        held = Artifact.open(output).card.target  # a folder that is no model stops here
        other = "" if held == dataset.target else f" (of {held[:60]!r}, not the showcase)"
        typer.echo(
            f"{output} already holds a model{other}; {'kept' if no_serve else 'serving it'} "
            "(delete the folder, or choose another -o, to train the showcase again)",
            err=True,
        )
    elif output.exists() and (not output.is_dir() or any(output.iterdir())):
        from tabship.errors import OutputExistsError

        # train's own message says "pass --force", which demo does not take: it never
        # replaces what a folder holds.
        raise OutputExistsError(f"{output} exists and holds no model; choose another -o")
    else:
        run_training(
            dataset.name,
            dataset.target,
            output,
            target_label=dataset.target_label,
            unit=dataset.unit,
            builtin=True,  # the showcase's data, even beside a file named `insurance`
        )
        if not no_serve:
            # Training's worker processes (joblib's loky pool) outlive it, idle, holding
            # about 290 MB each beside the server; a `train` process just exits.
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)
    if not no_serve:
        from tabship.config import log_db_from_env

        default = f"sqlite:///{(output.parent / 'predictions.db').resolve()}"
        serve(output, port=port, log_db=log_db or log_db_from_env() or default)
