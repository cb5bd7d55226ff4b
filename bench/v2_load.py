"""`make bench`: the Open Inference Protocol against tabship's own routes, in the same run.

- one record: POST /v2/models/NAME/infer with JSON tensors vs POST /predict_api (target >= 0.8);
- 1,000 rows: /v2 infer with binary tensors (answer in binary too) vs the same rows as JSON
  through /v1/predict (target > 1).

One server on core 0, wrk on core 1, the two routes alternating, the median of RUNS runs.
BENCH_MODEL points at another model folder (default: the insurance showcase).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from insurance_model import ensure_model
from serve_load import BIN, RESULTS, free_port, wait_ready, wrk

from tabship.predictor import Predictor
from tabship.serve.contract import example_record
from tabship.serve.v2_tensors import datatype_of

RUN_SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
ROWS = 1000
NAME = "bench"


def rows(predictor: Predictor, count: int) -> list[dict[str, Any]]:
    """`count` valid records: the example record with each number nudged per row."""
    base = example_record(predictor.schema)
    out = []
    for index in range(count):
        record = dict(base)
        for feature in predictor.schema.features:
            if feature.kind == "numeric" and not feature.integer:
                record[feature.name] = base[feature.name] + (index % 7) * 0.5
        out.append(record)
    return out


def v2_json(predictor: Predictor, records: list[dict[str, Any]]) -> bytes:
    inputs = [
        {
            "name": f.name,
            "shape": [len(records)],
            "datatype": datatype_of(f),
            "data": [r[f.name] for r in records],
        }
        for f in predictor.schema.features
    ]
    return json.dumps({"inputs": inputs}).encode()


def v2_binary(predictor: Predictor, records: list[dict[str, Any]]) -> tuple[bytes, int]:
    """Triton's binary form: the JSON header, then each input's little-endian bytes."""
    inputs, blobs = [], []
    for feature in predictor.schema.features:
        datatype = datatype_of(feature)
        values = [r[feature.name] for r in records]
        if datatype == "BYTES":
            blob = b"".join(
                struct.pack("<I", len(str(v).encode())) + str(v).encode() for v in values
            )
        elif datatype == "BOOL":
            blob = bytes(int(bool(v)) for v in values)
        else:
            blob = struct.pack(f"<{len(values)}{'q' if datatype == 'INT64' else 'd'}", *values)
        parameters = {"binary_data_size": len(blob)}
        inputs.append(
            {
                "name": feature.name,
                "shape": [len(values)],
                "datatype": datatype,
                "parameters": parameters,
            }
        )
        blobs.append(blob)
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return header + b"".join(blobs), len(header)


def lua(work: Path, label: str, path: str, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script posting `body` (read from a file, so binary bodies survive) to `path`."""
    body_file = work / f"{label}.body"
    body_file.write_bytes(body)
    lines = [
        'wrk.method = "POST"',
        f'wrk.path = "{path}"',
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()',
        *(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()),
    ]
    script = work / f"{label}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def main() -> None:
    model = Path(os.environ.get("BENCH_MODEL") or ensure_model())
    predictor = Predictor.load(model)
    work = Path(tempfile.mkdtemp(prefix="tabship-bench-v2-"))
    one, many = rows(predictor, 1), rows(predictor, ROWS)
    binary, header = v2_binary(predictor, many)
    json_type = {"Content-Type": "application/json"}
    scripts = {
        "predict_api@1": lua(
            work, "predict_api", "/predict_api", json.dumps(one[0]).encode(), json_type
        ),
        "v2_json@1": lua(
            work, "v2_json", f"/v2/models/{NAME}/infer", v2_json(predictor, one), json_type
        ),
        "v1_json@1000": lua(
            work, "v1_many", "/v1/predict", json.dumps({"instances": many}).encode(), json_type
        ),
        "v2_binary@1000": lua(
            work,
            "v2_binary",
            f"/v2/models/{NAME}/infer",
            binary,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(header),
            },
        ),
    }
    port = free_port()
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            str(BIN / "tabship"),
            "serve",
            str(model),
            "--port",
            str(port),
            "--model-name",
            NAME,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: dict[str, list[dict[str, float]]] = {}
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server)
        for label, script in scripts.items():  # warm-up, and a check that every body is accepted
            warm = wrk(port, 8, 2, script)
            assert warm["non_2xx"] == 0, f"{label}: the server refused the benchmark's body"
        for _ in range(RUNS):
            for label, script in scripts.items():
                connections = 32 if label.endswith("@1") else 4
                samples.setdefault(label, []).append(wrk(port, connections, RUN_SECONDS, script))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    rps = {label: statistics.median(s["rps"] for s in runs) for label, runs in samples.items()}
    single = rps["v2_json@1"] / rps["predict_api@1"]
    batch = rps["v2_binary@1000"] / rps["v1_json@1000"]
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    existing["v2"] = {
        "requests_per_s": rps,
        "single_ratio": single,
        "batch_ratio": batch,
        "runs": samples,
    }
    RESULTS.write_text(json.dumps(existing, indent=2, default=float) + "\n")
    print(f"V2 protocol: {RUNS} runs x {RUN_SECONDS} s per route; server on core 0, wrk on core 1")
    print("| measure | V2 | baseline (same run) | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| 1 record, requests/s | JSON tensors {rps['v2_json@1']:,.0f} | /predict_api {rps['predict_api@1']:,.0f} | {single:.2f} | >= 0.8 |"
    )
    print(
        f"| {ROWS} rows, requests/s | binary tensors {rps['v2_binary@1000']:,.1f} | /v1/predict JSON {rps['v1_json@1000']:,.1f} | {batch:.2f} | > 1 |"
    )


if __name__ == "__main__":
    main()
