"""API keys in-process: the keys file, who may call which route, rotation, generic errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tabship.config import ServeSettings
from tabship.errors import ConfigError
from tabship.predictor import Predictor
from tabship.serve import auth
from tabship.serve.app import App, create_app
from tabship.serve.auth import KeyRing, read_keys
from tabship.serve.http import Answer, Request, json_answer
from tabship.serve.prometheus import Metrics
from tabship.serve.routes import Route, RouteTable
from tabship.workflow import TrainedModel

KEY = "k3y-for-tests-0123456789abcdef"
OTHER = "another-key-that-is-accepted"
PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def predictor(tiny_model: TrainedModel) -> Predictor:
    return Predictor.load(tiny_model.artifact.directory)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys"
    hashed = hashlib.sha256(OTHER.encode()).hexdigest()
    path.write_text(f"# rotated monthly\n{KEY}\n\nsha256:{hashed}\n")
    return path


def served(predictor: Predictor, keys: Path, **settings: Any) -> App:
    return create_app(predictor, ServeSettings(api_keys_file=keys, **settings))


def call(app: App, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tabship") as http:
            return await http.request(method, path, **kwargs)

    return run(scenario())


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_the_keys_file_takes_plain_keys_and_sha256_lines(keys: Path) -> None:
    digests = read_keys(keys)
    assert digests == {auth.digest(KEY), hashlib.sha256(OTHER.encode()).digest()}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "holds no key"),
        ("# only a comment\n\n", "holds no key"),
        ("sha256:abc\n", "line 1: after 'sha256:' put 64 hex digits"),
    ],
)
def test_an_unusable_keys_file_is_refused(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ConfigError, match=said):
        read_keys(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_keys(tmp_path / "missing")
    with pytest.raises(ConfigError, match="is a folder"):
        read_keys(tmp_path)


def test_a_keys_file_from_windows_a_pipe_or_a_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Windows editor's BOM made the first key one no client sent.
    saved = tmp_path / "bom"
    saved.write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")
    assert read_keys(saved) == {auth.digest(KEY)}
    # A pipe (`--api-keys-file <(vault read ...)`) is read once: the start's check and the
    # key ring used to read it twice, and the second found it empty.
    reader, writer = os.pipe()  # what bash hands over for <(...)
    os.write(writer, f"{OTHER}\n".encode())
    os.close(writer)
    pipe = Path(f"/dev/fd/{reader}")
    assert read_keys(pipe) == {auth.digest(OTHER)}
    ring = KeyRing(pipe)
    ring.refresh()
    assert ring.accepts(OTHER.encode()) and not ring.accepts(KEY.encode())
    os.close(reader)
    # A device, or a wrong file, is not read into memory past the bound.
    monkeypatch.setattr(auth, "MAX_KEYS_FILE_BYTES", 1000)
    big = tmp_path / "big"
    big.write_text("k\n" * 600)
    with pytest.raises(ConfigError, match="is larger than"):
        read_keys(big)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/predict_api", PATIENT),
        ("POST", "/v1/predict", {"instances": [PATIENT]}),
        ("GET", "/v1/model", None),
        ("GET", "/no-such-route", None),
    ],
)
def test_protected_routes_need_a_key(
    predictor: Predictor, keys: Path, method: str, path: str, body: Any
) -> None:
    app = served(predictor, keys)
    for headers in ({}, bearer("wrong"), {"x-api-key": "wrong"}, {"authorization": f"Basic {KEY}"}):
        answer = call(app, method, path, json=body, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == 'Bearer realm="tabship"'
        assert set(answer.json()) == {"detail", "message"}
        assert KEY not in answer.text
    # The key in the URL is never looked at: it would end up in every proxy's log.
    assert call(app, method, f"{path}?api_key={KEY}&key={KEY}", json=body).status_code == 401
    for good in (
        bearer(KEY),
        bearer(OTHER),
        {"x-api-key": KEY},
        {"authorization": f"bearer {KEY}"},
    ):
        answer = call(app, method, path, json=body, headers=good)
        assert answer.status_code in (200, 404), good


def test_probes_static_files_and_metrics_are_open_unless_asked(
    predictor: Predictor, keys: Path
) -> None:
    app = served(predictor, keys)
    for path in ("/healthz", "/metrics", "/static/style.css", "/static/key.js"):
        assert call(app, "GET", path).status_code in (200, 503), path
    locked = served(predictor, keys, protect_metrics=True)
    assert call(locked, "GET", "/metrics").status_code == 401
    assert call(locked, "GET", "/metrics", headers=bearer(KEY)).status_code == 200
    assert call(locked, "GET", "/healthz").status_code in (200, 503)


def test_pages_ask_a_browser_for_the_key_unless_public(predictor: Predictor, keys: Path) -> None:
    app = served(predictor, keys)
    html = {"accept": "text/html,application/xhtml+xml"}
    for path in ("/", "/docs", "/openapi.json", "/report"):
        assert call(app, "GET", path).status_code == 401, path
    page = call(app, "GET", "/", headers=html)
    assert page.status_code == 401
    assert page.headers["www-authenticate"].startswith("Bearer")
    assert 'id="key-form"' in page.text and "/static/key.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "smoker" not in page.text and "region" not in page.text  # nothing of the model
    assert call(app, "GET", "/", headers={**html, **bearer(KEY)}).status_code == 200
    public = served(predictor, keys, public_pages=True)
    assert call(public, "GET", "/", headers=html).status_code == 200
    assert call(public, "GET", "/docs").status_code == 200
    assert call(public, "POST", "/predict_api", json=PATIENT).status_code == 401


def test_failures_are_counted_and_logged_without_the_key(
    predictor: Predictor, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = served(predictor, keys)
    secret_guess = "guess-" + KEY[:-1]
    call(app, "POST", "/predict_api", json=PATIENT, headers=bearer(secret_guess))
    call(app, "POST", "/predict_api", json=PATIENT)
    call(app, "POST", "/predict_api", json=PATIENT, headers=bearer("x" * 10_000))
    call(app, "POST", "/predict_api", json=PATIENT, headers=bearer(KEY))
    metrics = call(app, "GET", "/metrics").text
    assert 'tabship_auth_failures_total{reason="wrong"} 1.0' in metrics
    assert 'tabship_auth_failures_total{reason="missing"} 1.0' in metrics
    assert 'tabship_auth_failures_total{reason="malformed"} 1.0' in metrics
    out = capsys.readouterr()
    assert out.err.count('"event": "auth_failed"') == 3
    assert '"client": "203.0.113.9"' in out.err and '"route": "/predict_api"' in out.err
    assert secret_guess not in out.err + out.out and KEY not in out.err + out.out


def test_a_refused_request_never_takes_a_slot(predictor: Predictor, keys: Path) -> None:
    app = served(predictor, keys, max_concurrency=1)
    app.state.in_flight = 1  # every slot taken: a refused request must not even get to the cap
    assert call(app, "POST", "/predict_api", json=PATIENT).status_code == 401
    assert call(app, "POST", "/predict_api", json=PATIENT, headers=bearer(KEY)).status_code == 503
    app.state.in_flight = 0


def test_a_route_added_later_is_protected_by_default(predictor: Predictor, keys: Path) -> None:
    async def infer(request: Request) -> Answer:
        return json_answer({"ok": True})

    table = RouteTable([Route("POST", "/v2/models/m/infer", infer, "V2 inference")])
    gate = auth.Gate(KeyRing(keys), table, Metrics(), frozenset({auth.OPEN, auth.METRICS}))
    refused = gate(Request("POST", "/v2/models/m/infer", []))
    assert refused is not None and refused.status == 401
    keyed = [(b"authorization", f"Bearer {KEY}".encode())]
    assert gate(Request("POST", "/v2/models/m/infer", keyed)) is None


def test_the_keys_file_is_re_read_when_it_changes(
    keys: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = KeyRing(keys)
    assert ring.accepts(KEY.encode())
    keys.write_text("a-new-key-after-rotation\n")
    # Within the interval the file is not even looked at: no stat per request.
    assert ring.accepts(KEY.encode())
    monkeypatch.setattr(auth, "RELOAD_INTERVAL", 0.0)
    assert not ring.accepts(KEY.encode())
    assert ring.accepts(b"a-new-key-after-rotation")
    keys.write_text("")  # a half-written or emptied file keeps the keys in use
    assert ring.accepts(b"a-new-key-after-rotation")
    assert "holds no key; put one key" in capsys.readouterr().err


def test_generic_errors_name_the_field_only(predictor: Predictor, keys: Path) -> None:
    bad = {**PATIENT, "region": 7, "age": "old"}
    detailed = call(served(predictor, keys), "POST", "/predict_api", json=bad, headers=bearer(KEY))
    generic = call(
        served(predictor, keys, generic_errors=True),
        "POST",
        "/predict_api",
        json=bad,
        headers=bearer(KEY),
    )
    assert detailed.status_code == generic.status_code == 422
    assert {p["field"] for p in generic.json()["detail"]} == {"age", "region"}
    assert {p["msg"] for p in generic.json()["detail"]} == {"invalid value"}
    assert generic.json()["message"] == "invalid value: age, region"
    assert detailed.json()["message"] != generic.json()["message"]


def test_without_a_keys_file_there_is_no_gate(predictor: Predictor) -> None:
    app = create_app(predictor)
    assert app.layers.gate is None
    assert call(app, "POST", "/predict_api", json=PATIENT).status_code == 200


def test_comparison_takes_the_same_time_with_or_without_a_matching_prefix(keys: Path) -> None:
    """Hashing first, then compare_digest over every key: a shared prefix does not show."""
    import time

    ring = KeyRing(keys)
    near = (KEY[:-1] + "X").encode()  # all but the last character right
    far = ("Z" + KEY[1:]).encode()  # the first character wrong
    samples: dict[bytes, list[float]] = {near: [], far: []}
    for _ in range(30):
        for guess in (near, far):
            started = time.perf_counter_ns()
            for _ in range(2000):
                ring.accepts(guess)
            samples[guess].append(time.perf_counter_ns() - started)
    near_median = sorted(samples[near])[15]
    far_median = sorted(samples[far])[15]
    assert 0.8 < near_median / far_median < 1.25, (near_median, far_median)


def test_openapi_says_which_routes_need_a_key(predictor: Predictor, keys: Path) -> None:
    spec = call(served(predictor, keys, public_pages=True), "GET", "/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    predict = spec["paths"]["/predict_api"]["post"]
    assert predict["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "401" in predict["responses"]
    for path in ("/healthz", "/metrics", "/", "/docs"):
        assert "security" not in spec["paths"][path]["get"], path
    assert "components" not in call(create_app(predictor), "GET", "/openapi.json").json()


def test_a_keys_file_every_user_can_read_is_warned_about(keys: Path) -> None:
    keys.chmod(0o644)
    warning = auth.warn_if_shared(keys)
    assert warning is not None and "readable by every user" in warning
    keys.chmod(0o600)
    assert auth.warn_if_shared(keys) is None


@pytest.mark.parametrize(
    ("peer", "forwarded", "logged"),
    [
        ("127.0.0.1", "198.51.100.7, 127.0.0.1", "198.51.100.7"),  # behind a proxy on this host
        ("127.0.0.1", "10.0.0.1, 198.51.100.7", "198.51.100.7"),  # the nearest hop, as uvicorn
        ("::1", '"><script>\n', "::1"),  # not an address: the proxy is named
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # a remote peer is not believed
        ("127.0.0.1", None, "127.0.0.1"),
    ],
)
def test_the_failure_line_names_the_client_behind_a_local_proxy(
    predictor: Predictor,
    keys: Path,
    capsys: pytest.CaptureFixture[str],
    peer: str,
    forwarded: str | None,
    logged: str,
) -> None:
    app = served(predictor, keys)
    headers = {"x-forwarded-for": forwarded} if forwarded else {}

    async def scenario() -> int:
        transport = httpx.ASGITransport(app=app, client=(peer, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tabship") as http:
            return (await http.post("/predict_api", json=PATIENT, headers=headers)).status_code

    assert run(scenario()) == 401
    lines = [line for line in capsys.readouterr().err.splitlines() if "auth_failed" in line]
    assert len(lines) == 1 and json.loads(lines[0])["client"] == logged


def test_a_browser_at_the_keyed_monitor_page_gets_the_page_asking_for_the_key(
    predictor: Predictor, keys: Path, tmp_path: Path
) -> None:
    app = served(predictor, keys, log_db=f"sqlite:///{tmp_path / 'log.db'}", public_pages=True)
    html = {"accept": "text/html,application/xhtml+xml"}
    page = call(app, "GET", "/monitor", headers=html)
    assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Bearer")
    assert 'id="key-form"' in page.text and "/static/key.js" in page.text
    # --public-pages opens the form, not the log's inputs; an API client still gets JSON.
    api = call(app, "GET", "/monitor")
    assert api.status_code == 401 and "detail" in api.json()
    assert call(app, "GET", "/monitor", headers={**html, **bearer(KEY)}).status_code == 200


def test_two_keys_in_one_request_are_refused_whichever_comes_first(
    predictor: Predictor, keys: Path
) -> None:
    """A proxy may check one header and the app another: one key a request, or 401."""
    app = served(predictor, keys)
    for headers in (
        [("x-api-key", KEY), ("x-api-key", "wrong")],
        [("x-api-key", "wrong"), ("x-api-key", KEY)],
        [("x-api-key", KEY), ("authorization", f"Bearer {KEY}")],
    ):
        answer = call(app, "POST", "/predict_api", json={}, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["message"] == "the request carries 2 API keys; send one"


@pytest.mark.parametrize(
    ("peer", "forwarded", "logged"),
    [
        ("127.0.0.1", "<script>alert(1)</script>", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.7, not an address", "127.0.0.1"),  # the nearest hop decides
        ("127.0.0.1", "not an address, 198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "198.51.100.7:8080", "127.0.0.1"),  # a port is not part of an address
        ("::1", "fe80::1%<script>", "::1"),  # a zone may be any text
        ("::1", "2001:db8::1, ::1", "2001:db8::1"),
        ("::1", "2001:0db8:0::1", "2001:db8::1"),  # as the address is written, not the text
        ("127.0.0.1", "::ffff:127.0.0.1, 127.0.0.1", "127.0.0.1"),  # proxies all the way
    ],
)
def test_only_an_ip_address_in_x_forwarded_for_names_the_client(
    predictor: Predictor,
    keys: Path,
    capsys: pytest.CaptureFixture[str],
    peer: str,
    forwarded: str,
    logged: str,
) -> None:
    app = served(predictor, keys)

    async def scenario() -> int:
        transport = httpx.ASGITransport(app=app, client=(peer, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tabship") as http:
            headers = {"x-forwarded-for": forwarded}
            return (await http.post("/predict_api", json=PATIENT, headers=headers)).status_code

    assert run(scenario()) == 401
    lines = [line for line in capsys.readouterr().err.splitlines() if "auth_failed" in line]
    assert len(lines) == 1 and json.loads(lines[0])["client"] == logged
