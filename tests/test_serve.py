"""The serving layer in-process: what it imports, and the contract it derives from a schema."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tabship.config import ServeSettings
from tabship.errors import (
    BodyTooLargeError,
    ConfigError,
    MalformedBodyError,
    MediaTypeError,
    RequestError,
)
from tabship.predictor import Predictor
from tabship.serve import contract
from tabship.workflow import TrainedModel


def test_serving_an_onnx_model_imports_no_sklearn_pandas_scipy_or_framework(
    tiny_model: TrainedModel,
) -> None:
    script = (
        "import json, sys\n"
        "from tabship.predictor import Predictor\n"
        "from tabship.serve.app import create_app\n"
        f"create_app(Predictor.load({str(tiny_model.artifact.directory)!r}))\n"
        "heavy = ('pandas', 'sklearn', 'scipy', 'skops', 'fastapi', 'starlette', 'pydantic')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_example_record_is_valid_and_schema_is_strict(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    example = contract.example_record(predictor.schema)
    assert predictor.predict([example]).warnings == []
    record = contract.record_schema(predictor.schema)
    assert record["additionalProperties"] is False and record["required"] == predictor.schema.names
    assert contract.batch_schema(predictor.schema, 7)["properties"]["instances"]["maxItems"] == 7


def read(body: bytes, *headers: tuple[bytes, bytes]) -> object:
    return contract.read_json(list(headers), body, 1024)


JSON = (b"content-type", b"application/json")


def test_json_reading_errors() -> None:
    assert read(b'{"a": NaN}', (b"content-type", b"application/json; charset=utf-8")) != {}
    with pytest.raises(MediaTypeError, match="'text/plain' is not accepted"):
        read(b"{}", (b"content-type", b"text/plain"))
    with pytest.raises(MediaTypeError, match="'none' is not accepted"):
        read(b"{}")
    with pytest.raises(MalformedBodyError, match="invalid JSON at line 1 column 2"):
        read(b"{x", JSON)
    # The standard library's messages give Python advice; the client gets its own.
    with pytest.raises(MalformedBodyError, match="starts with a byte order mark; send the JSON"):
        read('\ufeff{"a": 1}'.encode(), JSON)
    with pytest.raises(MalformedBodyError, match="a number has thousands of digits") as caught:
        read(b'{"a": ' + b"9" * 5000 + b"}", JSON)
    assert "sys." not in str(caught.value)


def test_every_json_route_reads_one_content_type_and_undoes_its_encoding() -> None:
    """The body rules V2 had, for every route: gzip and deflate inflated (within the limit),
    other encodings 415, UTF-8 only, and one Content-Type."""
    import gzip
    import zlib

    assert read(gzip.compress(b'{"a": 1}'), JSON, (b"content-encoding", b"gzip")) == {"a": 1}
    assert read(zlib.compress(b'{"a": 1}'), JSON, (b"content-encoding", b"deflate")) == {"a": 1}
    with pytest.raises(MediaTypeError, match="content encoding 'br' is not accepted"):
        read(b'{"a": 1}', JSON, (b"content-encoding", b"br"))
    with pytest.raises(MalformedBodyError, match="bytes after the end of the gzip data"):
        read(gzip.compress(b"{}") + b"junk", JSON, (b"content-encoding", b"gzip"))
    with pytest.raises(BodyTooLargeError, match="over the 1024-byte limit once inflated"):
        read(gzip.compress(b" " * 5000 + b"{}"), JSON, (b"content-encoding", b"gzip"))
    with pytest.raises(MediaTypeError, match="charset 'latin-1' is not accepted"):
        read(b"{}", (b"content-type", b"application/json; charset=latin-1"))
    with pytest.raises(RequestError, match="content-type: the request has more than one"):
        read(b"{}", (b"content-type", b"text/plain"), JSON)


def test_a_misspelt_variable_is_said_with_the_one_meant() -> None:
    from tabship.config import unknown_variables

    env = {
        "TABSHIP_KEYS_FILE": "/run/keys",
        "TABSHIP_PORT": "8080",
        "TABSHIP_STRICT_CATEGORY": "1",
        "TABSHIP_\x1b[31mX": "1",
        "TABSHIP_TEST_BASE_IMAGE": "debian",
        "PATH": "/bin",
    }
    assert unknown_variables(env) == [
        "'TABSHIP_\\x1b[31mX' is not a tabship variable; ignored",
        "TABSHIP_KEYS_FILE is not a tabship variable; ignored (did you mean "
        "TABSHIP_API_KEYS_FILE?)",
        "TABSHIP_STRICT_CATEGORY is not a tabship variable; ignored (did you mean "
        "TABSHIP_STRICT_CATEGORIES?)",
    ]


def test_serve_settings_flag_over_variable_over_default() -> None:
    env = {"TABSHIP_PORT": "9000", "TABSHIP_MAX_BATCH": "10", "TABSHIP_HOST": "0.0.0.0"}
    settings = ServeSettings.resolve({"port": 9100, "workers": None}, env)
    assert (settings.port, settings.max_batch, settings.host, settings.workers) == (
        9100,
        10,
        "0.0.0.0",
        1,
    )
    with pytest.raises(
        ConfigError, match=re.escape("TABSHIP_MAX_BATCH='many' is not a whole number (digits 0-9)")
    ):
        ServeSettings.resolve({}, {"TABSHIP_MAX_BATCH": "many"})
    with pytest.raises(ConfigError, match="TABSHIP_WORKERS='0' must be from 1 to 1024"):
        ServeSettings.resolve({}, {"TABSHIP_WORKERS": "0"})
    # The flag wins, even over a variable that would be refused.
    bad = {"TABSHIP_PORT": "abc", "TABSHIP_STRICT_CATEGORIES": "maybe"}
    settings = ServeSettings.resolve({"port": 9100, "strict_categories": False}, bad)
    assert (settings.port, settings.strict_categories) == (9100, False)


def test_an_error_names_the_variable_that_gave_the_value(tiny_model: TrainedModel) -> None:
    from tabship.serve.server import _checked_start

    model = tiny_model.artifact.directory
    for flags, env, said in [
        ({}, {"TABSHIP_LOG_DB": "garbage"}, "TABSHIP_LOG_DB 'garbage' is not a database URL"),
        ({"log_db": "garbage"}, {}, "--log-db 'garbage' is not a database URL"),
        ({}, {"TABSHIP_MODEL_NAME": "a?b"}, "give TABSHIP_MODEL_NAME up to 128 letters"),
        ({"model_name": "a?b"}, {"TABSHIP_MODEL_NAME": "ok"}, "give --model-name up to 128"),
    ]:
        settings = ServeSettings.resolve(flags, env)
        with pytest.raises(ConfigError, match=re.escape(said)):
            _checked_start(model, settings)


@pytest.mark.parametrize(
    ("flags", "env", "said"),
    [
        # uvicorn bound '' to every interface, IPv4 and IPv6.
        ({"host": ""}, {}, "--host '' is not an address"),
        # Meant to restrict, an empty list answered every Host.
        ({}, {"TABSHIP_ALLOWED_HOSTS": ",,,"}, "TABSHIP_ALLOWED_HOSTS=',,,' names no host"),
        ({"allowed_hosts": ("example.com:8080",)}, {}, "give the name without its port"),
        ({}, {"TABSHIP_ALLOWED_HOSTS": "ex ample.com"}, "entry 'ex ample.com': give a host"),
        ({"allowed_hosts": ("*.example.com",)}, {}, ".example.com (with subdomains) or *"),
    ],
)
def test_hosts_that_would_listen_or_answer_more_than_meant_are_refused(
    flags: dict[str, object], env: dict[str, str], said: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        ServeSettings.resolve(flags, env)


@pytest.mark.parametrize(
    ("variable", "raw", "said"),
    [
        ("TABSHIP_PORT", "nan", "is not a whole number (digits 0-9)"),
        ("TABSHIP_REQUEST_TIMEOUT", "inf", "is not a number such as 2.5"),
        ("TABSHIP_LOG_WAIT_SECONDS", "-inf", "is not a number such as 2.5"),
        ("TABSHIP_REQUEST_TIMEOUT", "1e400", "is not a finite number"),
        ("TABSHIP_PORT", "70000", "must be from 0 to 65535"),
        ("TABSHIP_PORT", "80.5", "is not a whole number (digits 0-9)"),
        # Written as the flag takes them: float() read these, the flags refuse them.
        ("TABSHIP_PORT", "1e3", "is not a whole number (digits 0-9)"),
        ("TABSHIP_PORT", "\u0668\u0660\u0668\u0660", "is not a whole number (digits 0-9)"),
        ("TABSHIP_PORT", "1_8181", "is not a whole number (digits 0-9)"),
        ("TABSHIP_DRAIN_DELAY", "1e300", "must be from 0 to 3600"),
        ("TABSHIP_DRIFT_SECONDS", "0", "must be at least 0.1"),
    ],
)
def test_a_serve_variable_out_of_bounds_is_refused_by_name(
    variable: str, raw: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{variable}={raw!r} {said}")):
        ServeSettings.resolve({}, {variable: raw})


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        ({"port": 70000}, "--port 70000 must be from 0 to 65535"),
        ({"workers": 0}, "--workers 0 must be from 1 to 1024"),
        ({"max_concurrency": 0}, "--max-concurrency 0 must be at least 1"),
        ({"request_timeout": math.nan}, "--request-timeout nan is not a finite number"),
        ({"drain_delay": -1.0}, "--drain-delay -1 must be from 0 to 3600"),
        ({"log_retention_days": math.inf}, "--log-retention-days inf is not a finite number"),
    ],
)
def test_a_serve_flag_out_of_bounds_is_refused_by_name(flags: dict[str, float], said: str) -> None:
    # Each of these started a server that could not serve: port 70000 was bound as 4464, no
    # worker listened, every request got 503; NaN (which compares false with every time) was taken.
    with pytest.raises(ConfigError, match=re.escape(said)):
        ServeSettings.resolve(flags, {})


def test_readiness_waits_for_the_warm_up_and_liveness_does_not(tiny_model: TrainedModel) -> None:
    import asyncio

    import httpx

    from tabship.serve.app import ServerState, create_app

    state = ServerState()
    app = create_app(Predictor.load(tiny_model.artifact.directory), state=state)

    async def scenario() -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tabship"
        )
        for path in ("/readyz", "/startupz", "/healthz"):  # model loaded, warm-up not yet run
            seen.append((path, (await client.get(path)).status_code))
        inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        outbox: list[dict[str, str]] = []

        async def send(message: dict[str, str]) -> None:
            outbox.append(message)

        await inbox.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(
            app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
        )
        while not any(m["type"] == "lifespan.startup.complete" for m in outbox):
            await asyncio.sleep(0.01)
        seen.append(("/readyz after warm-up", (await client.get("/readyz")).status_code))
        state.draining = True
        seen.append(("/readyz draining", (await client.get("/readyz")).status_code))
        seen.append(("/healthz draining", (await client.get("/healthz")).status_code))
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        await client.aclose()
        return seen

    assert asyncio.run(scenario()) == [
        ("/readyz", 503),
        ("/startupz", 503),
        ("/healthz", 200),
        ("/readyz after warm-up", 200),
        ("/readyz draining", 503),
        ("/healthz draining", 200),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Past 64 bits orjson reads an integer as the nearest double; these must stay exact.
        (b'{"n": 18446744073709551617}', {"n": 18446744073709551617}),
        (b'{"n": -9223372036854775809}', {"n": -9223372036854775809}),
        (b"[1234567890123456789012, 1]", [1234567890123456789012, 1]),
        (b'{"s": "12345678901234567890"}', {"s": "12345678901234567890"}),
        # 18 digits and digits split by a point or a sign are orjson's to read.
        (b'{"n": 123456789012345678}', {"n": 123456789012345678}),
        (b'{"x": 1234567890.123456789}', {"x": 1234567890.123456789}),
    ],
)
def test_long_integers_are_read_exactly(body: bytes, expected: object) -> None:
    parsed = contract.parse_json(body)
    assert parsed == expected
    assert type(parsed) is type(expected)
    values = parsed.values() if isinstance(parsed, dict) else parsed
    assert [type(v) for v in values] == [
        type(v) for v in (expected.values() if isinstance(expected, dict) else expected)
    ]


def test_options_that_do_nothing_alone_are_said_and_relative_logs_shown_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tabship.monitor.logurl import shown_log_db
    from tabship.serve.server import idle_options

    alone = ServeSettings(protect_metrics=True, public_pages=True, log_retention_days=3)
    assert idle_options(alone) == [
        "--protect-metrics does nothing without --api-keys-file",
        "--public-pages does nothing without --api-keys-file",
        "--log-retention-days does nothing without --log-db",
    ]
    assert idle_options(ServeSettings(protect_metrics=True, api_keys_file=tmp_path)) == []
    # Three slashes is a path relative to the working folder, whatever it looks like.
    monkeypatch.chdir(tmp_path)
    assert shown_log_db("sqlite:///tmp/x.db") == f"sqlite:///{tmp_path / 'tmp' / 'x.db'}"
    assert shown_log_db("postgresql://u:secret@db/x") == "postgresql://u:***@db/x"
