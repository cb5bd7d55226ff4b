"""A newcomer's path: the README opens with the two commands, and they exist and work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_readme_opens_with_make_demo_and_make_test() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in block[:2]] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo:", "test:", "check:", "bench:"):
        assert f"\n{target}" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_demo_trains_the_insurance_model(tmp_path: Path) -> None:
    tabship = str(Path(sys.executable).with_name("tabship"))
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.run(
        [tabship, "demo", "-o", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr
    assert "Cross-validated leaderboard" in first.stdout and "engine: onnx" in first.stdout
    second = subprocess.run(
        [tabship, "demo", "-o", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert "already holds a model" in second.stdout
