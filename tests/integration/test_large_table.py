"""A million rows by ten columns through `tabship train`: raced, exported, inside 4 GB.

Memory is the summed proportional set size (shared pages split between their sharers) of the
CLI process and every worker it starts, sampled while it runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ..servers import TABSHIP

pytestmark = pytest.mark.slow

MEMORY_LIMIT_KB = 4 * 1024 * 1024


def million_rows(path: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    rows = 1_000_000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows).round(4) for i in range(7)})
    frame["kind"] = rng.choice(list("abcde"), rows)
    frame["place"] = np.array([f"P{i:03d}" for i in range(200)])[rng.integers(0, 200, rows)]
    frame["y"] = (
        3 * frame["x0"]
        + 4 * np.sin(2 * frame["x1"])
        + frame["x2"] * frame["x3"]
        + 2 * (frame["kind"] == "c")
        + rng.normal(0, 1, rows)
    )
    frame.to_parquet(path)


def _tree(root: int) -> list[int]:
    """`root` and every process below it, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)


def test_a_million_rows_train_inside_4_gb(tmp_path: Path) -> None:
    table = tmp_path / "million.parquet"
    million_rows(table)
    log = tmp_path / "train.log"
    peak = 0
    with log.open("wb") as output:
        process = subprocess.Popen(
            [TABSHIP, "train", str(table), "--target", "y", "-o", str(tmp_path / "m")],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        while process.poll() is None:
            peak = max(peak, sum(_pss_kb(pid) for pid in _tree(process.pid)))
            time.sleep(0.5)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert 0 < peak < MEMORY_LIMIT_KB, f"peak {peak / 1024**2:.2f} GiB"
    meta = json.loads((tmp_path / "m" / "tabship.json").read_text())
    scored = sorted({row["rows"] for row in meta["leaderboard"]})
    assert scored[0] < 10_000 and scored[-1] == 1_000_000  # raced, the winner on every row
    assert meta["engine"] == "onnx" and meta["onnx"]["rows"] == 1_000_000
