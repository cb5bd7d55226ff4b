"""Attacks on the server's limits, over real sockets: stalled clients, endless headers, huge
bodies, odd methods and hosts. Each closes a hole found against round one's server."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from tabship.workflow import TrainedModel

from ..servers import Server, serving

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

GOOD = {"age": 40, "sex": "female", "bmi": 27.5, "children": 2, "smoker": "no", "region": "south"}
READ_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server(
    insurance_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serving(
        insurance_model.artifact.directory,
        tmp_path_factory.mktemp("limits"),
        "--max-concurrency",
        "2",
        env={
            "TABSHIP_READ_TIMEOUT": str(READ_TIMEOUT),
            "TABSHIP_MAX_HEADER_BYTES": "8192",
            "TABSHIP_ALLOWED_HOSTS": "127.0.0.1,localhost,[::1]",
        },
    )


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_answer(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def stalled_body(server: Server) -> socket.socket:
    """Headers promising 200 bytes of body, then ten bytes, then nothing."""
    conn = connect(server)
    conn.sendall(
        b"POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\n\r\n{"age": 40'
    )
    return conn


def test_stalled_clients_hold_no_slot_and_get_408(server: Server) -> None:
    stalled = [stalled_body(server) for _ in range(2)]  # as many as --max-concurrency
    time.sleep(0.2)
    started = time.monotonic()
    answer = httpx.post(server.url + "/predict_api", json=GOOD, timeout=5)
    assert answer.status_code == 200 and time.monotonic() - started < 0.5
    for conn in stalled:
        status, _, body = read_answer(conn)
        assert status == 408 and "read timeout" in json.loads(body)["message"]
        conn.close()


def test_a_body_that_never_starts_gets_408_logged_and_counted(server: Server) -> None:
    with connect(server) as conn:
        conn.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n"
        )
        status, headers, body = read_answer(conn)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["message"].startswith("request: the body did not arrive")
    time.sleep(0.2)
    assert any(
        json.loads(line)["status"] == 408 and json.loads(line)["route"] == "/v1/predict"
        for line in server.log_lines()
    )


def test_headers_that_never_end_get_408(server: Server) -> None:
    conn = connect(server)
    conn.sendall(b"POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    started = time.monotonic()
    status, _, body = read_answer(conn)
    assert status == 408 and json.loads(body)["detail"].startswith("headers: did not arrive")
    assert READ_TIMEOUT - 0.2 < time.monotonic() - started < READ_TIMEOUT + 2
    conn.close()
    with connect(server) as silent:  # connects and says nothing at all
        assert read_answer(silent)[0] == 408


def rss_kib(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def test_an_endless_header_is_cut_at_the_cap_with_431(server: Server) -> None:
    before = rss_kib(server)
    conn = connect(server)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    sent = 0
    try:
        while sent < 200 * 1024 * 1024:
            conn.sendall(b"a" * 65536)
            sent += 65536
    except OSError:
        pass  # the server closed the connection: what we want
    assert sent < 8 * 1024 * 1024
    status, headers, body = read_answer(conn)
    conn.close()
    assert status == 431 and headers["content-type"] == "application/json"
    assert json.loads(body)["message"] == "headers: over the 8192-byte limit"
    assert rss_kib(server) - before < 20 * 1024


def huge_batch() -> bytes:
    return json.dumps({"instances": [GOOD] * 100_000}).encode()


def test_a_body_far_over_the_limit_is_answered_413_to_urllib_and_requests(server: Server) -> None:
    body = huge_batch()
    assert len(body) > 8 * 1024 * 1024
    request = urllib.request.Request(
        server.url + "/v1/predict", data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    assert "over the 1048576-byte limit" in json.loads(caught.value.read())["message"]
    answer = requests.post(
        server.url + "/v1/predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 413 and answer.json()["detail"].startswith("body: ")
    # Chunked, so no Content-Length warns the server in advance.
    chunked = requests.post(
        server.url + "/v1/predict",
        data=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code == 413


def test_numbers_past_float32_and_huge_integers_are_422(server: Server) -> None:
    for token in ("1e308", "-1e39", "9" * 5000):
        body = json.dumps(GOOD).replace("27.5", token).encode()
        answer = httpx.post(
            server.url + "/predict_api", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, (token[:10], answer.text[:200])
        payload = answer.json()
        assert "bmi" in payload["message"] or "invalid JSON" in payload["message"]


def test_invented_methods_share_one_metric_label(server: Server) -> None:
    for method in ("PROPFIND", "MKCOL", "LOCK", "REPORT"):
        assert httpx.request(method, server.url + "/v1/predict").status_code == 405
    # A method no one implements is refused by the parser (501), in the same body shape.
    invented = httpx.request("BREW", server.url + "/v1/predict")
    assert invented.status_code == 501 and invented.json()["message"].startswith("request: ")
    metrics = httpx.get(server.url + "/metrics").text
    assert 'method="other"' in metrics
    assert "PROPFIND" not in metrics and "MKCOL" not in metrics


def raw_request(server: Server, head: bytes, *rest: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as conn:
        conn.sendall(head)
        for part in rest:
            conn.sendall(part)
        return read_answer(conn)


def test_other_hosts_are_refused(server: Server) -> None:
    answer = httpx.get(server.url + "/v1/model", headers={"host": "evil.example"})
    assert answer.status_code == 400 and "evil.example" in answer.json()["message"]
    assert httpx.get(server.url + "/v1/model", headers={"host": "localhost:80"}).status_code == 200
    assert httpx.get(server.url + "/v1/model", headers={"host": "[::1]:80"}).status_code == 200
    for host in (b"[localhost]", b"[127.0.0.1]:1"):
        head = b"GET /v1/model HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        assert raw_request(server, head)[0] == 400, host
    # Two Host fields, and an absolute target naming another host, are refused too.
    two = b"GET /v1/model HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    assert raw_request(server, two)[0] == 400
    absolute = (
        b"GET http://evil.example/v1/model HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert raw_request(server, absolute)[0] == 400
    # Probes answer whatever the Host: the kubelet asks by the pod's IP.
    assert httpx.get(server.url + "/readyz", headers={"host": "10.1.2.3:8080"}).status_code == 200


def test_a_chunked_body_crossing_the_limit_in_its_last_chunk_gets_413(server: Server) -> None:
    started = time.monotonic()
    status, _, body = raw_request(
        server,
        b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n" % 1_100_000 + b" " * 1_100_000 + b"\r\n0\r\n\r\n",
    )
    assert status == 413 and time.monotonic() - started < READ_TIMEOUT
    assert json.loads(body)["message"] == "body: over the 1048576-byte limit"


def test_trailers_never_become_headers_and_are_capped(server: Server) -> None:
    # A Content-Type sent only as a trailer does not make the body JSON.
    body = json.dumps(GOOD).encode()
    status, _, _ = raw_request(
        server,
        b"POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n",
        b"%x\r\n%s\r\n0\r\nContent-Type: application/json\r\n\r\n" % (len(body), body),
    )
    assert status == 415
    before = rss_kib(server)
    with connect(server) as conn:
        conn.sendall(
            b"POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n2\r\n{}\r\n0\r\n"
        )
        try:
            for _ in range(2000):
                conn.sendall(b"X-T: " + b"a" * 4096 + b"\r\n")
        except OSError:
            pass  # closed by the server: what we want
        status, _, _ = read_answer(conn)
    assert status == 431
    assert rss_kib(server) - before < 20 * 1024


def test_bare_line_breaks_do_not_keep_a_connection_open(server: Server) -> None:
    with connect(server) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.2)
        conn.recv(65536)
        started = time.monotonic()
        conn.sendall(b"\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert time.monotonic() - started < READ_TIMEOUT + 2
    assert data.startswith(b"HTTP/1.1 408")


def test_a_big_head_in_one_read_gets_431_and_is_logged(server: Server) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"a" * 12_000 + b"\r\n\r\n"
    status, _, body = raw_request(server, head)
    assert status == 431 and json.loads(body)["detail"].startswith("headers: over the 8192")
    time.sleep(0.2)
    assert any(json.loads(line)["status"] == 431 for line in server.log_lines())
    assert 'status="431"' in httpx.get(server.url + "/metrics").text


def test_expect_continue_over_the_limit_is_refused_before_the_body(server: Server) -> None:
    with connect(server) as conn:
        conn.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
        )
        first = conn.recv(65536)
    assert first.startswith(b"HTTP/1.1 413"), first[:40]


def test_head_answers_like_get_without_a_body(server: Server) -> None:
    answer = httpx.head(server.url + "/")
    assert answer.status_code == 200 and answer.content == b""
    assert int(answer.headers["content-length"]) > 1000


def test_pages_carry_security_headers_and_no_outside_address(server: Server) -> None:
    for path in ("/", "/docs", "/report"):
        answer = httpx.get(server.url + path)
        assert answer.status_code == 200
        policy = answer.headers["content-security-policy"]
        assert (
            "frame-ancestors 'none'" in policy
            and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        )
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"(src|href)=\"(https?:)?//", answer.text), path
    for path in ("/static/swagger-ui-bundle.js", "/static/swagger-ui.css", "/static/docs.js"):
        assert httpx.get(server.url + path).status_code == 200
    assert httpx.post(server.url + "/predict_api", json=GOOD).headers["x-content-type-options"]


def test_a_client_that_leaves_is_logged_as_499(server: Server) -> None:
    conn = stalled_body(server)
    time.sleep(0.2)
    conn.close()
    time.sleep(0.5)
    lines = [json.loads(line) for line in server.log_lines()]
    assert any(line["status"] == 499 and line["route"] == "/predict_api" for line in lines)
    # No server error: 501 and 505 refuse what a client asked (an invented method, HTTP/2).
    assert all(line["status"] < 500 or line["status"] in (501, 505) for line in lines)
