"""schemathesis against /v1/feedback and /monitor of a server with a prediction log."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tabship.workflow import TrainedModel

from ..servers import start_server

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CONFIG = Path(__file__).with_name("schemathesis-feedback.toml")


def test_feedback_and_monitor_withstand_generated_requests(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    server = start_server(
        tiny_model.artifact.directory, tmp_path, "--log-db", f"sqlite:///{tmp_path / 'log.db'}"
    )
    try:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(CONFIG),
                "run",
                f"{server.url}/openapi.json",
                "--include-path",
                "/v1/feedback",
                "--include-path",
                "/monitor",
                "--checks",
                "all",
                "--max-examples",
                "300",
                "--seed",
                "123",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        summary = result.stdout[-3000:]
        assert result.returncode == 0, summary
        assert "Tested: 2" in summary, summary
        generated = int(re.search(r"(\d+) generated", summary).group(1))  # type: ignore[union-attr]
        assert generated >= 300
        metrics = httpx.get(server.url + "/metrics").text
        assert not re.search(r'tabship_requests_total\{[^}]*status="5\d\d"', metrics)
    finally:
        assert server.stop() == 0
