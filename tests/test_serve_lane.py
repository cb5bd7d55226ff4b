"""The server's own lane (serve/lane.py) over real sockets, and the loop turn's row batches.

The lane answers requests read whole without uvicorn's ASGI cycle; these tests speak raw
HTTP/1.x to a real `tabship serve` so that what a client sees on the wire is checked:
pipelining, keep-alive, HTTP/1.0, HEAD, split and late bodies, big bodies, clients that
leave, and SIGTERM with requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tabship.predictor import Predictor
from tabship.serve.api import RowBatcher, batch_invariant
from tabship.serve.app import create_app
from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model

from .conftest import make_tiny_table
from .servers import Server, start_server

RECORD = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}
BODY = json.dumps(RECORD).encode()
# Bytes read past an answer, by socket: the start of the next answer.
_UNREAD: dict[int, bytes] = {}


def post(body: bytes = BODY, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST /predict_api HTTP/{version}\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def get(path: str, extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def connect(server: Server) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    _UNREAD.pop(conn.fileno(), None)  # left by an earlier socket of the same number
    return conn


def read_answer(conn: socket.socket, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """The next HTTP answer on `conn`: status, headers (lower-case names) and body.

    Answers to pipelined requests may come in one packet: what follows one is kept for the next.
    """
    data = _UNREAD.pop(conn.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed mid-answer after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    size = 0 if head_only else int(headers["content-length"])
    while len(rest) < size:
        chunk = conn.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    if len(rest) > size:
        _UNREAD[conn.fileno()] = rest[size:]
    return int(lines[0].split(" ")[1]), headers, rest[:size]


def closed(conn: socket.socket) -> bool:
    """Whether the server closed the connection with nothing more sent."""
    return _UNREAD.pop(conn.fileno(), b"") == b"" and conn.recv(1) == b""


def logged(server: Server, status: int, timeout: float = 5) -> dict[str, Any]:
    """The server's access-log line for the first request answered `status` (written after the
    answer, so it is waited for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log_lines():
            if line.startswith("{") and json.loads(line)["status"] == status:
                return dict(json.loads(line))
        time.sleep(0.02)
    raise AssertionError(f"no log line with status {status}")


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A tree ensemble on the tiny table: a model whose rows the loop turn batches."""
    folder = tmp_path_factory.mktemp("trees")
    make_tiny_table().to_csv(folder / "tiny.csv", index=False)
    options = TrainOptions(target="charges", folds=3, models=["gradient_boosting"])
    return train_model(str(folder / "tiny.csv"), options, folder / "model")


@pytest.fixture(scope="module")
def server(trees: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        trees.artifact.directory,
        tmp_path_factory.mktemp("lane"),
        "--read-timeout",
        "1",
        "--max-body-bytes",
        "4096",
        "--max-header-bytes",
        "2048",
    )
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def value(trees: TrainedModel) -> str:
    """The prediction for RECORD, as the answer's body spells it."""
    predictor = Predictor.load(trees.artifact.directory)
    return repr(float(predictor.predict([RECORD]).values[0]))


def test_pipelined_requests_are_answered_in_order(server: Server, value: str) -> None:
    with connect(server) as conn:
        conn.sendall(get("/healthz") + post() + get("/readyz", "Connection: close\r\n"))
        first, second, third = (read_answer(conn) for _ in range(3))
        assert (first[0], first[2]) == (200, b'{"status":"ok"}')
        assert (second[0], second[2].decode()) == (200, value)
        assert second[1]["x-prediction-id"]
        assert (third[0], third[2]) == (200, b'{"status":"ready"}')
        assert third[1]["connection"] == "close" and closed(conn)


def test_a_body_behind_a_waiting_request_is_not_counted_as_head(server: Server) -> None:
    """The first request waits for its loop turn's batch; the second's body, longer than the
    header cap, arrives after the first is answered and is still read as a body."""
    padded = BODY[:-1] + b" " * 3000 + b"}"
    second = post(padded)
    head, body = second[: -len(padded)], padded
    with connect(server) as conn:
        conn.sendall(post() + head)
        assert read_answer(conn)[0] == 200
        conn.sendall(body)
        assert read_answer(conn)[0] == 200


@pytest.mark.parametrize(("path", "status"), [("/nonexistent", 404), ("/v1/model", 405)])
def test_a_body_answered_at_once_is_not_counted_as_the_next_requests_head(
    server: Server, path: str, status: int
) -> None:
    """A request answered while its chunk was being read had the whole chunk, its body too,
    counted as the head of the next request, which got a 431 it had not earned (this
    server's caps: 2 KB of head, 4 KB of body)."""
    body = b"x" * 3000
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with connect(server) as conn:
        conn.sendall(request)
        assert read_answer(conn)[0] == status
        conn.sendall(get("/healthz"))
        assert read_answer(conn)[:3:2] == (200, b'{"status":"ok"}')


def test_pipelined_heads_over_the_cap_together_are_each_read_as_one(server: Server) -> None:
    """Twenty heads of 250 bytes in one write: each is under the 2 KB cap, so all are
    answered, and nothing more (an unasked 431 followed them)."""
    pad = "X-Pad: " + "p" * 200 + "\r\n"
    with connect(server) as conn:
        conn.sendall(b"".join(get("/healthz", pad) for _ in range(20)))
        assert [read_answer(conn)[0] for _ in range(20)] == [200] * 20
        assert not _UNREAD.get(conn.fileno())
        conn.sendall(get("/readyz"))
        assert read_answer(conn)[:3:2] == (200, b'{"status":"ready"}')


@pytest.mark.parametrize("split", [False, True])
def test_an_upgrade_ask_is_ignored_and_the_body_read_as_a_body(
    server: Server, value: str, split: bool
) -> None:
    """The parser reads no body for a request asking to upgrade the connection: a request
    sent as that body was answered as a request of its own (smuggling), or the body dropped.
    tabship speaks no other protocol, so the ask is ignored (RFC 9110 7.8)."""
    smuggled = post()
    head = (
        "POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, Upgrade\r\n"
        f"Upgrade: websocket\r\nContent-Type: application/json\r\nContent-Length: {len(smuggled)}"
        "\r\n\r\n"
    ).encode()
    with connect(server) as conn:
        conn.sendall(head)
        if split:
            time.sleep(0.2)
        conn.sendall(smuggled)
        status, _, body = read_answer(conn)
        assert status == 422 and b"invalid JSON" in body  # one request: its body is not JSON
        conn.sendall(post(extra="Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"))
        status, _, body = read_answer(conn)  # curl --http2 and Java's client ask like this
        assert (status, body.decode()) == (200, value)
        conn.sendall(get("/healthz", "Connection: close\r\n"))
        assert read_answer(conn)[0] == 200 and closed(conn)  # nothing else was answered
    with connect(server) as conn:
        conn.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        assert read_answer(conn)[0] == 400 and closed(conn)


def test_a_request_before_a_malformed_one_is_answered_first(server: Server, value: str) -> None:
    """Answers go in order: the prediction, then the 400, then the close (the 400 used to go
    out at once and close, and the prediction waiting for its turn was lost)."""
    with connect(server) as conn:
        conn.sendall(post() + post() + b"GARBAGE\r\n\r\n")
        for _ in range(2):
            status, _, body = read_answer(conn)
            assert (status, body.decode()) == (200, value)
        status, _, body = read_answer(conn)
        assert status == 400 and b"not valid HTTP/1.1" in body and closed(conn)


def test_a_client_that_has_finished_sending_still_gets_its_answers(
    server: Server, value: str
) -> None:
    """A half-close (shutdown for writing) after the requests: they are answered, then the
    connection closes. uvicorn closed it at once, and the answers, counted as given, were lost."""
    with connect(server) as conn:
        conn.sendall(post() + get("/healthz") + post())
        conn.shutdown(socket.SHUT_WR)
        answers = [read_answer(conn) for _ in range(3)]
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert answers[2][2].decode() == value and closed(conn)
    chunked = (  # uvicorn's own path (a chunked body), half-closed the same way
        b"POST /predict_api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    )
    with connect(server) as conn:
        conn.sendall(chunked)
        conn.shutdown(socket.SHUT_WR)
        status, _, body = read_answer(conn)
        assert (status, body.decode()) == (200, value) and closed(conn)


def test_an_http_1_1_request_without_host_is_refused(server: Server) -> None:
    with connect(server) as conn:  # RFC 9112 3.2: a 400; HTTP/1.0 needs no Host
        conn.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        status, _, body = read_answer(conn)
        assert status == 400 and b"must carry a Host header" in body and closed(conn)
    with connect(server) as conn:
        conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert read_answer(conn)[0] == 200
    with connect(server) as conn:  # the parser would pass the compressed bytes on as the body
        conn.sendall(
            post().replace(b"Content-Length: ", b"Transfer-Encoding: gzip, chunked\r\nX-Was: ")
        )
        status, _, body = read_answer(conn)
        assert status == 400 and b"only chunked is accepted" in body and closed(conn)


def test_keep_alive_unless_asked_to_close(server: Server, value: str) -> None:
    with connect(server) as conn:
        for _ in range(3):
            conn.sendall(post())
            status, headers, body = read_answer(conn)
            assert (status, body.decode()) == (200, value) and "connection" not in headers
        conn.sendall(post(extra="Connection: close\r\n"))
        status, headers, body = read_answer(conn)
        assert (status, headers["connection"]) == (200, "close") and closed(conn)


def test_http_1_0_gets_its_answer_then_the_connection_closes(server: Server, value: str) -> None:
    with connect(server) as conn:
        conn.sendall(post(version="1.0"))
        status, headers, body = read_answer(conn)
        assert (status, body.decode(), headers["connection"]) == (200, value, "close")
        assert closed(conn)


def test_head_sends_the_length_of_get_and_no_body(server: Server) -> None:
    with connect(server) as conn:
        conn.sendall(get("/v1/model"))
        _, got, body = read_answer(conn)
        conn.sendall(get("/v1/model", method="HEAD") + get("/healthz"))
        status, headers, _ = read_answer(conn, head_only=True)
        assert status == 200 and headers["content-length"] == got["content-length"]
        assert int(headers["content-length"]) == len(body)
        # Nothing of the HEAD's body came: the next bytes are the next answer.
        assert read_answer(conn)[2] == b'{"status":"ok"}'


def test_a_body_split_across_packets(server: Server, value: str) -> None:
    with connect(server) as conn:
        whole = post()
        for start in range(0, len(whole), 17):
            conn.sendall(whole[start : start + 17])
            time.sleep(0.01)
        status, _, body = read_answer(conn)
        assert (status, body.decode()) == (200, value)


def test_a_late_body_is_answered_408_and_logged(server: Server) -> None:
    with connect(server) as conn:
        conn.sendall(post()[:-10])
        status, headers, body = read_answer(conn)
        assert status == 408 and headers["connection"] == "close"
        assert "did not arrive within the read timeout" in json.loads(body)["message"]
        assert closed(conn)
    assert logged(server, 408)["route"] == "/predict_api"


def test_big_bodies_are_refused_413_declared_or_sent(server: Server) -> None:
    big = json.dumps({**RECORD, "pad": "x" * 5000}).encode()
    with connect(server) as conn:
        conn.sendall(post(big))
        status, headers, body = read_answer(conn)
        assert status == 413 and headers["connection"] == "close"
        assert "over the 4096-byte limit" in json.loads(body)["message"]
    # Chunked bodies have no declared size: uvicorn's path reads them, with the same limits.
    chunked = (
        b"POST /predict_api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    )
    with connect(server) as conn:
        conn.sendall(chunked)
        assert read_answer(conn)[0] == 200


def test_a_client_that_leaves_mid_request_is_logged_499(server: Server) -> None:
    with connect(server) as conn:
        conn.sendall(post()[:-10])
        time.sleep(0.1)
    assert logged(server, 499)["route"] == "/predict_api"
    assert "tabship_requests_open 0.0" in httpx.get(server.url + "/metrics").text


def test_sigterm_answers_requests_in_flight_then_exits(
    trees: TrainedModel, tmp_path: Path, value: str
) -> None:
    running = start_server(trees.artifact.directory, tmp_path, "--drain-delay", "0.5")
    conns = [connect(running) for _ in range(5)]
    for conn in conns:  # kept alive, their bodies not yet complete
        conn.sendall(post()[:-10])
    time.sleep(0.2)
    running.process.send_signal(signal.SIGTERM)
    assert httpx.get(running.url + "/readyz").status_code == 503
    time.sleep(0.8)  # past the drain delay: the listener is closed, these are in flight
    for conn in conns:
        conn.sendall(post()[-10:])
        status, headers, body = read_answer(conn)
        assert (status, body.decode(), headers["connection"]) == (200, value, "close")
        assert closed(conn)
        conn.close()
    assert running.process.wait(timeout=15) == 0
    running.stop()


def count_calls(predictor: Predictor) -> list[int]:
    """From now on, the size of each `predictor.predict` call, in order."""
    calls: list[int] = []
    original = predictor.predict

    def counted(records: Any) -> Any:
        calls.append(len(records))
        return original(records)

    predictor.predict = counted  # type: ignore[method-assign]
    return calls


def test_records_of_one_turn_are_predicted_together_each_as_alone(trees: TrainedModel) -> None:
    predictor = Predictor.load(trees.artifact.directory)
    assert batch_invariant(predictor)
    app = create_app(predictor)
    original = predictor.predict
    calls = count_calls(predictor)
    records = [{**RECORD, "age": 20 + index, "bmi": 20.0 + index / 3} for index in range(12)]
    bad = {**RECORD, "age": "old"}
    unseen = {**RECORD, "region": "atlantis"}

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            asks = [http.post("/predict_api", json=r) for r in [*records, bad, unseen]]
            return list(await asyncio.gather(*asks))

    answers = asyncio.run(scenario())
    assert max(calls) > 1  # some records really went in one call
    for record, answer in zip(records, answers[:-2], strict=True):
        assert answer.status_code == 200
        assert answer.json() == original([record]).values[0]
    assert answers[-2].status_code == 422 and answers[-2].json()["detail"][0]["field"] == "age"
    assert answers[-1].status_code == 200
    assert answers[-1].json() == original([unseen]).values[0]
    assert len({a.headers["x-prediction-id"] for a in answers if a.status_code == 200}) == 13


def test_models_whose_rows_depend_on_the_batch_are_never_batched(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A linear model's matrix product rounds one row differently from several: no batches."""
    folder = tmp_path_factory.mktemp("ridge")
    make_tiny_table().to_csv(folder / "tiny.csv", index=False)
    options = TrainOptions(target="charges", folds=3, models=["ridge"])
    ridge = Predictor.load(
        train_model(str(folder / "tiny.csv"), options, folder / "m").artifact.directory
    )
    assert not batch_invariant(ridge) and not RowBatcher(ridge).enabled


def test_the_scikit_learn_engine_is_not_batched(trees: TrainedModel) -> None:
    """Its per-call DataFrame would make the load-time check cost a quarter of a second."""
    fallback = Predictor.load(trees.artifact.directory, engine="sklearn")
    assert not RowBatcher(fallback).enabled
    app = create_app(fallback)

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.post("/predict_api", json=RECORD)

    assert asyncio.run(ask()).json() == fallback.predict([RECORD]).values[0]


def test_one_row_v2_requests_join_the_turns_batch(trees: TrainedModel) -> None:
    """A V2 request of one row is the record /predict_api would get: same batch, same answer."""
    predictor = Predictor.load(trees.artifact.directory)
    app = create_app(predictor)
    name = app.context.v2.name
    original = predictor.predict
    calls = count_calls(predictor)
    records = [{**RECORD, "age": 30 + index, "bmi": 22.0 + index / 4} for index in range(6)]

    def tensors(record: dict[str, Any]) -> dict[str, Any]:
        inputs = []
        for key, value in record.items():
            kind = (
                "BYTES"
                if isinstance(value, str)
                else "FP64"
                if isinstance(value, float)
                else "INT64"
            )
            inputs.append({"name": key, "shape": [1], "datatype": kind, "data": [value]})
        return {"inputs": inputs}

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            asks = [http.post(f"/v2/models/{name}/infer", json=tensors(r)) for r in records]
            asks += [http.post("/predict_api", json=r) for r in records]
            return list(await asyncio.gather(*asks))

    answers = asyncio.run(scenario())
    assert max(calls) > len(records)  # V2 records went in with /predict_api's
    for record, v2, api in zip(records, answers[:6], answers[6:], strict=True):
        alone = original([record]).values[0]
        assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [alone]
        assert api.json() == alone


@pytest.mark.parametrize(
    ("head", "status", "said"),
    [
        # HTTP/2.0 in text was answered as HTTP/1.1; HTTP/2's preface and 3.0 were a 400.
        (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"HTTP/2.0 is not served here"),
        (b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", 505, b"version is not served here"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, b"version is not served here"),
        (b"GET /\r\n\r\n", 400, b"names no HTTP version"),  # HTTP/0.9
        # A method no one knows is 501 (it was 400); a malformed line stays 400.
        (b"FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501, b"'FOO' is not a method"),
        (b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501, b"'get' is not a method"),
        (b'G"ET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 400, b"not valid HTTP/1.1"),
        (b"GARBAGE\r\n\r\n", 400, b"not valid HTTP/1.1"),
        # Only 100-continue can be met; another expectation was ignored.
        (post(extra="Expect: 200-ok\r\n"), 417, b"'200-ok' cannot be met"),
    ],
)
def test_request_lines_and_expectations_it_cannot_serve_get_their_own_status(
    server: Server, head: bytes, status: int, said: bytes
) -> None:
    with connect(server) as conn:
        conn.sendall(head)
        answer, headers, body = read_answer(conn)
        assert (answer, said in body) == (status, True), body
        assert headers["connection"] == "close" and closed(conn)
    assert logged(server, status)["route"] == "other"


def test_an_encoded_slash_is_no_separator_on_the_wire(server: Server) -> None:
    body = json.dumps(
        {
            "inputs": [
                {"name": k, "shape": [1], "datatype": "BYTES", "data": [v]}
                for k, v in RECORD.items()
            ]
        }
    ).encode()
    with connect(server) as conn:
        for path, status in (
            (b"/v2/models/model%2fx/infer", 404),
            (b"/v2%2Fhealth%2Flive", 404),
            (b"/heal%74hz", 200),
        ):
            conn.sendall(
                b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
                if status == 404 and b"infer" in path
                else b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path
            )
            answer, _, text = read_answer(conn)
            assert answer == status, (path, text)
            if b"infer" in path:
                assert b"model 'model/x' is not served here" in text
