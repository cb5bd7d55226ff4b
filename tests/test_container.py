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
from tabship.errors import ConfigError, DataError, OutputExistsError
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
    # The Open Inference Protocol's model name stays the folder's (/v2/models/NAME).
    name = tiny_model.artifact.directory.name
    assert f"    TABSHIP_MODEL_NAME={name}\n" in runtime
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
    assert {
        "onnxruntime",
        "numpy",
        "uvicorn",
        "swagger-ui-bundle",
        "jinja2",
        "prometheus-client",
        "sqlalchemy",
        "psycopg",
        "orjson",
    } <= set(onnx)
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
    assert "lightgbm" not in serving_pins("onnx", "lightgbm_fine")
    assert "lightgbm" in serving_pins("sklearn", "lightgbm_fine")
    assert "xgboost-cpu" in serving_pins("sklearn", "xgboost")
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


# A target column name that, pasted into a LABEL unescaped, closes the quote, expands a
# variable and starts a RUN instruction; the second one also breaks the line.
HOSTILE_TARGET = 'charges" \\ $HOME ${PATH} RUN touch /pwned # é'
HOSTILE_LINE_BREAK = 'charges"\nRUN touch /pwned\nLABEL x="'


def train_hostile(folder: Path, target: str, target_label: str | None = None) -> TrainedModel:
    """A quick model (one candidate, two folds) whose target column is named `target`."""
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    from .conftest import make_tiny_table

    folder.mkdir(parents=True, exist_ok=True)
    make_tiny_table().rename(columns={"charges": target}).to_csv(folder / "t.csv", index=False)
    options = TrainOptions(target=target, folds=2, models=["ridge"])
    return train_model(str(folder / "t.csv"), options, folder / "model", target_label=target_label)


def instructions(dockerfile: str) -> list[str]:
    """The instruction keyword of every logical line (continuations joined, comments dropped)."""
    logical = dockerfile.replace("\\\n", " ").splitlines()
    return [line.split()[0] for line in logical if line.strip() and not line.startswith("#")]


def unquote(word: str) -> str:
    """The Dockerfile lexer's reading of one double-quoted word: \\ escapes only \\ " and $."""
    assert word[0] == word[-1] == '"'
    out, chars = [], iter(word[1:-1])
    for ch in chars:
        if ch == "\\":
            following = next(chars)
            out.append(following if following in '\\"$' else ch + following)
        else:
            assert ch not in '"$', f"unescaped {ch} in {word}"
            out.append(ch)
    return "".join(out)


def label_values(dockerfile: str) -> dict[str, str]:
    """LABEL key="value" pairs of the final stage, read the way the lexer reads them."""
    import shlex

    line = next(
        line
        for line in final_stage(dockerfile).replace("\\\n", " ").splitlines()
        if line.startswith("LABEL ")
    )
    pairs = re.findall(r'([\w./-]+)=("(?:[^"\\]|\\.)*")', line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == " ".join(line.split(" ", 1)[1].split())
    shlex.split(line)  # also one well-formed shell-like line
    return {key: unquote(value) for key, value in pairs}


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train_hostile(
        tmp_path_factory.mktemp("hostile"), HOSTILE_TARGET, target_label='Cost "$1" \\ RUN id'
    )


def test_hostile_target_name_is_quoted_in_labels(
    hostile_model: TrainedModel, dockerfile: str, tmp_path: Path
) -> None:
    text = render_dockerfile(hostile_model.artifact, ImageOptions(tag="t:1"))
    assert instructions(text) == instructions(dockerfile)  # no instruction added
    assert not re.search(r"^\s*RUN", final_stage(text), re.M)
    labels = label_values(text)
    assert labels["org.opencontainers.image.title"] == f"tabship model ridge ({HOSTILE_TARGET})"
    assert labels["org.opencontainers.image.description"] == 'predicts Cost "$1" \\ RUN id'
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    linted = subprocess.run(
        [HADOLINT, "--warning", "DL3057", str(path)], capture_output=True, text=True
    )
    assert linted.returncode == 0 and linted.stdout == "", linted.stdout


def test_a_target_name_with_line_breaks_is_labelled_by_its_escapes(
    tmp_path: Path, dockerfile: str
) -> None:
    # A table's column name: refusing it at build said "retrain" after the training.
    model = train_hostile(tmp_path, HOSTILE_LINE_BREAK)
    text = render_dockerfile(model.artifact, ImageOptions(tag="t:1"))
    assert instructions(text) == instructions(dockerfile)  # no instruction added
    assert not re.search(r"^\s*RUN", final_stage(text), re.M)
    title = label_values(text)["org.opencontainers.image.title"]
    assert title == f"tabship model ridge ({HOSTILE_LINE_BREAK.replace(chr(10), chr(92) + 'n')})"
    context = tmp_path / "context"
    write_context(
        model.artifact, ImageOptions(tag="t:1", context_dir=context), Runner(), tmp_path / "u"
    )
    assert (context / "Dockerfile").read_text() == text


def test_user_labels_and_base_image_cannot_add_instructions(tiny_model: TrainedModel) -> None:
    with pytest.raises(DataError, match="the label x 'a\\\\nRUN id'"):
        render_dockerfile(tiny_model.artifact, ImageOptions(tag="t:1", labels={"x": "a\nRUN id"}))
    with pytest.raises(ConfigError, match="label name"):
        render_dockerfile(tiny_model.artifact, ImageOptions(tag="t:1", labels={'x="1" y': "v"}))
    with pytest.raises(ConfigError, match="--base-image"):
        render_dockerfile(
            tiny_model.artifact, ImageOptions(tag="t:1", base_image="python:3.11\nRUN id")
        )
    quoted = render_dockerfile(tiny_model.artifact, ImageOptions(tag="t:1", labels={"x": '"$'}))
    assert label_values(quoted)["x"] == '"$'


def test_roles_add_what_batch_and_cluster_pods_import(tiny_model: TrainedModel) -> None:
    from tabship.container import image_pins

    serving = image_pins(tiny_model.artifact)
    batch = image_pins(tiny_model.artifact, ("batch",))
    cluster = image_pins(tiny_model.artifact, ("cluster",))
    assert {"pandas", "pyarrow", "typer", "fsspec"} <= set(batch) - set(serving)
    assert {"dask", "distributed", "scikit-learn", "lightgbm"} <= set(cluster)
    assert set(batch) <= set(cluster)
    with pytest.raises(ConfigError, match="--with 'gpu' is not one of: batch, cluster"):
        image_pins(tiny_model.artifact, ("gpu",))
