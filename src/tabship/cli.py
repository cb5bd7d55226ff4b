"""Command line: parse arguments, call one library function, print. No logic lives here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from tabship.train import Row

app = typer.Typer(
    help="Train the best pipeline for a table, score files with it, serve and ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def _fail(exc: Exception) -> None:
    from tabship.errors import RecordError

    lines = [str(p) for p in exc.problems] if isinstance(exc, RecordError) else [str(exc)]
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(1)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


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
    from tabship.errors import TabshipError

    try:
        typer.echo(str(datasets.fetch(name)))
    except TabshipError as exc:
        _fail(exc)


def _leaderboard_table(
    rows: list[Row], metrics: tuple[str, ...], best: str, limit: int | None = None
) -> Any:
    from rich.table import Table

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
        cells = [_format_metric(row.mean[m], row.std[m]) for m in metrics]
        table.add_row(str(position), row.label + marker, *cells, f"{row.fit_seconds:.2f}")
    return table


def _format_metric(mean: float, std: float) -> str:
    if mean != mean:  # NaN: the metric does not apply to this table
        return "n/a"
    digits = 4 if abs(mean) < 10 else 0
    return f"{mean:,.{digits}f} ± {std:,.{digits}f}"


def run_training(
    data: str,
    target: str,
    output: Path,
    **kwargs: Any,
) -> None:
    """Train with a progress bar, then print the leaderboard and where the model went."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tabship import metrics
    from tabship.errors import TabshipError
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    option_names = {"task", "folds", "seed", "models", "exclude", "sort_by"}
    options = TrainOptions(target=target, **{k: v for k, v in kwargs.items() if k in option_names})
    extra = {k: v for k, v in kwargs.items() if k not in option_names}
    console = _console()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task_id = bar.add_task("cross-validating", total=None)

            def report(label: str, done: int, total: int) -> None:
                bar.update(
                    task_id, description=f"cross-validating: {label}", completed=done, total=total
                )

            trained = train_model(data, options, output, progress=report, **extra)
    except TabshipError as exc:
        _fail(exc)
        return
    result = trained.result
    for note in result.warnings:
        console.print(f"[yellow]warning:[/] {note}")
    console.print(_leaderboard_table(result.leaderboard, metrics.names(result.task), result.best))
    parity = trained.artifact.metadata["onnx"]
    console.print(
        f"best: {result.best} by {result.sort_by}; engine: {trained.engine} ({parity['reason']}); "
        f"trained in {result.train_seconds:.1f} s"
    )
    console.print(f"model saved to {output}")


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
    seed: Annotated[int, typer.Option(help="Seed for folds and models.")] = 123,
    models: Annotated[
        list[str] | None, typer.Option(help="Only these candidates (comma-separated).")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Leave out these candidates.")] = None,
    sort_by: Annotated[str | None, typer.Option(help="Metric that picks the winner.")] = None,
    target_label: Annotated[
        str | None, typer.Option(help="How the form names the prediction.")
    ] = None,
    unit: Annotated[str | None, typer.Option(help="Unit of the prediction, e.g. USD.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing model folder.")] = False,
) -> None:
    """Cross-validate candidate pipelines, keep the best, write the model folder."""
    if task not in (None, "regression", "classification"):
        typer.echo(f"error: --task {task!r} is not one of: regression, classification", err=True)
        raise typer.Exit(1)
    run_training(
        data,
        target,
        output,
        task=task,
        folds=folds,
        seed=seed,
        models=_split(models),
        exclude=_split(exclude),
        sort_by=sort_by,
        target_label=target_label,
        unit=unit,
        force=force,
    )


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
        _fail(exc)
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
        _fail(exc)


@app.command()
def build(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    tag: Annotated[str, typer.Option("--tag", "-t", help="Image name, e.g. insurance-app:v1.")],
    engine: Annotated[
        str | None, typer.Option(help="docker or podman (default: whichever works).")
    ] = None,
    base_image: Annotated[
        str | None, typer.Option(help="Base image with python3 (default python:3.11-slim).")
    ] = None,
    wheelhouse: Annotated[
        Path | None,
        typer.Option(
            help="Install only wheels from this folder; missing ones are downloaded into it first."
        ),
    ] = None,
    push: Annotated[bool, typer.Option(help="Push the image after building.")] = False,
    context_dir: Annotated[
        Path | None, typer.Option(help="Write the build context here (new or empty folder).")
    ] = None,
) -> None:
    """Build a hardened serving image for a model folder with docker or podman."""
    from tabship.config import Settings
    from tabship.container import DEFAULT_BASE_IMAGE, ImageOptions, build_image
    from tabship.errors import TabshipError
    from tabship.runner import Runner

    options = ImageOptions(
        tag=tag,
        base_image=base_image or DEFAULT_BASE_IMAGE,
        engine=engine,
        wheelhouse=wheelhouse,
        push=push,
        context_dir=context_dir,
    )
    try:
        built = build_image(
            model, options, Runner(echo=True), Settings.from_env().cache_dir / "wheels"
        )
    except TabshipError as exc:
        _fail(exc)
        return
    typer.echo(
        f"built {built.tag} with {built.engine} (context: {built.context})"
        + (", pushed" if built.pushed else "")
    )


@app.command()
def sbom(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="SBOM file to write (CycloneDX JSON).")
    ] = Path("sbom.cdx.json"),
    wheelhouse: Annotated[
        Path | None, typer.Option(help="Wheel folder (default: the build cache).")
    ] = None,
) -> None:
    """Write a CycloneDX SBOM of the serving image's environment for this model."""
    from tabship.config import Settings
    from tabship.container import write_sbom
    from tabship.errors import TabshipError
    from tabship.runner import Runner

    try:
        written = write_sbom(
            model, output, wheelhouse or Settings.from_env().cache_dir / "wheels", Runner()
        )
    except TabshipError as exc:
        _fail(exc)
        return
    typer.echo(f"wrote {written}")


deploy_app = typer.Typer(help="Deploy a model to Kubernetes.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


def _manifest_extra(
    min_replicas: int, max_replicas: int, cpu_target: int, cpu: str, memory: str
) -> dict[str, Any]:
    return {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "cpu_target": cpu_target,
        "cpu": cpu,
        "memory": memory,
    }


@app.command()
def manifests(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    image: Annotated[
        str, typer.Option(help="Image reference, ideally by digest (name@sha256:...).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Kustomize folder to write.")
    ] = Path("k8s"),
    name: Annotated[str | None, typer.Option(help="Object name (default tabship-TARGET).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace for every object.")] = None,
    min_replicas: Annotated[int, typer.Option(help="HPA minimum.")] = 2,
    max_replicas: Annotated[int, typer.Option(help="HPA maximum.")] = 10,
    cpu_target: Annotated[int, typer.Option(help="HPA CPU utilisation target, percent.")] = 70,
    cpu: Annotated[str, typer.Option(help="CPU request per pod.")] = "250m",
    memory: Annotated[str, typer.Option(help="Memory request and limit per pod.")] = "512Mi",
    force: Annotated[bool, typer.Option(help="Replace files already in the folder.")] = False,
) -> None:
    """Write a kustomize folder (kubectl apply -k DIR) that passes the policy checker."""
    from tabship.artifact import Artifact
    from tabship.deploy.manifests import ManifestOptions, render_manifests, write_manifests
    from tabship.deploy.policy import check_objects
    from tabship.errors import TabshipError

    try:
        options = ManifestOptions(
            image=image,
            name=name,
            namespace=namespace,
            **_manifest_extra(min_replicas, max_replicas, cpu_target, cpu, memory),
        )
        objects = render_manifests(Artifact.open(model), options)
        findings = check_objects(objects)
        if findings:
            raise TabshipError("; ".join(str(f) for f in findings))
        written = write_manifests(objects, output, namespace, force=force)
    except TabshipError as exc:
        _fail(exc)
        return
    typer.echo(
        f"wrote {len(written)} files to {output}; policy: 0 findings. Apply with: kubectl apply -k {output}"
    )


@app.command("check-manifests")
def check_manifests(
    directory: Annotated[
        Path, typer.Argument(help="Folder of Kubernetes YAML (kustomize or plain).")
    ],
) -> None:
    """Check manifests against Pod Security "restricted" and tabship's hardening rules."""
    from tabship.deploy.policy import check_objects, load_folder
    from tabship.errors import TabshipError

    try:
        findings = check_objects(load_folder(directory))
    except TabshipError as exc:
        _fail(exc)
        return
    for finding in findings:
        typer.echo(str(finding))
    typer.echo(f"{len(findings)} findings in {directory}", err=True)
    if findings:
        raise typer.Exit(1)


@deploy_app.command("gke")
def deploy_gke(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
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
    autopilot: Annotated[bool, typer.Option(help="Autopilot cluster (the default).")] = False,
    engine: Annotated[str, typer.Option(help="docker or podman, to build and push.")] = "docker",
    name: Annotated[
        str | None, typer.Option(help="Object and image name (default tabship-TARGET).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Keep the manifests in this folder.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print every command; change nothing.")] = False,
) -> None:
    """Artifact Registry, build and push, GKE cluster, kubectl apply, rollout, external IP."""
    from tabship.artifact import Artifact
    from tabship.config import Settings
    from tabship.deploy.gke import DeployState, GkeOptions, apply_plan, plan_gke
    from tabship.errors import TabshipError
    from tabship.runner import Runner

    if nodes is not None and autopilot:
        typer.echo(
            "error: --nodes makes a Standard cluster; do not combine it with --autopilot", err=True
        )
        raise typer.Exit(1)
    runner = Runner(dry_run=dry_run)
    state = DeployState()
    try:
        options = GkeOptions(
            project=project,
            region=region,
            cluster=cluster,
            repository=repository,
            nodes=nodes,
            engine=engine,
            name=name,
            manifests_dir=output,
            wheelhouse=Settings.from_env().cache_dir / "wheels",
        )
        apply_plan(plan_gke(Artifact.open(model), options, runner, state), runner, typer.echo)
    except TabshipError as exc:
        _fail(exc)
        return
    if not dry_run:
        typer.echo(f"deployed: http://{state.external_ip}/")


@deploy_app.command("k8s")
def deploy_k8s(
    model: Annotated[Path, typer.Argument(help="Model folder written by `tabship train`.")],
    image: Annotated[
        str, typer.Option(help="An image the cluster can pull (built with `tabship build`).")
    ],
    context: Annotated[
        str | None, typer.Option(help="kubectl context (default: the current one).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Object name (default tabship-TARGET).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace for every object.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Keep the manifests in this folder.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print every command; change nothing.")] = False,
) -> None:
    """Apply the manifests to any cluster kubectl reaches, wait for the rollout and the IP."""
    from tabship.artifact import Artifact
    from tabship.deploy.gke import DeployState, apply_plan, plan_k8s
    from tabship.errors import TabshipError
    from tabship.runner import Runner

    runner = Runner(dry_run=dry_run)
    state = DeployState()
    try:
        apply_plan(
            plan_k8s(Artifact.open(model), image, context, runner, state, name, namespace, output),
            runner,
            typer.echo,
        )
    except TabshipError as exc:
        _fail(exc)
        return
    if not dry_run:
        typer.echo(f"deployed: http://{state.external_ip}/")


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


def main() -> None:
    """Console-script entry point."""
    app()
