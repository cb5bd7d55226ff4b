"""S1 and S2: nothing untrusted is deserialised, and no pickle-style loader is reachable from serving."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tabship import artifact as art
from tabship.workflow import TrainedModel

from .servers import TABSHIP

SRC = Path(__file__).resolve().parents[1] / "src" / "tabship"


class Booby:
    """Unpickling this creates a marker file: proof that a loader ran the payload."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.marker), "pwned"))  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["pipeline.skops", "model.onnx"])
def test_a_pickle_swapped_in_is_refused_before_anything_runs(
    tiny_model: TrainedModel, tmp_path: Path, name: str
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model.artifact.directory, folder)
    marker = tmp_path / "marker"
    expected = json.loads((folder / art.METADATA).read_text())["files"][name]
    (folder / name).write_bytes(pickle.dumps(Booby(str(marker))))
    actual = art.sha256_bytes((folder / name).read_bytes())
    for engine in ("onnx", "sklearn"):
        result = subprocess.run(
            [TABSHIP, "serve", str(folder), "--engine", engine, "--port", "1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"sha256 expected {expected}, actual {actual}" in result.stderr
    assert not marker.exists()


def test_a_resealed_pickle_is_refused_by_the_skops_allowlist(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model.artifact.directory, folder)
    marker = tmp_path / "marker"
    payload = pickle.dumps(Booby(str(marker)))
    (folder / "pipeline.skops").write_bytes(payload)
    meta = json.loads((folder / art.METADATA).read_text())
    meta.pop("metadata_sha256")
    meta["files"]["pipeline.skops"] = art.sha256_bytes(payload)
    (folder / art.METADATA).write_bytes(art._seal(meta))
    result = subprocess.run(
        [
            TABSHIP,
            "predict",
            str(folder),
            "x.csv",
            "-o",
            str(tmp_path / "o.csv"),
            "--engine",
            "sklearn",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "cannot be loaded safely" in result.stderr
    assert not marker.exists()


FORBIDDEN_CALLS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("joblib", "load"),
    ("dill", "load"),
    ("cloudpickle", "load"),
    ("marshal", "loads"),
}


def test_no_pickle_style_loader_and_no_unrestricted_skops_load_in_the_code() -> None:
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                )
                offences += [
                    f"{path.name}: imports {n}"
                    for n in names
                    if n
                    and n.split(".")[0] in {"pickle", "dill", "cloudpickle", "marshal", "shelve"}
                ]
                # joblib runs training on a Dask cluster (cluster.py); its loader stays out.
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("joblib"):
                    offences += [
                        f"{path.name}: imports joblib's {alias.name}"
                        for alias in node.names
                        if alias.name in {"load", "numpy_pickle", "*"}
                    ]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = (
                    owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                )
                if (owner_name, node.func.attr) in FORBIDDEN_CALLS:
                    offences.append(f"{path.name}:{node.lineno}: {owner_name}.{node.func.attr}")
                if owner_name == "io" and node.func.attr in {"load", "loads"}:
                    trusted = {kw.arg: kw.value for kw in node.keywords}.get("trusted")
                    if not (isinstance(trusted, ast.Name) and trusted.id == "SKOPS_ALLOWED_TYPES"):
                        offences.append(
                            f"{path.name}:{node.lineno}: skops load without the fixed allowlist"
                        )
    assert offences == []


def test_serving_imports_no_pickle_loader_at_run_time(tiny_model: TrainedModel) -> None:
    script = (
        "import sys\n"
        "from tabship.predictor import Predictor\n"
        "from tabship.serve.app import create_app\n"
        f"create_app(Predictor.load({str(tiny_model.artifact.directory)!r}))\n"
        "print(sorted(m for m in ('joblib', 'skops', 'skops.io', 'dill', 'cloudpickle') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
