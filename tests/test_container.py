"""The rendered Dockerfile and build context; the real build runs in tests/container."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tabship.artifact import Artifact
from tabship.container import (
    ImageOptions,
    render_dockerfile,
    render_requirements,
    serving_pins,
    write_context,
)
from tabship.errors import OutputExistsError
from tabship.runner import Runner
from tabship.workflow import TrainedModel

HADOLINT = str(Path(sys.executable).with_name("hadolint"))


@pytest.fixture
def dockerfile(tiny_model: TrainedModel) -> str:
    return render_dockerfile(tiny_model.artifact, ImageOptions(tag="t:1"))


def final_stage(text: str) -> str:
    return text.split("\nFROM ", 2)[2]


def test_hardening_items(dockerfile: str, tiny_model: TrainedModel) -> None:
    assert (
        dockerfile.count("\nFROM ") == 2
        and dockerfile.split("\n")[2] == "FROM python:3.11-slim AS builder"
    )
    runtime = final_stage(dockerfile)
    assert (
        re.search(r"^USER (\d+):(\d+)$", runtime, re.M)
        and int(re.search(r"^USER (\d+)", runtime, re.M).group(1)) >= 10000
    )  # type: ignore[union-attr]
    assert re.search(
        r'^CMD \["/opt/venv/bin/python", "-m", "tabship.serve", "/opt/app/model"\]$', runtime, re.M
    )
    assert "HEALTHCHECK --interval" in runtime and "/healthz" in runtime
    assert (
        "TABSHIP_PORT=8080" in runtime
        and "TABSHIP_HOST=0.0.0.0" in runtime
        and "EXPOSE 8080" in runtime
    )
    assert "pip" not in runtime.lower()
    assert "RUN " not in runtime  # nothing is built or installed in the final stage
    assert f'io.tabship.model.sha256="{tiny_model.artifact.sha256}"' in runtime
    for label in ("version", "source", "created", "revision"):
        assert f"org.opencontainers.image.{label}=" in runtime
    builder = dockerfile.split("\nFROM ", 2)[1]
    assert (
        "--no-index" in builder
        and "--require-hashes" in builder
        and "pip uninstall --yes pip" in builder
    )
    assert "PIP_NO_CACHE_DIR=1" in builder


def test_base_image_option(tiny_model: TrainedModel) -> None:
    text = render_dockerfile(
        tiny_model.artifact, ImageOptions(tag="t:1", base_image="registry.example/corp/python:3.11")
    )
    assert text.count("FROM registry.example/corp/python:3.11") == 2


def test_hadolint_is_clean_and_would_see_a_missing_healthcheck(
    dockerfile: str, tmp_path: Path
) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile)
    clean = subprocess.run(
        [HADOLINT, "--warning", "DL3057", str(path)], capture_output=True, text=True
    )
    assert clean.returncode == 0 and clean.stdout == ""
    broken = tmp_path / "Dockerfile.nohealth"
    broken.write_text(re.sub(r"HEALTHCHECK --interval.*?\n  CMD .*?\n", "", dockerfile, flags=re.S))
    flagged = subprocess.run(
        [HADOLINT, "--warning", "DL3057", str(broken)], capture_output=True, text=True
    )
    assert "DL3057" in flagged.stdout


def test_onnx_images_carry_no_scikit_learn() -> None:
    onnx = serving_pins("onnx")
    assert {"onnxruntime", "numpy", "fastapi", "uvicorn", "jinja2", "prometheus-client"} <= set(
        onnx
    )
    assert not {
        "scikit-learn",
        "scipy",
        "pandas",
        "skops",
        "joblib",
        "sympy",
        "pip",
        "setuptools",
    } & set(onnx)
    sklearn = serving_pins("sklearn")
    assert {"scikit-learn", "scipy", "pandas", "skops"} <= set(sklearn)


def test_requirements_pin_versions_and_hashes() -> None:
    text = render_requirements({"numpy": "2.4.6", "h11": "0.16.0"}, {"numpy": ["ab" * 32]})
    assert "numpy==2.4.6 --hash=sha256:" + "ab" * 32 in text and "\nh11==0.16.0\n" in text


def test_context_holds_only_what_the_image_needs(tiny_model: TrainedModel, tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheels"
    context = tmp_path / "ctx"
    options = ImageOptions(tag="t:1", wheelhouse=wheelhouse, context_dir=context)
    write_context(tiny_model.artifact, options, Runner(), tmp_path / "unused")
    assert sorted(p.name for p in context.iterdir()) == [
        ".dockerignore",
        "Dockerfile",
        "model",
        "requirements.txt",
        "tabship",
        "wheels",
    ]
    assert Artifact.open(context / "model").sha256 == tiny_model.artifact.sha256
    wheels = sorted(p.name for p in (context / "wheels").iterdir())
    assert any(w.startswith("onnxruntime-") for w in wheels) and not any(
        w.startswith("scikit_learn") for w in wheels
    )
    assert all(
        line.count("--hash=sha256:") >= 1
        for line in (context / "requirements.txt").read_text().splitlines()[1:]
    )
    assert not list((context / "tabship").rglob("__pycache__"))
    # A second context from the same wheelhouse needs no download at all.
    runner = Runner()
    write_context(
        tiny_model.artifact,
        ImageOptions(tag="t:1", wheelhouse=wheelhouse, context_dir=tmp_path / "ctx2"),
        runner,
        tmp_path / "unused",
    )
    assert runner.transcript == []
    with pytest.raises(OutputExistsError, match="is not empty"):
        write_context(tiny_model.artifact, options, Runner(), tmp_path / "unused")
    shutil.rmtree(context)
