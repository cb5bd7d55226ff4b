"""Commands that ship a model: image, signature, SBOM, manifests (deploying.py deploys them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tabship.cli.common import app, builder_choice
from tabship.cli.options import (
    BatchJobArg,
    CanaryArg,
    EngineArg,
    GatewayClassArg,
    ModelArg,
    NameArg,
    NamespaceArg,
    ShardsArg,
    VersionArg,
    batch_options,
)


@app.command()
def build(
    model: ModelArg,
    tag: Annotated[str, typer.Option("--tag", "-t", help="Image name, e.g. insurance-app:v1.")],
    builder: Annotated[
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
    engine: EngineArg = None,
    trust: Annotated[
        Path | None,
        typer.Option(
            help="Public key (PEM): build only a model that `tabship sign` signed it with the "
            "matching private key; the image verifies it at every start [TABSHIP_TRUST]."
        ),
    ] = None,
    roles: Annotated[
        list[str] | None,
        typer.Option(
            "--with",
            help="Also what other pods need: batch (the --batch-job Indexed Job), cluster "
            "(Dask workers for --dask-cluster; includes batch).",
        ),
    ] = None,
) -> None:
    """Build a hardened serving image for a model folder with docker or podman."""
    from tabship.config import Settings, trust_from_env
    from tabship.container import DEFAULT_BASE_IMAGE, ImageOptions, build_image
    from tabship.runner import Runner

    options = ImageOptions(
        tag=tag,
        base_image=base_image or DEFAULT_BASE_IMAGE,
        builder=builder_choice(builder, engine),
        wheelhouse=wheelhouse,
        push=push,
        context_dir=context_dir,
        trust=trust or trust_from_env(),
        roles=tuple(roles or ()),
    )
    built = build_image(model, options, Runner(echo=True), Settings.from_env().cache_dir / "wheels")
    typer.echo(
        f"built {built.tag} with {built.builder} (context: {built.context})"
        + (", pushed" if built.pushed else "")
    )


@app.command()
def sign(
    model: ModelArg,
    private_key: Annotated[
        Path,
        typer.Option(
            help="Elliptic-curve private key, PEM "
            "(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out KEY.pem)."
        ),
    ],
    password_env: Annotated[
        str | None,
        typer.Option(
            help="Name of an environment variable holding the private key's password "
            "(never the password itself on the command line)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing signature.")] = False,
) -> None:
    """Sign a model folder (OpenSSF model signing); serve/predict/build --trust check it."""
    from tabship.config import named_variable
    from tabship.signing import sign_model

    password = named_variable(password_env) if password_env is not None else None
    written = sign_model(model, private_key, password, force=force)
    typer.echo(f"signed {model}: {written}")


@app.command()
def sbom(
    model: ModelArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="SBOM file to write (CycloneDX JSON).")
    ] = Path("sbom.cdx.json"),
    wheelhouse: Annotated[
        Path | None, typer.Option(help="Wheel folder (default: the build cache).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Write a CycloneDX SBOM of the serving image's environment for this model."""
    from tabship.config import Settings
    from tabship.outputs import check_output_file
    from tabship.runner import Runner
    from tabship.sbom import write_sbom

    check_output_file(output, force)  # before the wheels are fetched, not after
    written = write_sbom(
        model, output, wheelhouse or Settings.from_env().cache_dir / "wheels", Runner()
    )
    typer.echo(f"wrote {written}")


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
    model: ModelArg,
    image: Annotated[
        str, typer.Option(help="Image reference, ideally by digest (name@sha256:...).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Kustomize folder to write.")
    ] = Path("k8s"),
    name: NameArg = None,
    namespace: NamespaceArg = None,
    min_replicas: Annotated[int, typer.Option(help="HPA minimum.")] = 2,
    max_replicas: Annotated[int, typer.Option(help="HPA maximum.")] = 10,
    cpu_target: Annotated[int, typer.Option(help="HPA CPU utilisation target, percent.")] = 70,
    cpu: Annotated[str, typer.Option(help="CPU request per pod.")] = "250m",
    memory: Annotated[str, typer.Option(help="Memory request and limit per pod.")] = "512Mi",
    force: Annotated[bool, typer.Option(help="Replace files already in the folder.")] = False,
    kserve: Annotated[
        bool,
        typer.Option(
            "--kserve",
            help="A KServe InferenceService (v1beta1, protocolVersion v2) and its ServingRuntime "
            "instead of a Deployment and Service.",
        ),
    ] = False,
    api_keys_secret: Annotated[
        str | None,
        typer.Option(
            help="Secret holding the API keys file under the key `api-keys`, mounted read-only "
            "(kubectl create secret generic NAME --from-file=api-keys=KEYS)."
        ),
    ] = None,
    version: VersionArg = None,
    canary: CanaryArg = None,
    gateway_class: GatewayClassArg = None,
    log_db_secret: Annotated[
        str | None,
        typer.Option(
            help="Log predictions to the database whose URL is in this Secret (key 'url'); "
            "the URL is never written into a manifest."
        ),
    ] = None,
    log_db_port: Annotated[
        int, typer.Option(help="The log database's port, opened for egress.")
    ] = 5432,
    log_sqlite: Annotated[
        bool, typer.Option(help="Log predictions to SQLite on an emptyDir (one file per pod).")
    ] = False,
    batch_job: BatchJobArg = None,
    shards: ShardsArg = None,
    dask_cluster: Annotated[
        bool,
        typer.Option(
            "--dask-cluster", help="Write a DaskCluster (dask-kubernetes operator) to train on."
        ),
    ] = False,
    workers: Annotated[int | None, typer.Option(help="--dask-cluster: worker pods [4].")] = None,
    worker_cpu: Annotated[
        str | None, typer.Option(help="--dask-cluster: CPU per worker [1].")
    ] = None,
    worker_memory: Annotated[
        str | None, typer.Option(help="--dask-cluster: memory request and limit per worker [4Gi].")
    ] = None,
) -> None:
    """Write a kustomize folder (kubectl apply -k DIR) that passes the policy checker."""
    from tabship.artifact import Artifact
    from tabship.deploy.manifest_options import ManifestOptions
    from tabship.deploy.manifests import write_manifests
    from tabship.errors import ConfigError

    # An option of a mode not asked for was ignored without a word.
    for flag, value, needs, given in (
        ("--shards", shards, "--batch-job INPUT OUTPUT", batch_job),
        ("--gateway-class", gateway_class, "--canary PERCENT", canary),
        ("--workers", workers, "--dask-cluster", dask_cluster or None),
        ("--worker-cpu", worker_cpu, "--dask-cluster", dask_cluster or None),
        ("--worker-memory", worker_memory, "--dask-cluster", dask_cluster or None),
    ):
        if value is not None and given is None:
            raise ConfigError(f"{flag} goes with {needs}")
    options = ManifestOptions(
        image=image,
        name=name,
        namespace=namespace,
        api_keys_secret=api_keys_secret,
        version=version,
        **_manifest_extra(min_replicas, max_replicas, cpu_target, cpu, memory),
        log_db_secret=log_db_secret,
        log_db_port=log_db_port,
        log_sqlite=log_sqlite,
    )
    artifact = Artifact.open(model)
    if canary is not None:
        from tabship.deploy.canary import canary_options, write_canary

        if kserve or batch_job or dask_cluster:
            raise ConfigError(
                "--canary replaces a served model: do not combine it with --kserve, "
                "--batch-job or --dask-cluster"
            )
        chosen = canary_options(canary, gateway_class, gke=False)
        written = write_canary(artifact, options, chosen, output, force=force)
        typer.echo(f"wrote {len(written)} files to {output}; apply with: kubectl apply -k {output}")
        return
    if batch_job or dask_cluster:
        from tabship.deploy.batch_job import write_workload

        dask = (
            (
                4 if workers is None else workers,
                "1" if worker_cpu is None else worker_cpu,
                "4Gi" if worker_memory is None else worker_memory,
            )
            if dask_cluster
            else None
        )
        batch = batch_options(batch_job, shards)
        written = write_workload(artifact, options, output, batch, dask, force=force)
    else:
        written = write_manifests(artifact, options, output, force=force, kserve=kserve)
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

    findings = check_objects(load_folder(directory))
    for finding in findings:
        typer.echo(str(finding))
    typer.echo(f"{len(findings)} findings in {directory}", err=True)
    if findings:
        raise typer.Exit(1)
