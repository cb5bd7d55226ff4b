"""R5: steady load from a second process; no errors, and memory flat after the warm-up period.

`make test` runs 60 s; `make soak` runs 10 minutes (SOAK_SECONDS=600), where the baseline is
taken at minute 2 as the issue asks; the short run takes it at one fifth of the duration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tabship.workflow import TrainedModel

from ..servers import start_server

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_steady_load_without_errors_or_memory_growth(
    insurance_model: TrainedModel, tmp_path: Path
) -> None:
    server = start_server(insurance_model.artifact.directory, tmp_path)
    try:
        load = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("load.py")),
                server.url,
                str(SECONDS),
                "4",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        baseline_at = 120.0 if SECONDS >= 600 else SECONDS / 5
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        while load.poll() is None:
            samples.append((time.monotonic() - started, rss_mb(server.process.pid)))
            time.sleep(1)
        out, _ = load.communicate()
        counts = json.loads(out)
        baseline = next(mb for at, mb in samples if at >= baseline_at)
        end = samples[-1][1]
        peak = max(mb for _, mb in samples)
        print(
            f"\nsoak {SECONDS:.0f} s: {counts['ok']} rounds ok, {counts['errors']} errors; RSS {baseline:.1f} MB at {baseline_at:.0f} s, {end:.1f} MB at the end, peak {peak:.1f} MB"
        )
        assert counts["errors"] == 0 and counts["ok"] > 0
        assert end - baseline < 20
    finally:
        assert server.stop() == 0
