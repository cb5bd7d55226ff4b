from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from tabship import artifact as art
from tabship.artifact import Artifact
from tabship.errors import ArtifactError, OutputExistsError
from tabship.predictor import Predictor
from tabship.workflow import TrainedModel


@pytest.fixture
def model_copy(tiny_model: TrainedModel, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model.artifact.directory, folder)
    return folder


def reseal(folder: Path, change: dict[str, object]) -> None:
    """Rewrite tabship.json with a valid self-checksum, as a careful attacker would."""
    meta = json.loads((folder / art.METADATA).read_text())
    meta.pop("metadata_sha256")
    meta.update(change)
    (folder / art.METADATA).write_bytes(art._seal(meta))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_folder_layout_and_metadata(tiny_model: TrainedModel) -> None:
    folder = tiny_model.artifact.directory
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.onnx",
        "pipeline.skops",
        "profile.json",
        "report.html",
        "tabship.json",
    ]
    meta = json.loads((folder / art.METADATA).read_text())
    assert meta["format_version"] == art.FORMAT_VERSION and meta["engine"] == "onnx"
    assert meta["onnx"]["passed"] and meta["onnx"]["max_abs_diff"] <= meta["onnx"]["tolerance"]
    assert meta["files"]["model.onnx"] == art.sha256_bytes((folder / "model.onnx").read_bytes())
    assert meta["training"]["rows"] == 120 and len(meta["training"]["sha256"]) == 64
    assert meta["versions"]["scikit-learn"] and meta["versions"]["onnxruntime"]
    assert meta["target_label"] == "Charges" and meta["unit"] == "USD"
    assert [row["name"] for row in meta["leaderboard"]][0] == meta["model"]["name"]


@pytest.mark.parametrize("name", ["model.onnx", "pipeline.skops", "report.html"])
def test_tampered_model_file_is_refused(model_copy: Path, name: str) -> None:
    flip_byte(model_copy / name, 200)
    with pytest.raises(ArtifactError) as caught:
        Artifact.open(model_copy)
    message = str(caught.value)
    assert f"{model_copy / name} was modified: sha256 expected" in message and "actual" in message


@pytest.mark.parametrize("offset", [0, 500, -2])
def test_tampered_metadata_is_refused(model_copy: Path, offset: int) -> None:
    path = model_copy / art.METADATA
    flip_byte(path, offset if offset >= 0 else path.stat().st_size + offset)
    with pytest.raises(
        ArtifactError, match=r"tabship\.json (was modified|is not a tabship metadata file)"
    ):
        Artifact.open(model_copy)


def test_edited_metadata_value_is_refused(model_copy: Path) -> None:
    path = model_copy / art.METADATA
    path.write_text(path.read_text().replace('"task": "regression"', '"task": "classification"'))
    with pytest.raises(ArtifactError, match="was modified: sha256 expected"):
        Artifact.open(model_copy)


def test_missing_file_is_refused(model_copy: Path) -> None:
    (model_copy / "pipeline.skops").unlink()
    with pytest.raises(ArtifactError, match="pipeline.skops is missing"):
        Artifact.open(model_copy)


def test_symlink_inside_folder_is_refused(model_copy: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.onnx"
    (model_copy / "model.onnx").rename(real)
    (model_copy / "model.onnx").symlink_to(real)
    with pytest.raises(ArtifactError, match="is a symbolic link"):
        Artifact.open(model_copy)


@pytest.mark.parametrize("name", ["../model.onnx", "/etc/passwd", "sub/model.onnx", "evil.pkl"])
def test_path_tricks_in_file_list_are_refused(model_copy: Path, name: str) -> None:
    files = json.loads((model_copy / art.METADATA).read_text())["files"]
    reseal(model_copy, {"files": {**files, name: "0" * 64}})
    with pytest.raises(
        ArtifactError,
        match="only model.onnx, pipeline.skops, profile.json, report.html are allowed",
    ):
        Artifact.open(model_copy)


def test_a_newer_major_format_is_refused_naming_the_tabship_that_reads_it(
    model_copy: Path,
) -> None:
    versions = json.loads((model_copy / art.METADATA).read_text())["versions"]
    reseal(model_copy, {"format_version": "2.0", "versions": {**versions, "tabship": "2.3.0"}})
    with pytest.raises(
        ArtifactError,
        match="written by tabship 2.3.0 in model format 2.0; this tabship reads format 1.x: "
        "install tabship 2.3.0 or later",
    ):
        Artifact.open(model_copy)


def test_a_newer_minor_format_with_unknown_keys_is_read(model_copy: Path) -> None:
    reseal(model_copy, {"format_version": "1.9", "drift": {"bins": [1, 2]}, "owner": "x"})
    card = Artifact.open(model_copy).card
    assert card.format_version == (1, 9) and card.target == "charges"


def test_round_one_cards_are_read(model_copy: Path) -> None:
    reseal(model_copy, {"format_version": 1})
    assert Artifact.open(model_copy).card.format_version == (1, 0)


def test_the_card_is_typed(tiny_model: TrainedModel) -> None:
    card = tiny_model.artifact.card
    assert card.task == "regression" and card.engine == "onnx" and card.title == "Charges"
    assert card.model.cv.folds == 3 and card.onnx.passed and card.training.rows == 120
    assert card.schema.names == ["age", "bmi", "children", "smoker", "region"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.target = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "change",
    [{"task": "ranking"}, {"engine": "tensorflow"}, {"model": {"name": "x"}}, {"training": 3}],
)
def test_a_malformed_card_names_what_is_wrong(model_copy: Path, change: dict[str, object]) -> None:
    reseal(model_copy, change)
    with pytest.raises(ArtifactError, match="tabship.json"):
        Artifact.open(model_copy)


@pytest.mark.parametrize(
    ("engine", "package"), [("onnx", "onnxruntime"), ("sklearn", "scikit-learn")]
)
def test_engine_library_version_mismatch_is_refused(
    model_copy: Path, engine: str, package: str
) -> None:
    versions = json.loads((model_copy / art.METADATA).read_text())["versions"]
    reseal(model_copy, {"versions": {**versions, package: "0.1.0"}})
    with pytest.raises(
        ArtifactError, match=f"trained with {package} 0.1.0.*install {package}==0.1.0 or retrain"
    ):
        Predictor.load(model_copy, engine=engine)


def test_skops_allowlist_refuses_foreign_types(model_copy: Path) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    # A function reference is exactly what a malicious pipeline file would smuggle in.
    smuggled = skops.io.dumps(FunctionTransformer(func=shutil.rmtree))
    (model_copy / "pipeline.skops").write_bytes(smuggled)
    files = json.loads((model_copy / art.METADATA).read_text())["files"]
    reseal(model_copy, {"files": {**files, "pipeline.skops": art.sha256_bytes(smuggled)}})
    with pytest.raises(ArtifactError, match="cannot be loaded safely.*shutil.rmtree"):
        Predictor.load(model_copy, engine="sklearn")


def test_existing_output_is_not_overwritten(model_copy: Path) -> None:
    before = (model_copy / art.METADATA).read_bytes()
    with pytest.raises(OutputExistsError, match="pass --force to replace it"):
        art.write_artifact(model_copy, {"engine": "onnx"}, {})
    assert (model_copy / art.METADATA).read_bytes() == before


def test_force_replaces_atomically(model_copy: Path, tiny_model: TrainedModel) -> None:
    meta = {
        k: v
        for k, v in tiny_model.artifact.card.document.items()
        if k not in {"metadata_sha256", "files", "versions", "format", "format_version", "created"}
    }
    files = {
        name: (tiny_model.artifact.directory / name).read_bytes()
        for name in ("model.onnx", "pipeline.skops")
    }
    art.write_artifact(model_copy, meta, files, force=True)
    assert Artifact.open(model_copy).card.engine == "onnx"
    assert [p.name for p in model_copy.parent.iterdir() if p.name.startswith(".")] == []


def test_force_replaces_a_model_folder_and_nothing_else(model_copy: Path, tmp_path: Path) -> None:
    """--force replaces a model, never what the user keeps at -o: a table, a folder of their
    own, or their files put inside a model folder (the replacement would delete them)."""
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(OutputExistsError, match="table.csv is a file, not a model folder"):
        art.write_artifact(table, {"engine": "onnx"}, {}, force=True)
    assert table.read_text() == "a,b\n1,2\n"
    own = tmp_path / "own"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="is not a model folder \\(no tabship.json\\)"):
        art.write_artifact(own, {"engine": "onnx"}, {}, force=True)
    assert (own / "notes.txt").read_text() == "mine"
    before = (model_copy / art.METADATA).read_bytes()
    for name in ("notes.txt", "b.csv", "c.csv", "d.csv"):
        (model_copy / name).write_text("mine")
    with pytest.raises(OutputExistsError, match="'b.csv', 'c.csv', 'd.csv' and 1 more\\); --force"):
        art.write_artifact(model_copy, {"engine": "onnx"}, {}, force=True)
    assert (model_copy / "notes.txt").read_text() == "mine"
    assert (model_copy / art.METADATA).read_bytes() == before
