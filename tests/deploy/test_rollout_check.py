"""`tabship rollout check` against two real servers: a good model and a deliberately slow one."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tabship.artifact import METADATA, ONNX_FILE, Artifact, _seal, sha256_bytes
from tabship.deploy.health import Sample, judge, parse_sample
from tabship.workflow import TrainedModel

from ..servers import TABSHIP, Server, serving

pytestmark = pytest.mark.slow

RECORD = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


def make_slow(source: Path, target: Path, rounds: int = 2000) -> None:
    """A copy of a model folder whose graph adds `rounds` 256x256 products per row.

    The extra path starts from an input, so ONNX Runtime cannot fold it away, and ends in a
    multiplication by zero, so the predictions are the same: only slower. The folder is
    resealed, as anyone who can write it could do.
    """
    shutil.copytree(source, target)
    model = onnx.load(str(target / ONNX_FILE))
    graph = model.graph
    output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{output}_fast" if name == output else name for name in node.output]
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((256, 256)) / 16).astype(np.float32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(weight, "slow_w"),
            numpy_helper.from_array(np.array([1, 256], dtype=np.int64), "slow_repeats"),
            numpy_helper.from_array(np.array([0.0], dtype=np.float32), "slow_zero"),
        ]
    )
    first = graph.input[0].name  # a numeric input, shape [N, 1]
    nodes = [helper.make_node("Tile", [first, "slow_repeats"], ["slow_h0"])]
    for i in range(rounds):
        nodes.append(helper.make_node("MatMul", [f"slow_h{i}", "slow_w"], [f"slow_m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"slow_m{i}"], [f"slow_h{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"slow_h{rounds}"], ["slow_s"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["slow_s", "slow_zero"], ["slow_z"]),
        helper.make_node("Add", [f"{output}_fast", "slow_z"], [output]),
    ]
    graph.node.extend(nodes)
    data = model.SerializeToString()
    (target / ONNX_FILE).write_bytes(data)
    metadata = json.loads((target / METADATA).read_text())
    metadata.pop("metadata_sha256")
    metadata["files"][ONNX_FILE] = sha256_bytes(data)
    (target / METADATA).write_bytes(_seal(metadata))
    Artifact.open(target)


@pytest.fixture(scope="module")
def sides(
    tiny_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server, Server]]:
    folder = tmp_path_factory.mktemp("canary")
    make_slow(tiny_model.artifact.directory, folder / "slow")
    stable = serving(tiny_model.artifact.directory, folder)
    twin = serving(tiny_model.artifact.directory, folder)
    slow = serving(folder / "slow", folder)
    servers = (next(stable), next(twin), next(slow))
    try:
        for server, count in zip(servers, (150, 150, 60), strict=True):
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for _ in range(count):
                    assert client.post("/predict_api", json=RECORD).status_code == 200
        yield servers
    finally:
        for started in (stable, twin, slow):
            next(started, None)


def check(stable: Server, canary: Server, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TABSHIP, "rollout", "check", "--stable", stable.url, "--canary", canary.url, *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_slow_canary_fails_the_check(sides: tuple[Server, Server, Server]) -> None:
    stable, _, slow = sides
    same = httpx.post(stable.url + "/predict_api", json=RECORD).json()
    assert httpx.post(slow.url + "/predict_api", json=RECORD).json() == same
    done = check(stable, slow)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "canary is worse: p99 latency" in done.stdout
    assert done.stdout.splitlines()[0].split() == ["side", "requests", "5xx", "rate", "p99", "ms"]


def test_a_canary_like_the_stable_side_passes(sides: tuple[Server, Server, Server]) -> None:
    stable, twin, _ = sides
    # Both the same model on the same machine: latencies differ by noise only, and on a busy
    # CI machine one stall moves a p99 of 150 requests by a few buckets; the slow canary is
    # over a hundred times slower, so the margin still tells the two apart.
    done = check(stable, twin, "--max-p99-ratio", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "canary is not worse than stable" in done.stdout


def test_too_little_traffic_gives_no_verdict(sides: tuple[Server, Server, Server]) -> None:
    stable, _, slow = sides
    done = check(stable, slow, "--min-requests", "100000")
    assert done.returncode == 2
    assert "not enough traffic yet" in done.stdout


def test_an_unreachable_side_is_a_clear_error(sides: tuple[Server, Server, Server]) -> None:
    stable, _, _ = sides
    done = subprocess.run(
        [TABSHIP, "rollout", "check", "--stable", stable.url, "--canary", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "error: http://127.0.0.1:9/metrics: cannot be read" in done.stderr


def metrics_text(ok: int, failed: int, slow_share: float) -> str:
    fast = (ok + failed) * (1 - slow_share)
    total = ok + failed
    return "\n".join(
        [
            "# TYPE tabship_requests_total counter",
            f'tabship_requests_total{{route="/predict_api",method="POST",status="200"}} {ok}',
            f'tabship_requests_total{{route="/predict_api",method="POST",status="500"}} {failed}',
            'tabship_requests_total{route="/healthz",method="GET",status="200"} 9999',
            "# TYPE tabship_request_duration_seconds histogram",
            f'tabship_request_duration_seconds_bucket{{route="/predict_api",status="200",le="0.001"}} {fast}',
            f'tabship_request_duration_seconds_bucket{{route="/predict_api",status="200",le="0.1"}} {total}',
            f'tabship_request_duration_seconds_bucket{{route="/predict_api",status="200",le="+Inf"}} {total}',
            f'tabship_request_duration_seconds_count{{route="/predict_api",status="200"}} {total}',
            'tabship_request_duration_seconds_sum{route="/predict_api",status="200"} 1.0',
            "",
        ]
    )


def test_error_rates_are_compared_with_a_floor() -> None:
    stable = parse_sample(metrics_text(1000, 0, 0.0))
    assert stable.requests == 1000 and stable.errors == 0  # probes are not traffic
    assert judge(stable, parse_sample(metrics_text(999, 1, 0.0)), 1.5, 1.5, 20).reasons == ()
    worse = judge(stable, parse_sample(metrics_text(900, 100, 0.0)), 1.5, 1.5, 20)
    assert len(worse.reasons) == 1 and worse.reasons[0].startswith("5xx rate 10.00%")
    slow = judge(stable, parse_sample(metrics_text(1000, 0, 0.05)), 1.5, 1.5, 20)
    assert len(slow.reasons) == 1 and slow.reasons[0].startswith("p99 latency")
    later = parse_sample(metrics_text(1500, 50, 0.0)).minus(stable)
    assert later == Sample(550, 50, ((0.001, 550.0), (0.1, 550.0), (float("inf"), 550.0)))
