"""Draining on SIGTERM and the concurrency cap, with requests really held in flight.

A request is held in flight by sending its headers and only part of its body: the server has
admitted it and waits for the rest, exactly like a slow client.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ..servers import start_server

pytestmark = pytest.mark.slow

PATIENT = {
    "age": 40,
    "sex": "female",
    "bmi": 27.0,
    "children": 2,
    "smoker": "no",
    "region": "southeast",
}
BODY = json.dumps(PATIENT).encode()
SPLIT = 10


def open_request(port: int) -> socket.socket:
    """Send headers and the first bytes of a /predict_api body; the rest comes later."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=15)
    head = (
        f"POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
    ).encode()
    conn.sendall(head + BODY[:SPLIT])
    return conn


def finish_request(conn: socket.socket) -> tuple[int, bytes]:
    conn.sendall(BODY[SPLIT:])
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def wait_for_gauge(url: str, gauge: str, expected: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"{gauge} {float(expected)}" in httpx.get(url + "/metrics").text:
            return
        time.sleep(0.02)
    raise AssertionError(f"the server never had {gauge} at {expected}")


def test_sigterm_drains_two_hundred_in_flight_requests(model_dir: Path, tmp_path: Path) -> None:
    server = start_server(
        model_dir,
        tmp_path,
        "--drain-delay",
        "1.5",
        "--graceful-timeout",
        "10",
        "--max-concurrency",
        "256",
    )
    held = [open_request(server.port) for _ in range(200)]
    wait_for_gauge(server.url, "tabship_requests_open", 200)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    ready = httpx.get(server.url + "/readyz", timeout=1)
    assert ready.status_code == 503 and ready.json() == {"status": "draining"}
    assert time.monotonic() - signalled < 1.0
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert (
        httpx.get(server.url + "/startupz").status_code == 200
    )  # started stays true while draining
    results = [finish_request(conn) for conn in held]
    assert [status for status, _ in results] == [200] * 200
    assert all(float(body) > 0 for _, body in results)
    assert server.process.wait(timeout=15) == 0
    assert time.monotonic() - signalled < 10
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/readyz", timeout=1)


@pytest.mark.parametrize("graceful", ["0", "0.5"])
def test_a_graceful_timeout_under_a_second_is_kept(
    model_dir: Path, tmp_path: Path, graceful: str
) -> None:
    # int() made 0.5 zero, and zero meant no limit: a client that never finished its body
    # held the exit until it gave up itself.
    server = start_server(
        model_dir, tmp_path, "--drain-delay", "0", "--read-timeout", "60",
        "--graceful-timeout", graceful,
    )  # fmt: skip
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(
        b"POST /predict_api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    wait_for_gauge(server.url, "tabship_requests_open", 1)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - signalled < 5
    stalled.close()
    server.stop()


def test_concurrency_cap_answers_503_at_once_and_probes_pass(
    model_dir: Path, tmp_path: Path
) -> None:
    env = {"TABSHIP_REQUEST_TIMEOUT": "120", "TABSHIP_MAX_BODY_BYTES": str(128 * 1024 * 1024)}
    server = start_server(
        model_dir, tmp_path, "--max-concurrency", "1", "--max-batch", "700000", env=env
    )
    try:
        # A slot is taken once a body is in and held while it is parsed and predicted: one
        # big batch (seconds of work) fills a server whose cap is one.
        heavy = json.dumps({"instances": [PATIENT] * 600_000}).encode()
        refused_count = 12

        def timed_post(_: int) -> tuple[int, str | None]:
            answer = httpx.post(server.url + "/predict_api", json=PATIENT, timeout=5)
            return answer.status_code, answer.headers.get("retry-after")

        with ThreadPoolExecutor(1) as sender:
            held = sender.submit(
                httpx.post,
                server.url + "/v1/predict",
                content=heavy,
                headers={"content-type": "application/json"},
                timeout=120,
            )
            wait_for_gauge(server.url, "tabship_requests_in_flight", 1, timeout=60)
            with ThreadPoolExecutor(refused_count) as pool:
                refused = list(pool.map(timed_post, range(refused_count)))
            assert httpx.get(server.url + "/readyz").status_code == 200
            assert httpx.get(server.url + "/healthz").status_code == 200
            answer = held.result().status_code
        assert set(refused) == {(503, "1")}
        assert answer == 200
        # The server's own clock (its access log) says how fast it answered; the client's
        # includes building twelve HTTP clients at once in Python.
        time.sleep(0.2)
        logged = [json.loads(line) for line in server.log_lines() if '"status": 503' in line]
        slowest = max(entry["ms"] for entry in logged)
        print(f"\n503 answers: {len(logged)}, slowest {slowest:.2f} ms in the server")
        assert len(logged) == refused_count and slowest < 100
        assert httpx.post(server.url + "/predict_api", json=PATIENT).status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert f"tabship_overload_rejections_total {float(refused_count)}" in metrics
        assert 'status="5' not in metrics.replace('status="503"', "")
    finally:
        assert server.stop() == 0


def test_settings_come_from_tabship_variables(model_dir: Path, tmp_path: Path) -> None:
    server = start_server(model_dir, tmp_path, env={"TABSHIP_MAX_BATCH": "3"})
    try:
        assert httpx.get(server.url + "/v1/model").json()["max_batch"] == 3
        answer = httpx.post(server.url + "/v1/predict", json={"instances": [PATIENT] * 4})
        assert answer.status_code == 413
    finally:
        server.stop()


def test_two_workers_share_the_port(model_dir: Path, tmp_path: Path) -> None:
    server = start_server(model_dir, tmp_path, "--workers", "2")
    try:
        answers = [
            httpx.post(server.url + "/predict_api", json=PATIENT).status_code for _ in range(20)
        ]
        assert answers == [200] * 20
    finally:
        assert server.stop(timeout=30) == 0


def test_bad_model_folder_fails_fast_with_one_line(tmp_path: Path) -> None:
    import subprocess

    from ..servers import TABSHIP

    result = subprocess.run(
        [TABSHIP, "serve", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "tabship.json is missing" in result.stderr


def test_request_over_the_timeout_gets_504_and_the_next_works(
    model_dir: Path, tmp_path: Path
) -> None:
    env = {"TABSHIP_REQUEST_TIMEOUT": "0.05", "TABSHIP_MAX_BODY_BYTES": str(64 * 1024 * 1024)}
    server = start_server(model_dir, tmp_path, "--max-batch", "200000", env=env)
    try:
        body = json.dumps({"instances": [PATIENT] * 150_000}).encode()
        started = time.monotonic()
        slow = httpx.post(
            server.url + "/v1/predict",
            content=body,
            headers={"content-type": "application/json"},
            timeout=60,
        )
        elapsed = time.monotonic() - started
        assert slow.status_code == 504 and "0.05 s request timeout" in slow.json()["message"]
        assert elapsed < 5  # answered at the timeout, not after the whole batch
        assert httpx.post(server.url + "/predict_api", json=PATIENT, timeout=10).status_code == 200
        small = httpx.post(
            server.url + "/v1/predict", json={"instances": [PATIENT] * 50}, timeout=10
        )
        assert small.status_code == 200 and len(small.json()["predictions"]) == 50
        assert 'status="504"' in httpx.get(server.url + "/metrics").text
    finally:
        assert server.stop() == 0


def test_ready_within_two_seconds_of_process_start(model_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    server = start_server(model_dir, tmp_path)
    ready_after = time.monotonic() - started
    try:
        print(f"\nready {ready_after:.2f} s after process start")
        assert ready_after < 2.0
    finally:
        server.stop()
