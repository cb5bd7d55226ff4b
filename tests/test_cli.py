"""The real console script, run as a user would; errors are one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tabship.workflow import TrainedModel

from .servers import TABSHIP


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [TABSHIP, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr


def test_help_lists_commands_without_loading_ml_libraries() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("train", "predict", "datasets", "demo"):
        assert command in result.stdout
    probe = "import sys, tabship.cli; print(sorted(m for m in ('sklearn', 'pandas', 'onnxruntime') if m in sys.modules))"
    assert (
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )


def test_datasets_list_and_fetch() -> None:
    assert "insurance\ttarget=charges" in run("datasets", "list").stdout
    fetched = run("datasets", "fetch", "insurance")
    assert fetched.returncode == 0 and fetched.stdout.strip().endswith("insurance.csv")
    assert_one_line_error(run("datasets", "fetch", "titanic"), "unknown dataset 'titanic'")


def test_train_prints_leaderboard_and_writes_model(tiny_csv: Path, tmp_path: Path) -> None:
    result = run(
        "train",
        str(tiny_csv),
        "--target",
        "charges",
        "-o",
        str(tmp_path / "m"),
        "--folds",
        "3",
        "--models",
        "ridge,gradient_boosting",
    )
    assert result.returncode == 0, result.stderr
    assert "Cross-validated leaderboard" in result.stdout and "Gradient boosting" in result.stdout
    assert "engine: onnx" in result.stdout and (tmp_path / "m" / "tabship.json").is_file()
    again = run("train", str(tiny_csv), "--target", "charges", "-o", str(tmp_path / "m"))
    assert_one_line_error(
        again, "already exists and is not empty; choose another -o or pass --force"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target", "cost"], "target column 'cost' is not in the table"),
        (["--target", "smoker", "--task", "regression"], "is not numeric (e.g. 'no')"),
        (["--target", "charges", "--task", "ranking"], "--task 'ranking' is not one of"),
        (["--target", "charges", "--models", "svm"], "unknown model svm for regression"),
    ],
)
def test_train_errors_are_one_line(
    tiny_csv: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    assert_one_line_error(run("train", str(tiny_csv), "-o", str(tmp_path / "m"), *args), expected)


def test_train_on_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run("train", str(tmp_path / "none.csv"), "--target", "y"), "no file")


def test_predict_writes_scores_and_refuses_overwrite(
    tiny_model: TrainedModel, tiny_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scored.csv"
    result = run("predict", str(tiny_model.artifact.directory), str(tiny_csv), "-o", str(out))
    assert result.returncode == 0 and "scored 120 rows" in result.stdout
    assert "predicted_charges" in pd.read_csv(out).columns
    assert_one_line_error(
        run("predict", str(tiny_model.artifact.directory), str(tiny_csv), "-o", str(out)),
        "pass --force",
    )
    assert (
        run(
            "predict", str(tiny_model.artifact.directory), str(tiny_csv), "-o", str(out), "--force"
        ).returncode
        == 0
    )


def test_predict_with_a_tampered_model(
    tiny_model: TrainedModel, tiny_csv: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model.artifact.directory, folder)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[100] ^= 1
    (folder / "model.onnx").write_bytes(bytes(data))
    assert_one_line_error(
        run("predict", str(folder), str(tiny_csv), "-o", str(tmp_path / "o.csv")),
        "model.onnx was modified: sha256 expected",
    )
    assert not (tmp_path / "o.csv").exists()


def test_predict_bad_rows_list_every_problem(tiny_model: TrainedModel, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame(
        {
            "age": [30, "old"],
            "bmi": [25.0, 26.0],
            "children": [0, 1],
            "smoker": ["no", "male"],
            "region": ["east"] * 2,
        }
    ).to_csv(bad, index=False)
    result = run(
        "predict", str(tiny_model.artifact.directory), str(bad), "-o", str(tmp_path / "o.csv")
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: row 2: age: 'old' is not a number",
        "error: row 2: smoker: 'male' is not one of: no, yes",
    ]
