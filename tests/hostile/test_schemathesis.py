"""I1: schemathesis generates thousands of requests from our own OpenAPI, every phase, every check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..servers import Server

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_failure(server: Server, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(CONFIG),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "1000",
            "--seed",
            "123",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)
    summary = result.stdout[-3000:]
    generated = int(re.search(r"(\d+) generated", summary).group(1))  # type: ignore[union-attr]
    print(f"\nschemathesis: {generated} generated test cases; exit {result.returncode}")
    assert result.returncode == 0, summary
    assert generated >= 2000
    operations = sum(
        len(methods) for methods in httpx.get(server.url + "/openapi.json").json()["paths"].values()
    )
    # Every route is documented; schemathesis leaves out the one that serves the spec itself.
    assert f"Tested: {operations - 1}" in summary, summary
    metrics = httpx.get(server.url + "/metrics").text
    assert not re.search(r'tabship_requests_total\{[^}]*status="5\d\d"', metrics)
