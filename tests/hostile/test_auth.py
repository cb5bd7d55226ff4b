"""API keys against a live server: no key, a wrong key, a key in the URL, a huge header."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tabship.workflow import TrainedModel

from ..servers import TABSHIP, Server, serving

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

KEY = "live-server-key-6a1e9b2c4d7f"
RECORD = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(f"{KEY}\n")
    return path


@pytest.fixture(scope="module")
def locked(
    tiny_model: TrainedModel, keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serving(
        tiny_model.artifact.directory,
        tmp_path_factory.mktemp("locked"),
        env={"TABSHIP_API_KEYS_FILE": str(keys_file), "TABSHIP_PROTECT_METRICS": "1"},
    )


def predict(server: Server, headers: dict[str, str], query: str = "") -> httpx.Response:
    return httpx.post(f"{server.url}/predict_api{query}", json=RECORD, headers=headers, timeout=10)


def test_no_key_a_wrong_key_and_a_key_in_the_url_are_refused(locked: Server) -> None:
    for headers, query in (
        ({}, ""),
        ({"authorization": "Bearer wrong"}, ""),
        ({"x-api-key": KEY[:-1]}, ""),
        ({"authorization": KEY}, ""),  # no scheme
        ({}, f"?api_key={KEY}"),
        ({}, f"?access_token={KEY}"),
    ):
        answer = predict(locked, headers, query)
        assert answer.status_code == 401, (headers, query)
        assert answer.headers["www-authenticate"] == 'Bearer realm="tabship"'
        assert answer.json()["detail"]
    assert predict(locked, {"authorization": f"Bearer {KEY}"}).status_code == 200
    assert predict(locked, {"x-api-key": KEY}).status_code == 200
    assert httpx.get(f"{locked.url}/readyz").status_code == 200


def test_a_very_long_authorization_header_is_refused_cleanly(locked: Server) -> None:
    for size, status in ((8_000, 401), (15_000, 401), (40_000, 431), (1_000_000, 431)):
        try:
            answer = predict(locked, {"authorization": "Bearer " + "A" * size})
        except httpx.RemoteProtocolError:
            assert status == 431  # the server may close before the client finished sending
            continue
        assert answer.status_code == status, size
    assert predict(locked, {"authorization": f"Bearer {KEY}"}).status_code == 200
    metrics = httpx.get(f"{locked.url}/metrics", headers={"x-api-key": KEY}).text
    assert 'tabship_auth_failures_total{reason="malformed"}' in metrics
    assert KEY not in locked.log.read_text() + locked.errors.read_text()


def test_keys_rotate_without_a_restart(locked: Server, keys_file: Path) -> None:
    keys_file.write_text(f"{KEY}\nrotated-in-key-000111\n")
    deadline = time.monotonic() + 5
    while predict(locked, {"x-api-key": "rotated-in-key-000111"}).status_code != 200:
        assert time.monotonic() < deadline, "the new key was not taken within 5 s"
        time.sleep(0.2)
    assert predict(locked, {"x-api-key": KEY}).status_code == 200


def test_comparisons_with_and_without_a_matching_prefix_take_the_same_time(
    locked: Server,
) -> None:
    """Over the wire, interleaved: a key right but for its last character is no faster."""
    near = {"authorization": f"Bearer {KEY[:-1]}X"}
    far = {"authorization": f"Bearer X{KEY[1:]}"}
    times: dict[str, list[float]] = {"near": [], "far": []}
    with httpx.Client(base_url=locked.url, timeout=10) as client:
        for _ in range(300):
            for name, headers in (("near", near), ("far", far)):
                started = time.perf_counter()
                assert client.post("/predict_api", json=RECORD, headers=headers).status_code == 401
                times[name].append(time.perf_counter() - started)
    ratio = statistics.median(times["near"]) / statistics.median(times["far"])
    assert 0.8 < ratio < 1.25, ratio


@pytest.mark.parametrize("content", [None, "", "# comments only\n"])
def test_a_missing_or_empty_keys_file_stops_the_start(
    tiny_model: TrainedModel, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "api-keys"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [TABSHIP, "serve", str(tiny_model.artifact.directory), "--api-keys-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    said = "does not exist" if content is None else "holds no key"
    assert f"error: API keys file {path}" in done.stderr and said in done.stderr
    assert "Traceback" not in done.stderr


def test_a_client_waiting_for_100_continue_without_a_key_never_uploads(locked: Server) -> None:
    import socket

    host, port = locked.url.removeprefix("http://").split(":")
    for key in (b"", b"X-Api-Key: " + KEY.encode() + b"\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + key
                + b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            first = conn.recv(65536)
        # Without a key: 401 at once, never "100 Continue" (the body would follow it).
        assert first.startswith(b"HTTP/1.1 100" if key else b"HTTP/1.1 401"), first[:40]
