"""One-row prediction latency: tabship's Predictor (ONNX engine) against scikit-learn.

Both run in this process on the same model and the same records, so the ratio holds on a
noisy machine even when the absolute figures move. Trains the insurance model if missing.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
from insurance_model import MODEL, ensure_model

from tabship.datasets import BUILTIN, fetch
from tabship.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
CALLS = 5000
WARMUP = 500


def timed_calls(call, inputs: list) -> list[float]:  # type: ignore[no-untyped-def, type-arg]
    for item in inputs[:WARMUP]:
        call(item)
    samples = []
    for record in inputs[WARMUP : WARMUP + CALLS]:
        started = time.perf_counter_ns()
        call(record)
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": statistics.median(ordered),
        "p99_us": ordered[int(len(ordered) * 0.99) - 1],
        "calls": len(ordered),
    }


def main() -> None:
    dataset = BUILTIN["insurance"]
    ensure_model()
    frame = pd.read_csv(fetch(dataset.name)).drop(columns=dataset.target)
    rows = frame.to_dict(orient="records")
    records = [[rows[i % len(rows)]] for i in range(WARMUP + CALLS)]
    onnx = Predictor.load(MODEL, engine="onnx")
    sklearn_engine = Predictor.load(MODEL, engine="sklearn")
    pipeline = sklearn_engine.artifact.load_pipeline()
    frames = [frame.iloc[[i % len(frame)]] for i in range(WARMUP + CALLS)]

    results = {
        "model": onnx.card.model.name,
        "tabship_onnx_predict": summary(timed_calls(onnx.predict, records)),
        "tabship_sklearn_engine_predict": summary(timed_calls(sklearn_engine.predict, records)),
        "sklearn_pipeline_predict_one_row_frame": summary(timed_calls(pipeline.predict, frames)),
    }
    base = results["sklearn_pipeline_predict_one_row_frame"]["median_us"]
    RESULTS.parent.mkdir(exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**existing, "predict_latency": results}, indent=2) + "\n")
    print(f"model: {results['model']}  ({CALLS} one-row calls each, after {WARMUP} warm-up)")
    print("| path | median µs | p99 µs | speed-up vs sklearn one-row DataFrame |")
    print("|---|---:|---:|---:|")
    for name in (
        "tabship_onnx_predict",
        "tabship_sklearn_engine_predict",
        "sklearn_pipeline_predict_one_row_frame",
    ):
        row = results[name]
        print(
            f"| {name} | {row['median_us']:.1f} | {row['p99_us']:.1f} | {base / row['median_us']:.1f}x |"
        )


if __name__ == "__main__":
    sys.exit(main())
