"""S5: the SBOM describes exactly the serving image's environment, from hash-pinned wheels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tabship.container import serving_pins
from tabship.workflow import TrainedModel

from .servers import TABSHIP

pytestmark = pytest.mark.slow

WHEELS = Path(__file__).resolve().parents[1] / ".pytest_cache" / "tabship-cache" / "wheels"


def test_sbom_lists_the_serving_environment(tiny_model: TrainedModel, tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    result = subprocess.run(
        [
            TABSHIP,
            "sbom",
            str(tiny_model.artifact.directory),
            "-o",
            str(out),
            "--wheelhouse",
            str(WHEELS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    found = {c["name"].lower().replace("_", "-"): c["version"] for c in bom["components"]}
    assert found == serving_pins("onnx")  # every pinned package at its pinned version, nothing else
    assert all(c["purl"].startswith("pkg:pypi/") for c in bom["components"])
    assert "scikit-learn" not in found and "pip" not in found
