"""Commands that ship a model: image, SBOM, manifests, deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tabship.cli.common import app, builder_choice, deploy_app

# Options several commands take, declared once.
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


def _batch_options(batch_job: tuple[str, str] | None, shards: int | None) -> Any:
    from tabship.deploy.batch_job import BatchJobOptions
    from tabship.errors import ConfigError

    if batch_job is None:
        if shards is not None:
            raise ConfigError("--shards goes with --batch-job INPUT OUTPUT")
        return None
    if shards is None:
        raise ConfigError("--batch-job needs --shards N, the number of pods that share the input")
    return BatchJobOptions(source=batch_job[0], output=batch_job[1], shards=shards)


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
    from tabship.deploy.manifests import ManifestOptions, write_manifests
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
        batch = _batch_options(batch_job, shards)
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


@deploy_app.command("gke")
def deploy_gke(
    model: ModelArg,
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
    autopilot: Annotated[
        bool,
        typer.Option(
            "--autopilot",
            show_default=False,
            help="Autopilot cluster: what is made without --nodes; said for clarity.",
        ),
    ] = False,
    builder: Annotated[
        str | None, typer.Option(help="docker or podman, to build and push (default docker).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Object and image name (default tabship-TARGET).")
    ] = None,
    output: OutputArg = None,
    dry_run: DryRunArg = False,
    engine: EngineArg = None,
    version: VersionArg = None,
    canary: CanaryArg = None,
    gateway_class: Annotated[
        str | None,
        typer.Option(
            help="GatewayClass of the canary's Gateway (GKE: default gke-l7-global-external-managed)."
        ),
    ] = None,
    api_keys_secret: ApiKeysSecretArg = None,
    batch_job: BatchJobArg = None,
    shards: ShardsArg = None,
) -> None:
    """Artifact Registry, build and push, GKE cluster, kubectl apply, rollout, external IP."""
    from tabship.artifact import Artifact
    from tabship.config import Settings
    from tabship.deploy.canary import canary_options
    from tabship.deploy.gke import DeployState, GkeOptions, apply_plan, plan_gke
    from tabship.errors import ConfigError
    from tabship.runner import Runner

    if nodes is not None and autopilot:
        raise ConfigError("--nodes makes a Standard cluster; do not combine it with --autopilot")
    runner = Runner(dry_run=dry_run)
    state = DeployState()
    options = GkeOptions(
        project=project,
        region=region,
        cluster=cluster,
        repository=repository,
        nodes=nodes,
        builder=builder_choice(builder, engine) or "docker",
        name=name,
        manifests_dir=output,
        wheelhouse=Settings.from_env().cache_dir / "wheels",
        version=version,
        manifest_options={"version": version, "api_keys_secret": api_keys_secret},
        canary=None if canary is None else canary_options(canary, gateway_class, gke=True),
        batch=_batch_options(batch_job, shards),
    )
    apply_plan(plan_gke(Artifact.open(model), options, runner, state), runner, typer.echo)
    if canary is not None and not dry_run:
        typer.echo(f"canary running; its Gateway: kubectl get gateway {name or 'APP'}")
    else:
        _done(dry_run, options.batch, state.external_ip)


@deploy_app.command("k8s")
def deploy_k8s(
    model: ModelArg,
    image: Annotated[
        str, typer.Option(help="An image the cluster can pull (built with `tabship build`).")
    ],
    context: Annotated[
        str | None, typer.Option(help="kubectl context (default: the current one).")
    ] = None,
    name: NameArg = None,
    namespace: NamespaceArg = None,
    output: OutputArg = None,
    dry_run: DryRunArg = False,
    version: VersionArg = None,
    canary: CanaryArg = None,
    gateway_class: GatewayClassArg = None,
    api_keys_secret: ApiKeysSecretArg = None,
    batch_job: BatchJobArg = None,
    shards: ShardsArg = None,
) -> None:
    """Apply the manifests to any cluster kubectl reaches, wait for the rollout and the IP."""
    from tabship.artifact import Artifact
    from tabship.deploy.canary import canary_options
    from tabship.deploy.gke import DeployState, apply_plan, plan_k8s
    from tabship.runner import Runner

    runner = Runner(dry_run=dry_run)
    state = DeployState()
    chosen = None if canary is None else canary_options(canary, gateway_class, gke=False)
    extra: dict[str, object] = {"version": version, "api_keys_secret": api_keys_secret}
    batch = _batch_options(batch_job, shards)
    apply_plan(
        plan_k8s(
            Artifact.open(model),
            image,
            context,
            runner,
            state,
            name,
            namespace,
            output,
            extra,
            chosen,
            batch=batch,
        ),
        runner,
        typer.echo,
    )
    if chosen is not None and not dry_run:
        typer.echo(f"canary running at {chosen.percent}%; judge it with `tabship rollout check`")
    else:
        _done(dry_run, batch, state.external_ip)


def _done(dry_run: bool, batch: Any, external_ip: str) -> None:
    if dry_run:
        return
    if batch is not None:
        typer.echo(f"every shard of {batch.source} is scored into {batch.output}")
    else:
        typer.echo(f"deployed: http://{external_ip}/")
