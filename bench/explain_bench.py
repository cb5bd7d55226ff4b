"""`make bench-explain`: explanations against shap, /v1/explain records/s, /predict_api unchanged.

Three figures, each beside a baseline measured in the same run:
- one insurance record explained by tabship's Explainer against shap's exact explainer on the
  same model (the ONNX engine) and the same ten baseline rows;
- /v1/explain records per second, one record and 100 records per request (wrk);
- /predict_api single-row requests per second against the same server code before this
  work (the src of BENCH_BASE_REF unpacked by git archive, default: the merge-base with main).
Server on core 0, wrk on core 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import serve_load
from insurance_model import MODEL, ensure_model
from serve_load import BIN, RECORD, RESULTS, ROOT, free_port, wait_ready, wrk

from tabship.explain import Explainer
from tabship.predictor import Predictor
from tabship.serve.explain import model_outputs

RUN_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CALLS = int(os.environ.get("BENCH_EXPLAIN_CALLS", "50"))


def shap_model(predictor: Predictor) -> tuple[Any, Any]:
    """The model as shap takes it (categories as level codes) and an encoder for columns."""
    schema, outputs = predictor.schema, model_outputs(predictor)
    levels = {f.name: [*f.levels, "\x00unseen"] for f in schema.features if f.kind == "categorical"}

    def encode(columns: dict[str, np.ndarray]) -> np.ndarray:
        return np.column_stack(
            [
                np.array([levels[n].index(v) for v in columns[n].ravel()], float)
                if text
                else columns[n].ravel().astype(float)
                for n, text in schema.inputs
            ]
        )

    def run(matrix: np.ndarray) -> np.ndarray:
        columns = {
            n: (
                np.array(levels[n], dtype=object)[matrix[:, i].astype(int)]
                if text
                else matrix[:, i]
            ).reshape(-1, 1)
            for i, (n, text) in enumerate(schema.inputs)
        }
        return outputs(columns, len(matrix))[:, 0]

    return run, encode


def median_seconds(call: Any, calls: int) -> float:
    call()  # warm-up: first runs allocate (and shap compiles with numba)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def one_record() -> dict[str, float]:
    """One record: tabship against shap's exact explainer, same model, same baseline.

    The sealed baseline is weighted (each centroid by its cluster's size); shap's maskers
    average rows uniformly, so shap gets each centroid repeated by its cluster's size, which
    gives the same numbers. A second figure gives both the ten rows with equal weights.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap  # type: ignore[import-untyped]

    predictor = Predictor.load(MODEL)
    background = predictor.card.explanation
    assert background is not None
    schema = predictor.schema
    ours = Explainer(schema, background, model_outputs(predictor))
    batch = schema.validate([RECORD])
    run, encode = shap_model(predictor)
    rows = encode({k: v.reshape(-1, 1) for k, v in background.arrays(schema).items()})
    counts = np.round(np.asarray(background.weights) * predictor.card.training.rows).astype(int)
    weighted = np.repeat(rows, counts, axis=0)
    record = encode(batch.columns)
    same = shap.explainers.Exact(run, shap.maskers.Independent(weighted, len(weighted)))
    equal = dataclasses.replace(background, weights=(1 / background.rows,) * background.rows)
    ours_equal = Explainer(schema, equal, model_outputs(predictor))
    theirs_equal = shap.explainers.Exact(run, shap.maskers.Independent(rows, len(rows)))
    found = ours.explain(batch).contributions[0, :, 0]
    scale = float(np.abs(ours.explain(batch).prediction).max())
    tabship_s = median_seconds(lambda: ours.explain(batch), CALLS)
    shap_s = median_seconds(lambda: same(record, silent=True), max(3, CALLS // 10))
    equal_s = median_seconds(lambda: ours_equal.explain(batch), CALLS)
    shap_equal_s = median_seconds(lambda: theirs_equal(record, silent=True), CALLS)
    return {
        "tabship_ms": tabship_s * 1000,
        "shap_exact_ms": shap_s * 1000,
        "speedup": shap_s / tabship_s,
        "max_rel_diff_vs_shap": float(
            np.abs(same(record, silent=True).values[0] - found).max() / scale
        ),
        "shap_background_rows": len(weighted),
        "equal_weights_tabship_ms": equal_s * 1000,
        "equal_weights_shap_exact_ms": shap_equal_s * 1000,
        "equal_weights_speedup": shap_equal_s / equal_s,
    }


def start(model: Path, port: int, source: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **({"PYTHONPATH": str(source)} if source else {})}
    # PYTHONPATH comes before the editable install on sys.path: the base tree's code serves.
    command = [str(BIN / "tabship"), "serve", str(model), "--port", str(port)]
    return subprocess.Popen(
        ["taskset", "-c", "0", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def lua(path: str, body: dict[str, Any]) -> Path:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.path = "{path}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    return script


def loaded(port: int, script: Path, connections: int) -> dict[str, float]:
    """wrk with another body: serve_load's runner reads post.lua from the folder it is given."""
    saved = serve_load.BENCH
    serve_load.BENCH = script.parent
    try:
        return wrk(port, connections, RUN_SECONDS)
    finally:
        serve_load.BENCH = saved


def base_tree() -> tuple[Path, str]:
    """The base commit's src folder unpacked in a temporary folder (git archive: no worktree)."""
    ref = (
        os.environ.get("BENCH_BASE_REF")
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    folder = Path(tempfile.mkdtemp(prefix="tabship-base-"))
    archive = subprocess.run(
        ["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder, ref


def serving() -> dict[str, Any]:
    base, ref = base_tree()
    ports = {"before": free_port(), "after": free_port()}
    servers = {
        "before": start(MODEL, ports["before"], base / "src"),
        "after": start(MODEL, ports["after"]),
    }
    results: dict[str, Any] = {"base_ref": ref}
    try:
        for kind, port in ports.items():
            wait_ready(f"http://127.0.0.1:{port}/readyz", servers[kind])
        runs: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(RUNS):
            for kind, port in ports.items():
                runs[kind].append(wrk(port, 1, RUN_SECONDS)["rps"])
        results["predict_api_rps"] = {k: statistics.median(v) for k, v in runs.items()}
        results["predict_api_ratio"] = (
            results["predict_api_rps"]["after"] / results["predict_api_rps"]["before"]
        )
        one = loaded(ports["after"], lua("/v1/explain", {"instances": [RECORD]}), 2)
        hundred = loaded(ports["after"], lua("/v1/explain", {"instances": [RECORD] * 100}), 2)
        results["explain_records_per_s"] = {
            "1_per_request": one["rps"],
            "100_per_request": hundred["rps"] * 100,
        }
        results["explain_non_2xx"] = one["non_2xx"] + hundred["non_2xx"]
    finally:
        for process in servers.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
    return results


def main() -> None:
    ensure_model()
    record = one_record()
    serve = serving()
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(
        json.dumps({**existing, "explain": {**record, **serve}}, indent=2, default=float) + "\n"
    )
    rps = serve["predict_api_rps"]
    rate = serve["explain_records_per_s"]
    print(
        f"machine: {os.cpu_count()} cores; {RUNS} runs x {RUN_SECONDS} s; server on core 0, wrk on core 1"
    )
    print("| measure | tabship | baseline (same run) | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| explain one insurance record ms | {record['tabship_ms']:.3f} | shap exact, same "
        f"weighted baseline ({record['shap_background_rows']} rows) "
        f"{record['shap_exact_ms']:.3f} | {record['speedup']:.0f}x faster | >= 10x |"
    )
    print(f"| max rel. difference from shap | {record['max_rel_diff_vs_shap']:.1e} | | | <= 1e-6 |")
    print(
        f"| explain one record ms, 10 rows equally weighted | "
        f"{record['equal_weights_tabship_ms']:.3f} | shap exact, same 10 rows "
        f"{record['equal_weights_shap_exact_ms']:.3f} | "
        f"{record['equal_weights_speedup']:.1f}x faster | |"
    )
    print(
        f"| /predict_api 1 conn requests/s | {rps['after']:,.0f} | before ({serve['base_ref'][:8]}) "
        f"{rps['before']:,.0f} | {serve['predict_api_ratio']:.2f} | >= 0.95 |"
    )
    print(f"| /v1/explain records/s (1 per request) | {rate['1_per_request']:,.0f} | | | report |")
    print(
        f"| /v1/explain records/s (100 per request) | {rate['100_per_request']:,.0f} | | | report |"
    )
    print(f"| /v1/explain non-2xx | {serve['explain_non_2xx']} | | | 0 |")


if __name__ == "__main__":
    main()
