"""The serving image's SBOM: its environment rebuilt from the image's own pins, described."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from tabship.artifact import Artifact
from tabship.container import ImageOptions, fill_wheelhouse, render_requirements, serving_pins
from tabship.runner import Runner


def write_sbom(model: Path, output: Path, wheelhouse: Path, runner: Runner) -> Path:
    """A CycloneDX SBOM of the serving image's environment, for this model's engine.

    The environment is rebuilt from the same hash-pinned requirements and wheels the image
    installs, in a scratch virtual environment, and described by cyclonedx-py.
    """
    artifact = Artifact.open(model)
    pins = serving_pins(artifact.card.engine, artifact.card.model.name)
    hashes = fill_wheelhouse(pins, wheelhouse, ImageOptions(tag="sbom").python_version, runner)
    scratch = Path(tempfile.mkdtemp(prefix="tabship-sbom-"))
    try:
        lock = scratch / "requirements.txt"
        lock.write_text(render_requirements(pins, hashes))
        python = scratch / "venv" / "bin" / "python"
        runner.run(
            [sys.executable, "-m", "venv", "--without-pip", str(scratch / "venv")],
            step="create the SBOM environment",
        )
        runner.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--quiet",
                "--no-index",
                "--find-links",
                str(wheelhouse),
                "--no-deps",
                "--require-hashes",
                "-r",
                str(lock),
            ],
            step="install the serving wheels",
        )
        tool = shutil.which("cyclonedx-py") or str(Path(sys.executable).with_name("cyclonedx-py"))
        output.parent.mkdir(parents=True, exist_ok=True)
        runner.run(
            [
                tool,
                "environment",
                "--of",
                "JSON",
                "--output-reproducible",
                "-o",
                str(output),
                str(python),
            ],
            step="cyclonedx-py environment",
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output
