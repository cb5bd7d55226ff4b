"""A model with 150 columns, and one record with 80,000 unknown keys: the answer and the
server's memory stay small (round one's messages each embedded the whole field list)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tabship.train import TrainOptions
from tabship.workflow import train_model

from ..servers import Server, start_server

pytestmark = [pytest.mark.slow, pytest.mark.hostile]


def peak_rss_mib(server: Server) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def test_eighty_thousand_unknown_keys_cost_little(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 150)), columns=[f"col_{i:03d}" for i in range(150)])
    frame["target"] = frame.sum(axis=1) + rng.normal(size=300)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    options = TrainOptions(target="target", folds=3, models=["ridge"])
    model = train_model(str(tmp_path / "wide.csv"), options, tmp_path / "model")
    record = {f"col_{i:03d}": 0.5 for i in range(150)}
    server = start_server(model.artifact.directory, tmp_path)
    try:
        for _ in range(20):
            assert httpx.post(server.url + "/predict_api", json=record).status_code == 200
        idle = peak_rss_mib(server)
        attack = {**record, **{f"x{i}": 1 for i in range(80_000)}}
        body = json.dumps(attack, separators=(",", ":")).encode()
        assert len(body) < 1024 * 1024
        answer = httpx.post(
            server.url + "/predict_api",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 422
        assert len(answer.content) < 8 * 1024
        problems = answer.json()["detail"]
        assert problems[-1]["msg"].startswith("80000 unknown field(s); the fields are 'col_000")
        grown = peak_rss_mib(server) - idle
        print(f"\npeak memory grew by {grown:.1f} MiB for the 80,000-key record")
        assert grown < 50
    finally:
        assert server.stop() == 0
