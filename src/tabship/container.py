"""Container images: render the Dockerfile (pure), write the build context, run docker or podman.

"Builder" is the container tool (docker or podman); "engine" stays the inference engine
(onnx or sklearn) recorded in the model card.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tabship import __version__
from tabship.artifact import Artifact
from tabship.errors import ConfigError, DataError, OutputExistsError
from tabship.imageref import IMAGE_REFERENCE, IMAGE_TAG
from tabship.runner import Runner, ToolError

DEFAULT_BASE_IMAGE = "python:3.11-slim"
RUNTIME_UID = 10001
PORT = 8080
# What serving imports; the rest of the image is their dependency closure, nothing else.
SERVING_PACKAGES = (
    "numpy",
    "onnxruntime",
    "swagger-ui-bundle",
    "uvicorn",
    "uvloop",
    "httptools",
    "jinja2",
    "prometheus-client",
    # The prediction log (--log-db / TABSHIP_LOG_DB): SQLite through SQLAlchemy, or PostgreSQL.
    "sqlalchemy",
    "psycopg",
    "psycopg-binary",
    "orjson",
)
SKLEARN_PACKAGES = ("scikit-learn", "skops", "pandas")
# Verifying a signature at start (`--trust`); model-signing imports pyopenssl undeclared.
SIGNING_PACKAGES = ("model-signing", "pyopenssl")
TRUST_FILE = "trust.pem"
# Candidate name prefix -> the package its fitted model unpickles from (see candidates.py).
BOOSTER_PACKAGES = {"lightgbm": "lightgbm", "xgboost": "xgboost-cpu"}


@dataclass(frozen=True)
class ImageOptions:
    """What `tabship build` was asked for."""

    tag: str
    base_image: str = DEFAULT_BASE_IMAGE
    builder: str | None = None
    wheelhouse: Path | None = None
    push: bool = False
    context_dir: Path | None = None
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    labels: dict[str, str] = field(default_factory=dict)
    # The public key a signed model is checked with, copied into the image.
    trust: Path | None = None
    # `--with batch` / `--with cluster`: what the Indexed Job's or Dask workers' pods import.
    roles: tuple[str, ...] = ()


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(top: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `top` and everything they require here (markers evaluated, no extras)."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    pending = list(top)
    while pending:
        name = _normal(pending.pop())
        if name in pins:
            continue
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise ConfigError(
                f"{name} is needed in the image but not installed here; install tabship's dependencies"
            ) from None
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return dict(sorted(pins.items()))


def serving_pins(engine: str, model: str = "", signed: bool = False) -> dict[str, str]:
    """Pinned packages for an image serving with `engine` (no scikit-learn when ONNX serves).

    A booster served by scikit-learn also needs its own library; under ONNX it needs none.
    An image that checks a signature at start also holds model-signing.
    """
    top = SERVING_PACKAGES + (SIGNING_PACKAGES if signed else ())
    if engine != "sklearn":
        return dependency_closure(top)
    boosters = tuple(lib for prefix, lib in BOOSTER_PACKAGES.items() if model.startswith(prefix))
    return dependency_closure(top + SKLEARN_PACKAGES + boosters)


def image_pins(
    artifact: Artifact, roles: tuple[str, ...] = (), signed: bool = False
) -> dict[str, str]:
    """The serving pins plus what each extra role needs (see tabship.roles)."""
    from tabship.roles import role_packages

    pins = serving_pins(artifact.card.engine, artifact.card.model.name, signed)
    return dict(sorted({**pins, **dependency_closure(role_packages(roles))}.items()))


def render_requirements(pins: dict[str, str], hashes: dict[str, list[str]]) -> str:
    """A requirements file with exact versions and the sha256 of every allowed wheel."""
    lines = ["# Serving dependencies, pinned to the versions tabship trained with.\n"]
    for name, version in pins.items():
        digests = " ".join(f"--hash=sha256:{h}" for h in hashes.get(name, []))
        lines.append(f"{name}=={version} {digests}".rstrip() + "\n")
    return "".join(lines)


# Characters a Dockerfile line cannot carry inside a quoted word: a newline ends the
# instruction (a backslash before it only continues the line), and the rest are control bytes.
_UNQUOTABLE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def refuse_line_breaks(value: str, what: str) -> None:
    """DataError naming `what` and `value` when it holds a newline or control character."""
    if _UNQUOTABLE.search(value):
        raise DataError(
            f"{what} {value!r} holds a newline or control character, which a Dockerfile LABEL "
            "cannot carry; rename it (retrain with a name without it) and build again"
        )


def one_line(text: str) -> str:
    """`text` with each line break or control character written as its escape (`\\n`)."""
    return _UNQUOTABLE.sub(lambda found: repr(found.group())[1:-1], text)


def quote_label(value: str) -> str:
    """`value` as a double-quoted Dockerfile word that reads back as exactly `value`.

    Inside double quotes the Dockerfile lexer treats only `\\`, `"` and `$` specially (the
    last expands variables), so each is backslash-escaped. A newline or control character
    cannot be written in a quoted word at all (a backslash before a newline only continues
    the line), so it is refused.
    """
    refuse_line_breaks(value, "the label value")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _label_lines(artifact: Artifact, options: ImageOptions) -> str:
    card = artifact.card
    # The labels given to this build are checked first, so a refusal names what was written.
    for key, value in options.labels.items():
        refuse_line_breaks(value, f"the label {key}")
    bad_keys = [key for key in options.labels if not _LABEL_KEY.fullmatch(key)]
    if bad_keys:
        raise ConfigError(
            f"label name {bad_keys[0]!r} is not of letters, digits, '.', '/', '-' and '_'"
        )
    # The model's own strings (a table's column name may hold a line break) are written as
    # their Python escapes: a description, not a value anything reads back.
    described = f"predicts {one_line(card.title)}" + (
        f" in {one_line(card.unit)}" if card.unit else ""
    )
    labels = {
        "org.opencontainers.image.title": f"tabship model {card.model.name} ({one_line(card.target)})",
        "org.opencontainers.image.description": described,
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.source": f"pkg:pypi/tabship@{__version__}",
        "org.opencontainers.image.created": card.created,
        "org.opencontainers.image.revision": artifact.sha256,
        "io.tabship.model.sha256": artifact.sha256,
        "io.tabship.engine": card.engine,
        **options.labels,
    }
    return " \\\n      ".join(f"{key}={quote_label(value)}" for key, value in labels.items())


def render_dockerfile(artifact: Artifact, options: ImageOptions) -> str:
    """The multi-stage Dockerfile: a builder with pip, a final stage with the venv and the model only.

    Every value from the model card or the user is quoted by `quote_label`; the base image must
    look like an image reference, so no user string can start a new instruction.
    """
    if not IMAGE_REFERENCE.fullmatch(options.base_image):
        raise ConfigError(
            f"--base-image {options.base_image!r} is not an image reference such as python:3.11-slim"
        )
    label_lines = _label_lines(artifact, options)
    # The image serves the folder as /opt/app/model: keep the Open Inference Protocol's model
    # name the folder's own (a name of other characters leaves the default, "model").
    folder = artifact.directory.resolve().name
    model_name = (
        f" \\\n    TABSHIP_MODEL_NAME={folder}"
        if re.fullmatch(r"[A-Za-z0-9._-]{1,100}", folder)
        else ""
    )
    # A signed model is verified against the key copied in, at every start of the container.
    trust = (
        f"COPY {TRUST_FILE} /opt/app/{TRUST_FILE}\nENV TABSHIP_TRUST=/opt/app/{TRUST_FILE}\n"
        if options.trust
        else ""
    )
    health = (
        "import os, urllib.request; "
        "urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TABSHIP_PORT', '8080') + '/healthz', timeout=2)"
    )
    return f"""# syntax=docker/dockerfile:1
# Rendered by tabship {__version__}. Builder: installs pinned wheels from wheels/ only (no index).
FROM {options.base_image} AS builder
HEALTHCHECK NONE
LABEL io.tabship.stage="builder"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY requirements.txt /build/requirements.txt
COPY wheels/ /build/wheels/
COPY tabship/ /opt/app/lib/tabship/
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-index --find-links /build/wheels --no-deps --require-hashes -r /build/requirements.txt \\
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \\
 && find /opt/venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {{}} + \\
 && find /opt/venv -name '*.pyx' -delete -o -name '*.pxd' -delete -o -name '*.h' -delete \\
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib /opt/app/lib

# Runtime: no pip, no compilers, no caches; a numeric non-root user; read-only root file system friendly.
FROM {options.base_image}
LABEL {label_lines}
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/app/lib /opt/app/lib
COPY model/ /opt/app/model/
{trust}ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONPATH=/opt/app/lib \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    TABSHIP_HOST=0.0.0.0 \\
    TABSHIP_PORT={PORT}{model_name}
USER {RUNTIME_UID}:{RUNTIME_UID}
WORKDIR /tmp
EXPOSE {PORT}
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \\
  CMD ["/opt/venv/bin/python", "-c", "{health}"]
CMD ["/opt/venv/bin/python", "-m", "tabship.serve", "/opt/app/model"]
"""


DOCKERIGNORE = "**/__pycache__\n**/*.pyc\n.git\n"


def _wheel_matches(path: Path, name: str, version: str) -> bool:
    parts = path.name.split("-")
    return len(parts) >= 5 and _normal(parts[0]) == name and parts[1] == version


def fill_wheelhouse(
    pins: dict[str, str], wheelhouse: Path, python_version: str, runner: Runner
) -> dict[str, list[str]]:
    """Download into `wheelhouse` whatever pinned wheel it lacks; return each package's wheel sha256s."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    missing = [
        f"{name}=={version}"
        for name, version in pins.items()
        if not any(_wheel_matches(p, name, version) for p in wheelhouse.glob("*.whl"))
    ]
    if missing:
        runner.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                python_version,
                "--dest",
                str(wheelhouse),
                *missing,
            ],
            step="download wheels into the wheelhouse",
        )
    hashes: dict[str, list[str]] = {}
    for name, version in pins.items():
        wheels = sorted(p for p in wheelhouse.glob("*.whl") if _wheel_matches(p, name, version))
        if not wheels:
            raise ToolError(
                f"the wheelhouse {wheelhouse} has no wheel for {name}=={version}; download it there (pip download)"
            )
        hashes[name] = [hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels]
    return hashes


def write_context(
    artifact: Artifact, options: ImageOptions, runner: Runner, default_wheelhouse: Path
) -> Path:
    """Write the build context: Dockerfile, .dockerignore, requirements.txt, wheels/, model/, tabship/."""
    context = options.context_dir or Path(tempfile.mkdtemp(prefix="tabship-build-"))
    if context.exists() and any(context.iterdir()):
        raise OutputExistsError(f"{context} is not empty; give --context-dir a new or empty folder")
    # First: it refuses a label a Dockerfile cannot carry (a newline in the target), and a
    # refusal must not leave a half-written context behind.
    dockerfile = render_dockerfile(artifact, options)
    context.mkdir(parents=True, exist_ok=True)
    pins = image_pins(artifact, options.roles, signed=options.trust is not None)
    wheelhouse = options.wheelhouse or default_wheelhouse
    hashes = fill_wheelhouse(pins, wheelhouse, options.python_version, runner)
    (context / "wheels").mkdir()
    for name, version in pins.items():
        for wheel in wheelhouse.glob("*.whl"):
            if _wheel_matches(wheel, name, version):
                shutil.copy2(wheel, context / "wheels" / wheel.name)
    model = context / "model"
    model.mkdir()
    for name in ["tabship.json", *artifact.card.files]:
        (model / name).write_bytes(
            artifact.read(name)
            if name != "tabship.json"
            else (artifact.directory / name).read_bytes()
        )
    if options.trust is not None:
        from tabship.signing import SIGNATURE_FILE

        shutil.copyfile(artifact.directory / SIGNATURE_FILE, model / SIGNATURE_FILE)
        shutil.copyfile(options.trust, context / TRUST_FILE)
    package = Path(__file__).resolve().parent
    shutil.copytree(
        package, context / "tabship", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (context / "requirements.txt").write_text(render_requirements(pins, hashes))
    (context / ".dockerignore").write_text(DOCKERIGNORE)
    (context / "Dockerfile").write_text(dockerfile)
    return context


BUILDERS = ("docker", "podman")


def check_builder(builder: str) -> str:
    """`builder` if it is a container tool tabship drives, else a ConfigError."""
    if builder not in BUILDERS:
        raise ConfigError(f"--builder {builder!r} is not one of: {', '.join(BUILDERS)}")
    return builder


def pick_builder(preferred: str | None, runner: Runner) -> str:
    """The container tool: the one asked for, else docker when its daemon answers, else podman."""
    if preferred is not None:
        return check_builder(preferred)
    has_docker, has_podman = shutil.which("docker") is not None, shutil.which("podman") is not None
    if has_docker and (
        not has_podman
        or runner.run(["docker", "info"], step="docker info", check=False).returncode == 0
    ):
        return "docker"
    if has_podman:
        return "podman"
    raise ToolError("build: neither docker nor podman is installed; install one, or pass --builder")


@dataclass(frozen=True)
class BuiltImage:
    """The outcome of `tabship build`."""

    tag: str
    builder: str
    context: Path
    pushed: bool


def build_image(
    model: Path, options: ImageOptions, runner: Runner, default_wheelhouse: Path
) -> BuiltImage:
    """Verify the model, write the context and build (and push) the image with docker or podman."""
    if not IMAGE_TAG.fullmatch(options.tag):  # refused by docker only after the context was written
        raise ConfigError(
            f"-t {options.tag[:80]!r} is not an image name such as registry.example/team/app:v1 "
            "(lower-case name parts; a tag of letters, digits, '_', '.' and '-')"
        )
    sealed = None
    if options.trust is not None:  # before anything in the folder is deserialised
        from tabship.signing import verify_model

        sealed = verify_model(model, options.trust)
    artifact = Artifact.open(model)
    if sealed is not None:
        from tabship.signing import check_sealed

        check_sealed(artifact.sha256, sealed, model)
    builder = pick_builder(options.builder, runner)
    context = write_context(artifact, options, runner, default_wheelhouse)
    build: list[str] = [builder, "build", "--tag", options.tag]
    if builder == "podman":
        build += ["--format", "docker"]  # the OCI format drops HEALTHCHECK
    runner.run([*build, str(context)], step=f"{builder} build")
    if options.push:
        runner.run([builder, "push", options.tag], step=f"{builder} push")
    return BuiltImage(options.tag, builder, context, options.push)
