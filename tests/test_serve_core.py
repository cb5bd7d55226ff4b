"""The serving core in-process: the route table, the layers behind the ASGI adapter, the error mapper."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tabship.config import ServeSettings
from tabship.errors import (
    BadHostError,
    BodyTooLargeError,
    BusyError,
    EngineError,
    ExpectationFailedError,
    HeadersTooLargeError,
    InternalError,
    MalformedBodyError,
    MediaTypeError,
    MethodNotAllowedError,
    MethodNotImplementedError,
    NotFoundError,
    ReadTimeoutError,
    RequestTimeoutError,
    VersionNotSupportedError,
)
from tabship.predictor import Predictor
from tabship.serve.app import App, create_app
from tabship.serve.asgi import AsgiAdapter
from tabship.serve.http import READ_LATE, Answer, Request, dump_json, error_payload, json_answer
from tabship.serve.layers import PIPE_BUF, AccessLog, Layers, ServerState
from tabship.serve.prometheus import Metrics
from tabship.serve.routes import Route, RouteTable
from tabship.workflow import TrainedModel

PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}
Message = dict[str, Any]


@pytest.fixture(scope="module")
def app(tiny_model: TrainedModel) -> App:
    return create_app(Predictor.load(tiny_model.artifact.directory))


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tabship")


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def scope(
    method: str = "POST", path: str = "/x", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "headers": headers or [], "state": {}}


def receiving(*messages: Message, stall: bool = False) -> Callable[[], Awaitable[Message]]:
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


class Outbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def json(self) -> Any:
        return json.loads(self.messages[1]["body"])


def test_every_route_is_in_openapi_and_has_its_own_metric_label(app: App) -> None:
    async def scenario() -> tuple[dict[str, Any], str]:
        async with client(app) as http:
            spec = (await http.get("/openapi.json")).json()
            for route in app.table.routes:
                await http.request(route.method, route.path)
            return spec, (await http.get("/metrics")).text

    spec, metrics = run(scenario())
    documented = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in app.table.routes}
    labels = {app.table.label(r.path) for r in app.table.routes}
    assert len(labels) == len(app.table.paths) and "other" not in labels
    for route in app.table.routes:
        assert f'route="{route.path}"' in metrics, route.path
    assert app.table.label("/admin") == "other"


def test_the_openapi_document_is_valid_openapi_3_0_for_either_task(
    app: App, tiny_classifier: TrainedModel
) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV30SpecValidator

    classifier = create_app(Predictor.load(tiny_classifier.artifact.directory))
    for served in (app, classifier):

        async def fetch(served: App = served) -> dict[str, Any]:
            async with client(served) as http:
                return (await http.get("/openapi.json")).json()  # type: ignore[no-any-return]

        spec = run(fetch())
        assert spec["openapi"] == "3.0.3"
        validate(spec, cls=OpenAPIV30SpecValidator)  # raises, naming the path, if invalid
    answer = spec["paths"]["/predict_api"]["post"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"type": "string", "enum": ["no", "yes"]}


def test_the_form_and_the_json_api_give_the_same_value(app: App) -> None:
    async def scenario() -> tuple[float, str]:
        async with client(app) as http:
            value = (await http.post("/predict_api", json=PATIENT)).json()
            page = await http.post("/predict", data={k: str(v) for k, v in PATIENT.items()})
            return value, page.text

    value, page = run(scenario())
    assert f'<output id="prediction">{value:,.2f}</output>' in page


def test_a_category_of_many_levels_is_a_text_input_that_takes_a_new_value(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    from .conftest import FAST_MODELS, make_tiny_table

    folder = tmp_path_factory.mktemp("cities")
    table = make_tiny_table(rows=300).assign(city=[f"c<{i % 60}>" for i in range(300)])
    table.to_csv(folder / "rows.csv", index=False)
    trained = train_model(
        str(folder / "rows.csv"),
        TrainOptions(target="charges", folds=3, models=FAST_MODELS),
        folder / "model",
    )
    served = create_app(Predictor.load(trained.artifact.directory))
    record = {**{k: str(v) for k, v in PATIENT.items()}, "city": "c<new>"}

    async def scenario() -> tuple[str, httpx.Response]:
        async with client(served) as http:
            return (await http.get("/")).text, await http.post("/predict", data=record)

    page, answer = run(scenario())
    assert '<datalist id="l-6"><option value="c&lt;0&gt;">' in page
    assert "60 values seen in training: type to find one" in page
    assert "<select" in page  # the few-level fields keep theirs
    assert answer.status_code == 200 and "c&lt;new&gt;" in answer.text
    assert "is not one of the 60 values seen in training" in answer.text


def test_a_route_is_one_entry_and_duplicates_are_refused() -> None:
    async def hello(request: Request) -> Answer:
        return json_answer("hi")

    table = RouteTable([Route("GET", "/hello", hello, "Say hello")])
    assert table.find("GET", "/hello").handler is hello
    with pytest.raises(ValueError, match="declared twice"):
        RouteTable([Route("GET", "/a", hello, "a"), Route("GET", "/a", hello, "b")])


def adapter(*routes: Route, **settings: Any) -> tuple[AsgiAdapter, ServerState, Metrics]:
    """The layers over `routes` behind the ASGI adapter, as the server builds them."""
    state, metrics = ServerState(), Metrics()
    metrics.watch(state)
    layers = Layers(RouteTable(routes), metrics, state, ServeSettings(**settings))
    return AsgiAdapter(layers), state, metrics


async def fail(request: Request) -> Answer:
    raise EngineError("the onnx engine answered 3 predictions for 1 rows")


async def echo(request: Request) -> Answer:
    request.rows = 2
    return json_answer({"body": request.body.decode()})


async def probe(request: Request) -> Answer:
    return json_answer("ok")


def dispatcher() -> AsgiAdapter:
    return adapter(Route("POST", "/echo", echo, "echo"), Route("GET", "/fail", fail, "fail"))[0]


@pytest.mark.parametrize(
    ("method", "path", "status", "needle"),
    [
        ("GET", "/nowhere", 404, "'/nowhere' is not a route of this server; see /docs"),
        ("DELETE", "/echo", 405, "'DELETE' is not allowed on /echo; use POST"),
        ("GET", "/fail", 500, "internal error; the server log has the details"),
    ],
)
def test_dispatch_maps_errors_once(
    method: str, path: str, status: int, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = Outbox()
    run(dispatcher()(scope(method, path), receiving({"type": "http.request", "body": b""}), out))
    assert out.status == status and out.json["message"] == needle == out.json["detail"]
    if status == 405:
        assert out.headers[b"allow"] == b"POST"
    if status == 500:  # the cause goes to the log, not to the client
        assert "answered 3 predictions for 1 rows" in capsys.readouterr().err


def test_dispatch_hands_the_body_and_records_rows(capsys: pytest.CaptureFixture[str]) -> None:
    out = Outbox()
    run(
        dispatcher()(
            scope("POST", "/echo"), receiving({"type": "http.request", "body": b"abc"}), out
        )
    )
    assert out.json == {"body": "abc"}
    assert out.headers[b"x-content-type-options"] == b"nosniff"
    assert json.loads(capsys.readouterr().out)["rows"] == 2


def limits(**settings: Any) -> tuple[AsgiAdapter, ServerState]:
    routes = (
        Route("POST", "/x", echo, "echo"),
        Route("GET", "/healthz", probe, "probe", probe=True),
    )
    layer, state, _ = adapter(*routes, **settings)
    return layer, state


def test_limits_read_the_body_before_taking_a_slot() -> None:
    layer, state = limits(max_concurrency=1)
    state.in_flight = 1  # the one slot is taken
    stalled, where = Outbox(), scope()

    async def late_body() -> Message:
        # What the protocol does at the read deadline: flag the request and wake the app.
        where["state"][READ_LATE] = True
        return {"type": "http.request", "body": b"", "more_body": True}

    run(layer(where, late_body, stalled))
    assert stalled.status == 408  # a stalled body times out; it never waited for a slot
    busy = Outbox()
    run(layer(scope(), receiving({"type": "http.request", "body": b"{}"}), busy))
    assert busy.status == 503 and busy.headers[b"retry-after"] == b"1"
    answered = Outbox()
    run(layer(scope("GET", "/healthz"), receiving({"type": "http.request", "body": b""}), answered))
    assert answered.status == 200  # probes pass a full server


def test_limits_refuse_big_bodies_after_reading_them_away() -> None:
    layer, _ = limits(max_body_bytes=1024)
    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True}] * 10
    chunks.append({"type": "http.request", "body": b"", "more_body": False})
    receive = receiving(*chunks)
    out = Outbox()
    run(layer(scope(), receive, out))
    assert out.status == 413 and out.headers[b"connection"] == b"close"
    assert run(receive()) == {"type": "http.disconnect"}  # everything sent was read
    declared = Outbox()
    headers = [(b"content-length", b"999999")]
    run(layer(scope(headers=headers), receiving({"type": "http.request", "body": b""}), declared))
    assert declared.status == 413 and "999999 bytes" in declared.json["message"]


def test_limits_check_the_host() -> None:
    layer, _ = limits(allowed_hosts=("api.example",))
    bad, good = Outbox(), Outbox()
    run(layer(scope(headers=[(b"host", b"evil.example")]), receiving(), bad))
    run(
        layer(
            scope(headers=[(b"host", b"api.example:8080")]),
            receiving({"type": "http.request", "body": b"1"}),
            good,
        )
    )
    assert bad.status == 400 and good.status == 200


def test_accounting_counts_and_logs_even_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    async def crash(request: Request) -> Answer:
        raise RuntimeError("a bug")

    layer, state, metrics = adapter(Route("POST", "/v1/predict", crash, "crash"))
    out = Outbox()
    body = {"type": "http.request", "body": b"{}"}
    run(layer(scope("POST", "/v1/predict"), receiving(body), out))
    run(layer(scope("PROPFIND", "/x"), receiving(), Outbox()))  # the client left: no body
    assert out.status == 500 and "a bug" not in out.json["message"]
    assert out.headers[b"connection"] == b"close"
    captured = capsys.readouterr()
    assert "RuntimeError: a bug" in captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [(line["status"], line["method"]) for line in lines] == [
        (500, "POST"),
        (499, "PROPFIND"),
    ]
    text = metrics.render().decode()
    assert 'method="POST",route="/v1/predict",status="500"' in text
    assert 'method="other",route="other",status="499"' in text
    assert "tabship_requests_open 0.0" in text and state.open == 0


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadHostError("h"), 400),
        (NotFoundError("n"), 404),
        (MethodNotAllowedError("m", ("GET",)), 405),
        (ReadTimeoutError("r"), 408),
        (BodyTooLargeError("b"), 413),
        (MediaTypeError("t"), 415),
        (ExpectationFailedError("e"), 417),
        (MalformedBodyError("j"), 422),
        (HeadersTooLargeError("h"), 431),
        (MethodNotImplementedError("m"), 501),
        (VersionNotSupportedError("v"), 505),
        (InternalError("secret"), 500),
        (EngineError("secret"), 500),
        (BusyError("busy"), 503),
        (RequestTimeoutError("slow"), 504),
    ],
)
def test_one_body_shape_for_every_status(error: Exception, status: int) -> None:
    got, payload = error_payload(error)  # type: ignore[arg-type]
    assert got == status and set(payload) == {"detail", "message"}
    assert "secret" not in json.dumps(payload)


def test_answers_never_carry_nan_or_infinity() -> None:
    with pytest.raises(ValueError):
        dump_json([float("nan")])
    with pytest.raises(ValueError):
        dump_json({"p": float("inf")})


def test_pages_and_answers_name_the_engine_that_runs(tiny_model: TrainedModel) -> None:
    """Round one showed the recorded engine even when --engine sklearn served."""
    app = create_app(Predictor.load(tiny_model.artifact.directory, engine="sklearn"))

    async def scenario() -> tuple[str, dict[str, Any]]:
        async with client(app) as http:
            page = (await http.get("/")).text
            model = (await http.get("/v1/model")).json()
            return page, model

    page, model = run(scenario())
    assert "served by sklearn" in page and model["engine"] == "sklearn"
    assert tiny_model.artifact.card.engine == "onnx"


def test_access_lines_leave_in_whole_line_writes_a_pipe_keeps_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[str] = []

    class Recorder:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    log = AccessLog()
    lines = [f'{{"n": {index}, "pad": "{"x" * (index % 150)}"}}\n' for index in range(200)]

    async def turn() -> None:
        for line in lines:
            log.write(line)
        assert writes == []  # held until the loop turn ends
        await asyncio.sleep(0)

    monkeypatch.setattr("sys.stdout", Recorder())
    run(turn())
    assert "".join(writes) == "".join(lines) and len(writes) > 1
    assert all(len(text) <= PIPE_BUF and text.endswith("\n") for text in writes)


def test_the_monitoring_routes_without_a_log_say_how_to_turn_them_on(app: App) -> None:
    async def scenario() -> list[httpx.Response]:
        async with client(app) as http:
            return [await http.get("/monitor"), await http.post("/v1/feedback", json={})]

    for answer in run(scenario()):
        assert answer.status_code == 404
        assert (
            "is served with a prediction log only; start the server with --log-db"
            in (answer.json()["detail"])
        )


def test_a_key_or_field_given_twice_is_refused_not_read_as_the_last(app: App) -> None:
    async def scenario() -> list[httpx.Response]:
        async with client(app) as http:
            json_type = {"content-type": "application/json"}
            body = json.dumps(PATIENT)[:-1]
            return [
                await http.post("/predict_api", content=body + ', "age": 99}', headers=json_type),
                await http.post(
                    "/v1/predict",
                    content=b'{"instances": [], "instances": [' + body.encode() + b"}]}",
                    headers=json_type,
                ),
                # Colons in text are no second key.
                await http.post("/predict_api", json={**PATIENT, "region": "a:b"}),
                await http.post(
                    "/predict",
                    content="&".join(f"{k}={v}" for k, v in PATIENT.items()) + "&age=99",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                ),
                await http.post(
                    "/predict",
                    content="age=40",
                    headers={"content-type": "application/x-www-form-urlencoded; charset=utf-16"},
                ),
                await http.post(
                    "/predict",
                    content=b"age=\xff",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                ),
            ]

    repeated, batch, colon, form, charset, bytes_ = run(scenario())
    said = "body: the key 'age' is given twice in one object; give each once"
    assert repeated.status_code == 422 and repeated.json()["message"] == said
    assert batch.status_code == 422 and "'instances' is given twice" in batch.text
    assert colon.status_code == 200
    # The form's page again, the problem beside its field (a page answers a person).
    assert form.status_code == 422 and "is given twice in the form; give it once" in form.text
    assert form.headers["content-type"].startswith("text/html")
    assert charset.status_code == 415 and "submit the form as UTF-8" in charset.text
    assert bytes_.status_code == 422 and "not UTF-8 text at byte 4" in bytes_.text
    assert "codec" not in bytes_.text  # Python's words are not the user's


def test_a_lone_bad_record_in_a_batch_is_located_in_row_0(app: App) -> None:
    """/v1/predict names a record by its index in `instances`, one record or two (a lone
    record was located at ['body', 'bmi'], row None, as if it were /predict_api's)."""

    async def scenario() -> list[httpx.Response]:
        async with client(app) as http:
            return [
                await http.post("/v1/predict", json={"instances": [{**PATIENT, "bmi": "x"}]}),
                await http.post(
                    "/v1/predict", json={"instances": [PATIENT, {**PATIENT, "bmi": "x"}]}
                ),
                await http.post("/v1/predict", json={"instances": [[]]}),
                await http.post("/v1/predict", json={"instances": []}),
            ]

    one, two, not_object, empty = run(scenario())
    assert one.status_code == two.status_code == 422
    first = one.json()["detail"][0]
    assert (first["loc"], first["row"]) == (["body", "instances", 0, "bmi"], 0)
    assert one.json()["message"].startswith("row 0: bmi: ")
    second = two.json()["detail"][0]
    assert (second["loc"], second["row"]) == (["body", "instances", 1, "bmi"], 1)
    record = not_object.json()["detail"][0]
    assert (record["loc"], record["row"]) == (["body", "instances", 0, "(record)"], 0)
    assert empty.json()["detail"][0]["loc"] == ["body", "instances"]  # the batch, no row


@pytest.mark.parametrize(
    ("allowed", "host", "status"),
    [
        (("localhost",), b"localhost:abc", 400),
        (("localhost",), b"localhost:99999999", 400),
        ((".example.com",), b"a.example.com:99999999", 400),
        (("localhost",), b"[::1]:x", 400),
        (("*",), b"localhost:abc", 400),  # any Host, but not an invalid one (RFC 9112 3.2)
        (("localhost",), b"localhost.", 200),  # a name's trailing dot is the same name
        (("localhost",), b"LOCALHOST.:8080", 200),
        ((".example.com",), b"a.example.com.", 200),
        (("localhost",), b"localhost:65535", 200),
        (("localhost",), b"localhost:", 200),  # RFC 3986: the port may be empty
    ],
)
def test_a_host_with_an_invalid_port_is_refused_and_a_trailing_dot_is_no_other_name(
    allowed: tuple[str, ...], host: bytes, status: int
) -> None:
    layer, _ = limits(allowed_hosts=allowed)
    out = Outbox()
    run(layer(scope(headers=[(b"host", host)]), receiving({"type": "http.request"}), out))
    assert out.status == status, out.messages
    if status == 400:
        assert "the port is not a number from 0 to 65535" in out.json["message"]


@pytest.mark.parametrize(
    ("expect", "status"),
    [(b"200-ok", 417), (b"100-continue, x", 417), (b"100-Continue", 200)],
)
def test_an_expectation_other_than_100_continue_is_refused_417(expect: bytes, status: int) -> None:
    out = Outbox()
    headers = [(b"expect", expect)]
    body = {"type": "http.request", "body": b"abc"}
    run(dispatcher()(scope("POST", "/echo", headers), receiving(body), out))
    assert out.status == status
    if status == 417:
        assert "only 100-continue is" in out.json["message"]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/v2/models/a%2fb/infer", "/v2/models/a%2Fb/infer"),  # one segment, not two
        ("/v2/models/%6Dodel", "/v2/models/model"),
        ("/a%252Fb", "/a%252Fb"),  # a `%` stays encoded: `a%2Fb` is text, not a slash
        ("/caf%C3%A9", "/café"),
        ("/plain", "/plain"),
    ],
)
def test_an_encoded_slash_stays_in_its_segment(raw: str, path: str) -> None:
    from tabship.serve.http import request_path

    assert request_path(raw) == path
    seen: list[str] = []

    async def where(request: Request) -> Answer:
        seen.append(request.path)
        return json_answer("ok")

    layer, _, _ = adapter(Route("GET", path, where, "where"))
    out = Outbox()
    asgi = {**scope("GET", urllib.parse.unquote(raw)), "raw_path": raw.encode() + b"?q=1"}
    run(layer(asgi, receiving({"type": "http.request"}), out))
    assert out.status == 200 and seen == [path]
