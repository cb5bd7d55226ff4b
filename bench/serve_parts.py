"""Parts of `bench/serve_load.py` on their own, for a quick look: prints their figures as JSON.

    python bench/serve_parts.py cold v1 batch file file5 fresh

cold: cold start and RSS after load (CLI and the pod's command); v1: /v1/predict 100-record
batches against single rows on one server; batch: Predictor.predict against scikit-learn on
1M rows; file / file5: `tabship predict` on a 1M / 5M-row CSV against pandas read + write;
fresh: batch and file on 1M insurance-shaped rows with fresh values instead of a resample.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pandas as pd
import serve_load as bench


def v1_against_single(seconds: int) -> dict[str, float]:
    port = bench.free_port()
    process = bench.start("tabship", port)
    try:
        bench.wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        bench.wrk(port, 32, 2)  # warm-up
        one = bench.wrk(port, 32, seconds)
        many = bench.wrk(port, 32, seconds, bench.v1_script())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    rows = many["rps"] * bench.V1_RECORDS
    return {
        "single_requests_per_s": one["rps"],
        "v1_rows_per_s": rows,
        "ratio": rows / one["rps"],
        "non_2xx": many["non_2xx"] + one["non_2xx"],
    }


def main(parts: list[str]) -> None:
    bench.ensure_model()
    out: dict[str, object] = {"cores": os.cpu_count()}
    if "cold" in parts:
        out["cold_start"] = bench.cold_start()
    if "v1" in parts:
        out["v1"] = v1_against_single(bench.RUN_SECONDS)
    if "fresh" in parts:
        fresh = bench.fresh_table(bench.BATCH_ROWS)
        out["batch_fresh"], out["file_fresh"] = bench.batch(fresh), bench.file_scoring(fresh)
    frame = bench.big_table(bench.BATCH_ROWS) if {"batch", "file", "file5"} & set(parts) else None
    if frame is not None and "batch" in parts:
        out["batch"] = bench.batch(frame)
    if frame is not None and "file" in parts:
        out["file"] = bench.file_scoring(frame)
    if frame is not None and "file5" in parts:
        out["file_5x"] = bench.file_scoring(pd.concat([frame] * 5, ignore_index=True))
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main(sys.argv[1:] or ["cold", "v1", "batch", "file", "file5", "fresh"])
