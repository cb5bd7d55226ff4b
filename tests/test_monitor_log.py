"""The prediction log in-process on SQLite: every route logs, ids, feedback, the bounded queue."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tabship.cli import app as cli
from tabship.config import ServeSettings
from tabship.monitor import backlog as backlog_module
from tabship.monitor import batches as batches_module
from tabship.monitor.ids import Logged, prediction_ids
from tabship.monitor.logurl import LogDatabaseError
from tabship.monitor.service import LogCollector
from tabship.monitor.store import LogStore
from tabship.monitor.tables import entry_text, request_entries
from tabship.monitor.writer import LogWriter
from tabship.predictor import Predictor
from tabship.serve.app import App, create_app
from tabship.workflow import TrainedModel

from .servers import free_port

PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


def started(model: Path, url: str | None) -> App:
    app = create_app(Predictor.load(model), ServeSettings(log_db=url))
    if app.context.monitoring is not None:
        app.context.monitoring.writer.start()
    app.state.ready = True
    return app


def client(app: App) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tabship")


def rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in db.execute("SELECT * FROM tabship_predictions ORDER BY ts, batch, position")
        ]


@pytest.fixture
def logged(tiny_model: TrainedModel, tmp_path: Path) -> Iterator[tuple[App, Path]]:
    path = tmp_path / "log.db"
    app = started(tiny_model.artifact.directory, f"sqlite:///{path}")
    yield app, path
    assert app.context.monitoring is not None
    app.context.monitoring.writer.close()


def test_every_prediction_route_logs_its_rows(logged: tuple[App, Path]) -> None:
    app, path = logged

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with client(app) as c:
            one = await c.post("/predict_api", json=PATIENT, headers={"x-request-id": "req-1 \t"})
            many = await c.post(
                "/v1/predict", json={"instances": [PATIENT, {**PATIENT, "age": 99}]}
            )
            form = await c.post("/predict", data={k: str(v) for k, v in PATIENT.items()})
            bad = await c.post("/predict_api", json={**PATIENT, "age": "old"})
            assert bad.status_code == 422  # refused requests predict nothing and log nothing
            return one, many, form

    one, many, form = asyncio.run(go())
    assert app.context.monitoring is not None
    assert app.context.monitoring.writer.flush()
    logged_rows = rows(path)
    assert len(logged_rows) == 4
    first = logged_rows[0]
    assert first["id"] == one.headers["x-prediction-id"]
    assert first["request_id"] == "req-1"
    assert first["route"] == "/predict_api"
    assert first["model_sha256"] == app.context.predictor.card.sha256
    assert json.loads(first["input"]) == PATIENT
    assert json.loads(first["prediction"]) == pytest.approx(one.json())
    assert first["latency_ms"] > 0
    batch = many.json()
    assert [r["id"] for r in logged_rows[1:3]] == batch["ids"]
    assert {r["request_id"] for r in logged_rows[1:3]} == {batch["ids"][0]}
    assert json.loads(logged_rows[2]["warnings"]) == [
        w.removeprefix("row 1: ") for w in batch["warnings"] if w.startswith("row 1:")
    ]
    assert "age" in logged_rows[2]["warnings"]  # 99 is outside the training range
    assert json.loads(logged_rows[1]["warnings"]) == []
    assert logged_rows[3]["route"] == "/predict"
    assert f'id="prediction-id">{logged_rows[3]["id"]}<' in form.text
    assert "send the true value to /v1/feedback" in form.text and 'href="/monitor"' in form.text


def test_v2_answers_carry_ids_that_feedback_takes(logged: tuple[App, Path]) -> None:
    app, path = logged
    name = app.context.v2.name
    inputs = [
        {"name": key, "shape": [2], "datatype": datatype, "data": [value, value]}
        for (key, value), datatype in zip(
            PATIENT.items(), ["INT64", "FP64", "INT64", "BYTES", "BYTES"], strict=True
        )
    ]

    async def go() -> tuple[list[str], list[int]]:
        async with client(app) as c:
            two = await c.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
            one = await c.post(
                f"/v2/models/{name}/infer",
                json={"inputs": [{**t, "shape": [1], "data": t["data"][:1]} for t in inputs]},
            )
            ids = [
                *two.json()["parameters"]["prediction_ids"].split(","),
                one.json()["parameters"]["prediction_ids"],
            ]
            statuses = [
                (await c.post("/v1/feedback", json={"id": pid, "actual": 1000.0})).status_code
                for pid in ids
            ]
            return ids, statuses

    ids, statuses = asyncio.run(go())
    assert len(set(ids)) == 3 and statuses == [200, 200, 200]
    assert app.context.monitoring is not None and app.context.monitoring.writer.flush()
    assert [r["id"] for r in rows(path)] == ids


def test_an_integer_past_64_bits_is_logged_not_dropped(logged: tuple[App, Path]) -> None:
    # The JSON reader keeps it exact and the prediction is answered: so is its log row,
    # else a client could keep its requests out of the log.
    app, path = logged
    huge = 10**30 + 7

    async def go() -> list[httpx.Response]:
        async with client(app) as c:
            headers = {"content-type": "application/json"}
            return [
                await c.post("/predict_api", content=json.dumps(body).encode(), headers=headers)
                for body in (PATIENT, {**PATIENT, "age": huge})
            ]

    plain, answer = asyncio.run(go())
    assert plain.status_code == answer.status_code == 200
    assert app.context.monitoring is not None and app.context.monitoring.writer.flush()
    assert app.context.monitoring.writer.stats.dropped == 0
    row = next(r for r in rows(path) if r["id"] == answer.headers["x-prediction-id"])
    assert json.loads(row["input"])["age"] == huge
    from tabship.monitor.commands import export_log

    # Exported, the column stays a number column, as the model read it (one such request
    # made it text, for every row).
    model = app.context.predictor.artifact.directory
    for name in ("rows.parquet", "rows.csv"):
        assert export_log(model, f"sqlite:///{path}", path.parent / name).rows == 2
    for table in (
        pd.read_parquet(path.parent / "rows.parquet"),
        pd.read_csv(path.parent / "rows.csv"),
    ):
        assert table["age"].dtype == "float64"
        assert sorted(table["age"]) == [PATIENT["age"], float(huge)]


def test_feedback_gives_the_scores_scikit_learn_gives(logged: tuple[App, Path]) -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    app, _ = logged
    records = [{**PATIENT, "age": 20 + i, "bmi": 22 + i / 3} for i in range(30)]

    async def go() -> tuple[list[str], list[float], list[httpx.Response]]:
        async with client(app) as c:
            answer = (await c.post("/v1/predict", json={"instances": records})).json()
            actual = [
                p * (1.1 if i % 2 else 0.8) + 100 * i for i, p in enumerate(answer["predictions"])
            ]
            stored = await c.post(
                "/v1/feedback",
                json=[
                    {"id": pid, "actual": a} for pid, a in zip(answer["ids"], actual, strict=True)
                ],
            )
            refusals = [
                await c.post("/v1/feedback", json={"id": "no-such-id", "actual": 1.0}),
                await c.post("/v1/feedback", json={"id": answer["ids"][0], "actual": "high"}),
                await c.post("/v1/feedback", json={"id": answer["ids"][0]}),
                await c.post("/v1/feedback", json=[]),
                await c.post(
                    "/v1/feedback", json={"id": answer["ids"][0], "actual": 1, "Actual": 2}
                ),
                await c.post(
                    "/v1/feedback",
                    json=[{"id": answer["ids"][0], "actual": 5.0}, {"id": "gone-1", "actual": 1.0}],
                ),
                # Over the item limit: 413, as an oversized /v1/predict batch.
                await c.post("/v1/feedback", json=[{"id": answer["ids"][0], "actual": 1}] * 1001),
            ]
            assert stored.json() == {"stored": 30, "replaced": 0, "warnings": []}
            # A second answer for an id replaces the first, said; one outside the range of
            # the model's training predictions is stored with a warning, one far outside it
            # (a typo, cents for dollars) refused: it would swamp every live score.
            pid = answer["ids"][0]
            again = await c.post("/v1/feedback", json={"id": pid, "actual": actual[0]})
            odd = await c.post("/v1/feedback", json=[{"id": pid, "actual": -5}])
            far = await c.post("/v1/feedback", json=[{"id": pid, "actual": -3e38}])
            twice = await c.post(
                "/v1/feedback", json=[{"id": pid, "actual": 1.0}, {"id": pid, "actual": 2.0}]
            )
            restored = await c.post("/v1/feedback", json={"id": pid, "actual": actual[0]})
            # The same answer again changes nothing: no replacement said.
            assert again.json() == {"stored": 1, "replaced": 0, "warnings": []}
            assert odd.status_code == 200 and odd.json()["warnings"][0].startswith(
                "[0].actual: -5 is well outside the range the model predicted in training ("
            )
            assert odd.json()["replaced"] == 1 and odd.json()["warnings"][1] == (
                "1 of the ids had another answer already; the new one replaces it"
            )
            assert far.status_code == 422 and far.json()["message"].startswith(
                "[0].actual: -3e+38 is far outside the range the model predicted in training"
            )
            assert twice.status_code == 422 and "answered twice in the list" in twice.text
            assert restored.status_code == 200
            return answer["predictions"], actual, refusals

    predicted, actual, refusals = asyncio.run(go())
    assert [r.status_code for r in refusals] == [422] * 6 + [413]
    assert refusals[6].json()["message"] == "body: 1001 items is over the limit of 1000"
    assert "no-such-id" in refusals[0].json()["message"]
    assert "actual: must be a finite number" in refusals[1].json()["message"]
    # Each message names the field, and the item in a list.
    assert refusals[2].json()["message"].startswith("actual: missing")
    assert "'Actual' is not a field" in refusals[4].json()["message"]
    assert refusals[5].json()["message"].startswith("[1].id 'gone-1': not a logged prediction")
    from tabship.monitor.summary import summarize

    monitoring = app.context.monitoring
    assert monitoring is not None
    summary = summarize(monitoring.store, monitoring.card, monitoring.profile)
    assert summary.labelled == 30
    assert summary.scores["mae"] == pytest.approx(mean_absolute_error(actual, predicted))
    assert summary.scores["rmse"] == pytest.approx(mean_squared_error(actual, predicted) ** 0.5)
    assert summary.scores["r2"] == pytest.approx(r2_score(actual, predicted))


def test_classification_feedback_scores(cancer_model: TrainedModel, tmp_path: Path) -> None:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    table = pd.read_csv(cancer_model.artifact.directory.parent / "cancer.csv").head(60)
    records = table.drop(columns="diagnosis").to_dict("records")
    app = started(cancer_model.artifact.directory, f"sqlite:///{tmp_path / 'log.db'}")

    async def go() -> dict[str, Any]:
        async with client(app) as c:
            answer = (await c.post("/v1/predict", json={"instances": records})).json()
            feedback = [
                {"id": pid, "actual": label}
                for pid, label in zip(answer["ids"], table["diagnosis"], strict=True)
            ]
            assert (await c.post("/v1/feedback", json=feedback)).status_code == 200
            wrong = await c.post("/v1/feedback", json={"id": answer["ids"][0], "actual": "maybe"})
            assert wrong.status_code == 422
            classes = ", ".join(map(repr, cancer_model.artifact.card.classes))
            assert f"must be one of the classes {classes}, got 'maybe'" in wrong.text
            return dict(answer)

    answer = asyncio.run(go())
    from tabship.monitor.summary import summarize

    monitoring = app.context.monitoring
    assert monitoring is not None
    summary = summarize(monitoring.store, monitoring.card, monitoring.profile)
    monitoring.writer.close()
    truth, predicted = list(table["diagnosis"]), answer["predictions"]
    by_id = {r["id"]: r for r in rows(tmp_path / "log.db")}
    logged = [by_id[pid] for pid in answer["ids"]]
    # JSON keeps a float exactly, so the logged probabilities are the very ones answered.
    assert [json.loads(r["probabilities"]) for r in logged] == answer["probabilities"]
    assert [json.loads(r["prediction"]) for r in logged] == predicted
    profile = monitoring.profile
    assert profile is not None and profile.prediction.kind == "categorical"
    assert set(profile.prediction.levels) == set(cancer_model.artifact.card.classes)
    assert summary.scores["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    classes = list(cancer_model.artifact.card.classes)
    assert summary.scores["f1"] == pytest.approx(f1_score(truth, predicted, pos_label=classes[1]))
    # The ranking scores training sorted by, from the logged probabilities.
    shares = np.array([[p[c] for c in classes] for p in answer["probabilities"]])
    shares /= shares.sum(axis=1, keepdims=True)  # float32 shares miss one by 1e-7
    positive = [label == classes[1] for label in truth]
    assert summary.scores["auc"] == pytest.approx(roc_auc_score(positive, shares[:, 1]))
    assert summary.scores["log_loss"] == pytest.approx(log_loss(truth, shares, labels=classes))


def test_live_auc_and_log_loss_are_scikit_learns_with_ties_and_many_classes() -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    from tabship.monitor.summary import probability_scores

    rng = np.random.default_rng(5)
    classes = ["a", "b", "c"]
    raw = np.round(rng.dirichlet([1, 1, 1], 300), 1) + 1e-3  # rounded: many tied scores
    shares = raw / raw.sum(axis=1, keepdims=True)
    truth = [classes[int(np.argmax(row + rng.normal(0, 0.2, 3)))] for row in shares]
    found = probability_scores(truth, shares, classes)
    expected = roc_auc_score(truth, shares, multi_class="ovr", average="weighted", labels=classes)
    assert found["auc"] == pytest.approx(expected)
    assert found["log_loss"] == pytest.approx(log_loss(truth, shares, labels=classes))
    two = shares[:, :2] / shares[:, :2].sum(axis=1, keepdims=True)
    binary = ["b" if row[1] + rng.normal(0, 0.3) > 0.5 else "a" for row in two]
    found = probability_scores(binary, two, ["a", "b"])
    assert found["auc"] == pytest.approx(roc_auc_score([b == "b" for b in binary], two[:, 1]))
    assert np.isnan(probability_scores(["a"] * 5, two[:5], ["a", "b"])["auc"])  # one class


def test_an_answer_is_read_as_the_class_training_named() -> None:
    from tabship.classes import class_text

    assert [class_text(v, "integer") for v in (2, 2.0, "2", 2.5, True, None)] == [
        "2", "2", "2", None, "True", None,
    ]  # fmt: skip
    assert [class_text(v, "number") for v in (1, 1.0, 2.5)] == ["1.0", "1.0", "2.5"]
    assert [class_text(v, "boolean") for v in (True, "true", "TRUE", "False")] == [
        "True", "True", "True", "False",
    ]  # fmt: skip
    assert [class_text(v, "string") for v in ("NA", 7, [1])] == ["NA", "7", None]


def test_without_a_log_ids_are_still_given_and_feedback_is_not_a_route(
    tiny_model: TrainedModel,
) -> None:
    app = started(tiny_model.artifact.directory, None)

    async def go() -> tuple[httpx.Response, ...]:
        async with client(app) as c:
            return (
                await c.post("/predict_api", json=PATIENT),
                await c.post("/v1/predict", json={"instances": [PATIENT]}),
                await c.post("/v1/feedback", json={"id": "x", "actual": 1}),
                await c.post("/predict", data={k: str(v) for k, v in PATIENT.items()}),
            )

    one, many, feedback, form = asyncio.run(go())
    assert one.headers["x-prediction-id"]
    assert len(many.json()["ids"]) == 1
    assert feedback.status_code == 404
    # The form gives the id but offers neither feedback nor /monitor: both would be 404.
    assert 'id="prediction-id">' in form.text
    assert "/v1/feedback" not in form.text and 'href="/monitor"' not in form.text


def test_monitor_pages_do_not_hold_the_threads_of_big_predictions(
    logged: tuple[App, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two slow /monitor summaries in flight: a big /v1/predict (parsed and predicted in a
    thread) is still answered, because the log's routes have threads of their own."""
    from tabship.monitor import service

    app, _ = logged
    release = threading.Event()
    threads: list[str] = []
    real = service.summarize

    def slow_summary(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        release.wait(60)
        return real(*args)

    monkeypatch.setattr(service, "summarize", slow_summary)
    big = {"instances": [PATIENT] * 400}
    assert len(json.dumps(big)) > 16 * 1024  # past the inline limit: predicted in a thread

    async def go() -> tuple[int, list[int]]:
        async with client(app) as c:
            pages = [asyncio.create_task(c.get("/monitor")) for _ in range(2)]
            while len(threads) < 2:
                await asyncio.sleep(0.01)
            try:
                predicted = await asyncio.wait_for(c.post("/v1/predict", json=big), 20)
            finally:
                release.set()
            return predicted.status_code, [(await page).status_code for page in pages]

    predicted, pages = asyncio.run(go())
    assert predicted == 200 and pages == [200, 200]
    assert all(name.startswith("tabship-monitor") for name in threads), threads


def test_a_database_that_fails_drops_and_counts_then_resumes(
    tiny_model: TrainedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "later"  # missing: SQLite cannot open the file until it exists
    store = LogStore(f"sqlite:///{folder / 'log.db'}")
    writer = LogWriter(store, "sha", max_queue_rows=50, batch_rows=10, flush_seconds=0.02)
    record = Logged(["x"], [PATIENT], [1.0], None, [])
    for index in range(80):
        writer.submit(
            Logged([f"id-{index}"], [PATIENT], [1.0], None, []), "/predict_api", "", 0.001
        )
    writer.start()  # after the burst, so the bound alone decides what is dropped
    deadline = time.monotonic() + 10
    while not writer.stats.failures and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.stats.dropped == 30
    # Said once (at most once a minute), not once a row: the metric counts every one.
    said = [line for line in capsys.readouterr().err.splitlines() if "queue is full" in line]
    assert said == [
        "prediction log: the queue is full (50 rows waiting for the database); dropping rows, "
        "1 so far (tabship_prediction_log_dropped_total)"
    ]
    assert writer.stats.failures >= 1
    assert writer.stats.written == 0
    folder.mkdir()
    assert writer.flush(timeout=10)
    assert writer.stats.written == 50
    writer.submit(record, "/predict_api", "", 0.001)
    writer.close()
    assert store.count() == 51


def test_a_newer_schema_is_refused(tmp_path: Path, tiny_model: TrainedModel) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    LogStore(url).open()
    with sqlite3.connect(tmp_path / "log.db") as db:
        db.execute("UPDATE tabship_log_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LogDatabaseError, match="schema version 99, written by a newer tabship"):
        LogStore(url).open()
    result = CliRunner().invoke(
        cli, ["serve", str(tiny_model.artifact.directory), "--log-db", url, "--port", "1"]
    )
    assert result.exit_code == 1
    assert "newer tabship" in result.output
    # Read-only, the commands that read a log refuse it the same.
    result = CliRunner().invoke(
        cli, ["monitor", str(tiny_model.artifact.directory), "--log-db", url]
    )
    assert result.exit_code == 1 and "newer tabship" in result.output


def test_a_bad_url_is_refused_without_its_password(tiny_model: TrainedModel) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", str(tiny_model.artifact.directory), "--log-db", "mysql://u:hunter2@h/db"],
    )
    assert result.exit_code == 1
    assert "sqlite:///PATH or postgresql://" in result.output
    assert "hunter2" not in result.output


def test_retention_deletes_old_rows(tmp_path: Path) -> None:
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    old = time.time() - 10 * 86400
    writer = LogWriter(store, "sha", retention_days=7, clock=lambda: old)
    writer.submit(Logged(["old"], [PATIENT], [1.0], None, []), "/predict_api", "", 0.001)
    writer._write_all(writer._queued)
    writer.clock = time.time
    writer.submit(Logged(["new"], [PATIENT], [1.0], None, []), "/predict_api", "", 0.001)
    writer._write_all(writer._queued)
    writer._housekeeping()
    assert writer.stats.deleted == 1
    assert [r.id for r in store.rows(None, 0)] == ["new"]


def test_export_and_monitor_commands(logged: tuple[App, Path], tiny_model: TrainedModel) -> None:
    app, path = logged
    weird = {**PATIENT, "region": "=cmd|' /C calc'!A0"}  # unseen, and a formula to a spreadsheet

    async def go() -> None:
        async with client(app) as c:
            for i in range(120):
                await c.post("/predict_api", json={**PATIENT, "age": 18 + i % 45})
            await c.post("/predict_api", json=weird)

    asyncio.run(go())
    assert app.context.monitoring is not None
    assert app.context.monitoring.writer.flush()
    model, url = str(tiny_model.artifact.directory), f"sqlite:///{path}"
    runner = CliRunner()
    out = path.parent / "rows.parquet"
    done = runner.invoke(
        cli, ["log", "export", model, "--log-db", url, "--since", "1d", "-o", str(out)]
    )
    assert done.exit_code == 0, done.output
    table = pd.read_parquet(out)
    assert len(table) == 121
    # A regression's values are floats, also a column of no feedback at all (was Arrow's null).
    assert table["prediction"].dtype == table["actual"].dtype == "float64"
    assert list(table.columns[:3]) == ["id", "time", "route"]
    assert set(PATIENT) <= set(table.columns)
    assert table["age"].dtype.kind in "if"
    csv = path.parent / "rows.csv"
    assert (
        runner.invoke(cli, ["log", "export", model, "--log-db", url, "-o", str(csv)]).exit_code == 0
    )
    assert "'=cmd" in csv.read_text()
    exact = path.parent / "exact.csv"  # for a program: the cells as logged
    args = ["log", "export", model, "--log-db", url, "--no-formula-guard", "-o", str(exact)]
    assert runner.invoke(cli, args).exit_code == 0
    assert "'=cmd" not in exact.read_text() and "=cmd" in exact.read_text()
    report = runner.invoke(cli, ["monitor", model, "--log-db", url, "--format", "json"])
    assert report.exit_code == 0, report.output
    document = json.loads(report.output)
    assert document["rows"] == 121
    assert {f["name"] for f in document["drift"]["features"]} == set(PATIENT)
    for item in document["drift"]["features"]:
        assert item["status"] in ("ok", "warn", "alert")
        assert "psi" in item["statistics"]
    table_text = runner.invoke(cli, ["monitor", model, "--log-db", url]).output
    assert "smoker" in table_text and "alert" in table_text  # every patient smokes here
    assert "(the model's prediction)" in table_text  # a feature may be called prediction
    html = path.parent / "monitor.html"
    assert (
        runner.invoke(
            cli, ["monitor", model, "--log-db", url, "--format", "html", "-o", str(html)]
        ).exit_code
        == 0
    )
    assert "<svg" in html.read_text()
    bad = runner.invoke(cli, ["monitor", model, "--log-db", url, "--since", "soon"])
    assert bad.exit_code == 1 and "--since 'soon'" in bad.output


def test_a_folder_without_a_profile_logs_and_says_there_is_no_reference(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    from tabship.artifact import PROFILE_FILE, write_artifact

    card = tiny_model.artifact.card
    kept = ("format", "format_version", "created", "versions", "files", "metadata_sha256")
    metadata = {k: v for k, v in card.document.items() if k not in kept}
    files = {n: tiny_model.artifact.read(n) for n in card.files if n != PROFILE_FILE}
    old = write_artifact(tmp_path / "old", metadata, files)
    app = started(old, f"sqlite:///{tmp_path / 'log.db'}")

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with client(app) as c:
            answer = await c.post("/predict_api", json=PATIENT)
            return answer, await c.get("/monitor"), await c.get("/metrics")

    answer, page, metrics = asyncio.run(go())
    assert app.context.monitoring is not None
    app.context.monitoring.writer.close()
    assert answer.status_code == 200
    assert page.status_code == 200
    assert "no reference profile" in page.text
    assert "tabship_prediction_log_written_total" in metrics.text
    assert "tabship_feature_drift{" not in metrics.text
    assert app.context.monitoring.store.count() == 1


def test_hostile_names_are_escaped_on_the_page_and_in_metrics(tmp_path: Path) -> None:
    from tabship.card import ModelCard
    from tabship.monitor.drift import compare
    from tabship.monitor.page import render_monitor
    from tabship.monitor.profile import build_profile
    from tabship.monitor.summary import Summary
    from tabship.schema import Feature, Schema

    name = '<img src=x onerror=alert(1)>"'
    schema = Schema((Feature(name, "categorical", "str", True, levels=("<b>a</b>", "b")),))
    profile = build_profile(schema, {name: ["<b>a</b>", "b"] * 100}, [0.0, 1.0] * 100, [])
    drift = compare(profile, [{name: "<script>x</script>"}] * 150, [0.5] * 150)
    summary = Summary("0" * 64, 0, 1, 150, False, drift, [], {}, 0, {}, "regression")
    card = type("Card", (), {"model": type("M", (), {"label": "<i>m</i>"})()})()
    html = render_monitor(summary, card, "<t>", "24h")  # type: ignore[arg-type]
    assert "<img src=x" not in html and "<script>x" not in html and "<b>a</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert ModelCard  # the real card type is what the server passes


def test_serving_with_a_log_imports_no_sklearn_pandas_or_pyarrow(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'log.db'}"
    script = (
        "import asyncio, json, sys, httpx\n"
        "from tabship.config import ServeSettings\n"
        "from tabship.predictor import Predictor\n"
        "from tabship.serve.app import create_app\n"
        f"app = create_app(Predictor.load({str(tiny_model.artifact.directory)!r}), "
        f"ServeSettings(log_db={url!r}))\n"
        "app.context.monitoring.writer.start()\n"
        "async def go():\n"
        "    t = httpx.ASGITransport(app=app)\n"
        "    async with httpx.AsyncClient(transport=t, base_url='http://x') as c:\n"
        f"        await c.post('/predict_api', json={PATIENT!r})\n"
        "        assert (await c.get('/monitor')).status_code == 200\n"
        "asyncio.run(go())\n"
        "app.context.monitoring.writer.close()\n"
        "heavy = ('pandas', 'sklearn', 'scipy', 'skops', 'pyarrow')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_database_urls() -> None:
    from tabship.monitor.logurl import engine_url, redact

    assert engine_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgresql://u:p@h:5433/db").port == 5433
    assert engine_url("sqlite:///x.db").database == "x.db"
    for bad in ("sqlite://", "sqlite:///:memory:", "mysql://u:p@h/d", "not a url"):
        with pytest.raises(LogDatabaseError):
            engine_url(bad)
    assert "hunter2" not in redact("postgresql://u:hunter2@h/db")
    # The driver ignored these with a warning and wrote to a file asked to be read-only.
    with pytest.raises(LogDatabaseError, match=r"takes no query arguments \('mode'\)"):
        engine_url("sqlite:////tmp/log.db?mode=ro")


def test_rows_the_database_refuses_are_dropped_and_the_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = LogStore(f"sqlite:///{path}")
    store.open()
    with sqlite3.connect(path) as db:  # a rule of the database's own, as a DBA may add
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON tabship_prediction_batches "
            "WHEN NEW.ids LIKE '%refused%' BEGIN SELECT RAISE(ABORT, 'not these'); END"
        )
    writer = LogWriter(store, "sha", flush_seconds=0.02)
    writer.start()
    writer.submit(Logged(["kept"], [PATIENT], [1.0], None, []), "/predict_api", "", 0.001)
    assert writer.flush(timeout=30)
    writer.submit(Logged(["refused"], [PATIENT], [2.0], None, []), "/predict_api", "", 0.001)
    writer.submit(Logged(["bad"], [{"x": object()}], [1.0], None, []), "/predict_api", "", 0.001)
    assert writer.flush(timeout=30)
    writer.submit(Logged(["next"], [PATIENT], [3.0], None, []), "/predict_api", "", 0.001)
    writer.close()
    assert writer.stats.dropped == 2
    assert sorted(r.id for r in store.rows(None, 0)) == ["kept", "next"]


def test_monitor_against_an_unreachable_database_says_so(tiny_model: TrainedModel) -> None:
    url = f"postgresql://tabship:hunter2@127.0.0.1:{free_port()}/log"
    result = CliRunner().invoke(
        cli, ["monitor", str(tiny_model.artifact.directory), "--log-db", url]
    )
    assert result.exit_code == 1
    assert "cannot be reached" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


class RecordingStore(LogStore):
    """A real SQLite store that notes the size of each transaction it is given."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transactions: list[int] = []

    def insert(self, rows: Any, *args: Any) -> None:
        super().insert(rows, *args)
        self.transactions.append(len(rows))


def test_a_filled_batch_wakes_the_writer_for_whole_batches_only(tmp_path: Path) -> None:
    # Rows that arrive while a batch is written wait for the next batch or the timer: written
    # at once, each would be a transaction of a handful of rows (17 µs of CPU a row).
    store = RecordingStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", batch_rows=50, flush_seconds=3600)
    for number in range(120):
        writer.submit(Logged([f"id-{number}"], [PATIENT], [1.0], None, []), "/p", "", 0.001)
    writer.start()
    deadline = time.monotonic() + 30
    while writer.stats.written < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # time enough for a wrong writer to also take the 20 left
    assert store.transactions == [50, 50]
    assert writer.queued_rows == 20
    assert writer.flush(timeout=30)  # flush() writes what is left, whole batch or not
    assert store.transactions == [50, 50, 20]
    writer.close()
    assert store.count() == 120


def test_the_timers_pass_writes_what_waited_not_what_arrives_meanwhile(tmp_path: Path) -> None:
    # At one connection the timer's pass chased the rows that came in while it wrote: 33
    # rows a transaction, 32 µs of writer CPU a row.
    class ArrivingStore(RecordingStore):
        def insert(self, rows: Any, *args: Any) -> None:
            super().insert(rows, *args)
            for pid in prediction_ids(3):  # requests answered while the batch was written
                writer.submit(Logged([pid], [PATIENT], [1.0], None, []), "/p", "", 0.001)

    store = ArrivingStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", batch_rows=50, flush_seconds=3600)
    for pid in prediction_ids(10):
        writer.submit(Logged([pid], [PATIENT], [1.0], None, []), "/p", "", 0.001)
    assert writer._write_all(writer._queued)
    assert store.transactions == [10] and writer.queued_rows == 3
    assert writer._write_all(writer._queued)
    assert store.transactions == [10, 3] and writer.queued_rows == 3
    assert store.count() == 13


def test_close_during_a_pass_of_whole_batches_still_writes_the_rest(tmp_path: Path) -> None:
    # SIGTERM while the writer writes a filled batch: the rows behind it are written too.
    inserting, release = threading.Event(), threading.Event()

    class HeldStore(RecordingStore):
        def insert(self, rows: Any, *args: Any) -> None:
            inserting.set()
            assert release.wait(30)
            super().insert(rows, *args)

    store = HeldStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", batch_rows=50, flush_seconds=3600)
    for number in range(53):
        writer.submit(Logged([f"id-{number}"], [PATIENT], [1.0], None, []), "/p", "", 0.001)
    writer.start()
    assert inserting.wait(30)  # the first batch is being written
    closing = threading.Thread(target=writer.close, kwargs={"timeout": 30})
    closing.start()
    deadline = time.monotonic() + 30
    while not writer._stop and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    closing.join(60)
    assert store.transactions == [50, 3]
    assert writer.stats.dropped == 0 and store.count() == 53


def test_flush_returns_once_a_batch_requests_rows_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch request's rows are made after it is popped from the queue, outside the books'
    # lock (and the catch-up thread hands the core over meanwhile): a flush() polling then
    # must still see those rows as unwritten.
    made = threading.Event()

    def slow_rows(*request: Any) -> Any:
        made.set()
        time.sleep(0.3)  # several of flush()'s 50 ms polls
        return request_entries(*request)

    monkeypatch.setattr(batches_module, "request_entries", slow_rows)
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", flush_seconds=3600)
    three = Logged(["a", "b", "c"], [PATIENT] * 3, [1.0] * 3, None, [])
    writer.submit(three, "/v1/predict", "", 0.001)
    writer.start()
    assert writer.flush(timeout=30)
    assert made.is_set() and store.count() == 3
    writer.close()


def test_batch_rows_are_made_by_the_writer_with_each_rows_warnings(tmp_path: Path) -> None:
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", flush_seconds=0.02)
    writer.start()
    batch = Logged(
        ["b-0", "b-1", "b-2"],
        [PATIENT, {**PATIENT, "region": "mars"}, PATIENT],
        [1.5, 2.5, float("nan")],
        None,
        ["row 1: region 'mars' was not seen in training", "model: shared note"],
    )
    writer.submit(batch, "/v1/predict", "client-7", 0.002)
    writer.submit(Logged(["one"], [PATIENT], [4.0], None, ["a note"]), "/predict_api", "", 0.001)
    writer.close()
    logged = {r.id: r for r in store.rows(None, 0)}
    assert logged["b-1"].warnings == [
        "region 'mars' was not seen in training",
        "model: shared note",
    ]
    assert logged["b-0"].warnings == ["model: shared note"]
    assert logged["b-1"].input["region"] == "mars"
    assert logged["b-2"].prediction is None  # NaN is written as JSON null, not a bare nan
    assert {r.request_id for r in logged.values()} == {"client-7", "one"}
    assert logged["one"].warnings == ["a note"] and logged["one"].prediction == 4.0


def test_a_batch_whose_commit_answer_was_lost_is_not_written_twice(tmp_path: Path) -> None:
    import sqlalchemy as sa

    class LostAnswer(LogStore):
        """Commits the first batch, then fails as a connection reset would."""

        lost = False

        def insert(self, rows: Any, *args: Any) -> None:
            super().insert(rows, *args)
            if not self.lost:
                self.lost = True
                raise sa.exc.OperationalError("COMMIT", None, OSError("connection reset"))

    store = LostAnswer(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", flush_seconds=0.02)
    for pid in prediction_ids(3):
        writer.submit(Logged([pid], [PATIENT], [1.0], None, []), "/predict_api", "", 0.001)
    writer.start()
    assert writer.flush(timeout=30)
    writer.close()
    assert store.lost and writer.stats.failures == 1
    assert (writer.stats.written, writer.stats.dropped, store.count()) == (3, 0, 3)


def test_feedback_takes_only_this_models_ids_and_odd_answers_never_break_the_scores(
    tiny_model: TrainedModel, cancer_model: TrainedModel, tmp_path: Path
) -> None:
    from tabship.monitor.summary import summarize

    url = f"sqlite:///{tmp_path / 'shared.db'}"  # two models' servers, one database
    charges, cancer = (
        started(tiny_model.artifact.directory, url),
        started(cancer_model.artifact.directory, url),
    )
    label = cancer_model.artifact.card.classes[0]

    async def go() -> list[httpx.Response]:
        async with client(charges) as a, client(cancer) as b:
            ids = (await a.post("/v1/predict", json={"instances": [PATIENT] * 3})).json()["ids"]
            return [
                await b.post("/v1/feedback", json={"id": ids[0], "actual": label}),
                await a.post(
                    "/v1/feedback",
                    content=f'{{"id": "{ids[0]}", "actual": 1e400}}'.encode(),
                    headers={"content-type": "application/json"},
                ),
                await a.post("/v1/feedback", json={"id": ids[0], "actual": int("9" * 400)}),
                await a.post("/v1/feedback", json={"id": ids[0], "actual": 1e300}),
                await a.post(
                    "/v1/feedback",
                    content=b'{"id": "\\ud800", "actual": 1.0}',  # a lone surrogate
                    headers={"content-type": "application/json"},
                ),
                await a.post(
                    "/v1/feedback",
                    json=[{"id": ids[1], "actual": 2.0}, {"id": ids[1], "actual": 2.0}],
                ),
                await a.post("/v1/feedback", json={"id": ids[2], "actual": 3.0}),
            ]

    other, infinite, huge, past_float32, surrogate, twice, plain = asyncio.run(go())
    assert other.status_code == 422 and "not a logged prediction of this model" in other.text
    assert infinite.status_code == huge.status_code == past_float32.status_code == 422
    assert "actual: must be a finite number" in huge.json()["message"]
    assert surrogate.status_code == 422 and "id: must be a prediction id" in surrogate.text
    assert twice.status_code == 200 and twice.json()["stored"] == 1  # one answer, said twice
    assert plain.status_code == 200
    monitoring = charges.context.monitoring
    assert monitoring is not None
    # An answer no server takes now, as an earlier one stored it for another model's id.
    first = list(monitoring.store.rows(monitoring.card.sha256, 0))[-1].id
    monitoring.store.add_feedback([(first, label)], monitoring.store.batches_of([first]))
    summary = summarize(monitoring.store, monitoring.card, monitoring.profile)
    assert summary.labelled == 3 and summary.scores["mae"] == pytest.approx(
        (
            abs(summary_prediction(monitoring, 1) - 2.0)
            + abs(summary_prediction(monitoring, 2) - 3.0)
        )
        / 2
    )
    for app in (charges, cancer):
        assert app.context.monitoring is not None
        app.context.monitoring.writer.close()


def summary_prediction(monitoring: Any, index: int) -> float:
    rows = sorted(monitoring.store.rows(monitoring.card.sha256, 0), key=lambda r: r.id)
    return float(rows[index].prediction)


def test_unknown_ids_wait_out_their_grace_without_holding_the_pool(
    logged: tuple[App, Path],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    app, _ = logged
    monitoring = app.context.monitoring
    assert monitoring is not None
    monitoring.pool = ThreadPoolExecutor(1)  # one thread: what big predictions would wait on
    lookups: list[int] = []
    original = monitoring.store.batches_of

    def counted(ids: Any, model: Any = None) -> dict[str, int]:
        lookups.append(len(ids))
        return original(ids, model)

    monitoring.store.batches_of = counted  # type: ignore[method-assign]

    async def go() -> tuple[int, int]:
        async with client(app) as c:
            answer = asyncio.create_task(
                c.post("/v1/feedback", json={"id": "no-such-id", "actual": 1.0})
            )
            await asyncio.sleep(0.1)  # the first lookup is done; the grace (0.3 s) runs
            seen = await asyncio.get_running_loop().run_in_executor(
                monitoring.pool, lambda: len(lookups)
            )
            return seen, (await answer).status_code

    seen, status = asyncio.run(go())
    # The pool ran other work between the two lookups: the wait was not in its thread.
    assert (seen, status, len(lookups)) == (1, 422, 2)


def test_odd_windows_and_outputs_get_messages_not_tracebacks(
    logged: tuple[App, Path], tiny_model: TrainedModel
) -> None:
    app, path = logged
    assert app.context.monitoring is not None and app.context.monitoring.writer.flush()
    model, url = str(tiny_model.artifact.directory), f"sqlite:///{path}"
    runner = CliRunner()
    # A log that is not there is said, not made empty and read as 0 rows.
    for command in (
        ["monitor", model],
        ["log", "export", model, "-o", "x.csv"],
        ["log", "migrate"],
    ):
        done = runner.invoke(cli, [*command, "--log-db", url])
        assert done.exit_code == 1 and "does not exist; check --log-db" in done.output
        assert not path.exists()
        folder = path.parent / "logs"
        folder.mkdir(exist_ok=True)
        done = runner.invoke(cli, [*command, "--log-db", f"sqlite:///{folder}"])
        assert done.exit_code == 1 and "is a folder; give the log's file" in done.output
    app.context.monitoring.writer.store.open()  # as a server's first write makes it
    for since in ("5.9e26s", "9999999d", "1e300", "3651d"):  # the page's notice says 3650d
        done = runner.invoke(cli, ["monitor", model, "--log-db", url, "--since", since])
        assert done.exit_code == 1 and "over 3650d (ten years)" in done.output, done.output
    for since in ("1_000d", "\u0661d", "\uff17d", "7 d"):  # float() reads all of these
        done = runner.invoke(cli, ["monitor", model, "--log-db", url, "--since", since])
        assert done.exit_code == 1 and "is not a duration" in done.output, done.output

    async def page() -> httpx.Response:
        async with client(app) as c:
            return await c.get("/monitor?since=5.9e26s")

    shown = asyncio.run(page())
    assert shown.status_code == 200  # the page falls back to 24 h, and says so
    assert "since=&#39;5.9e26s&#39; is not a window" in shown.text
    assert "(s, m, h, d or w, at most 3650d)" in shown.text  # the units it takes, not years
    kept = path.parent / "kept.txt"
    kept.write_text("mine")
    done = runner.invoke(cli, ["monitor", model, "--log-db", url, "-o", str(kept)])
    assert done.exit_code == 1 and "already exists" in done.output
    assert kept.read_text() == "mine"
    assert runner.invoke(cli, ["monitor", model, "--log-db", url, "-o", str(kept), "--force"])
    assert kept.read_text() != "mine"
    link = path.parent / "link.csv"
    link.symlink_to(path.parent / "elsewhere.csv")  # dangling: writing would go through it
    done = runner.invoke(cli, ["log", "export", model, "--log-db", url, "-o", str(link)])
    assert done.exit_code == 1 and "already exists" in done.output, done.output
    assert not (path.parent / "elsewhere.csv").exists()
    folder = path.parent / "a.csv"
    folder.mkdir()
    done = runner.invoke(cli, ["log", "export", model, "--log-db", url, "-o", str(folder)])
    assert done.exit_code == 1 and "is a folder" in done.output


def test_an_export_keeps_the_logs_columns_when_features_share_their_names(
    tmp_path: Path,
) -> None:
    from tabship.monitor.commands import LOG_COLUMNS, input_columns
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    from .conftest import make_tiny_table

    # A text feature called `time` once made the export parse its values as timestamps.
    table = make_tiny_table().rename(columns={"region": "time", "children": "id"})
    table.to_csv(tmp_path / "t.csv", index=False)
    options = TrainOptions(target="charges", folds=2, models=["ridge"])
    model = train_model(str(tmp_path / "t.csv"), options, tmp_path / "model").artifact.directory
    url = f"sqlite:///{tmp_path / 'log.db'}"
    app = started(model, url)
    record = table.drop(columns="charges").iloc[0].to_dict()

    async def go() -> list[str]:
        async with client(app) as c:
            answer = await c.post("/v1/predict", json={"instances": [record] * 3})
            return list(answer.json()["ids"])

    ids = asyncio.run(go())
    assert app.context.monitoring is not None
    app.context.monitoring.writer.close()
    out = tmp_path / "rows.parquet"
    done = CliRunner().invoke(cli, ["log", "export", str(model), "--log-db", url, "-o", str(out)])
    assert done.exit_code == 0, done.output
    exported = pd.read_parquet(out)
    assert list(exported["id"]) == ids and str(exported["time"].dtype).startswith("datetime64")
    assert list(exported["input.time"]) == [record["time"]] * 3
    assert list(exported["input.id"]) == [record["id"]] * 3

    names = ["id", "time", "age", "input.id", "actual"]
    columns = input_columns(names)
    assert columns["age"] == "age" and columns["input.id"] == "input.id"
    assert columns["id"] == "input.input.id"  # `input.id` is a feature's own name
    assert columns["time"] == "input.time" and columns["actual"] == "input.actual"
    assert len({*columns.values(), *LOG_COLUMNS}) == len(names) + len(LOG_COLUMNS)


def test_a_log_file_that_can_never_work_stops_the_server_at_once(tmp_path: Path) -> None:
    from tabship.monitor.store import check_log_db

    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("mine")
    folder = tmp_path / "folder"
    folder.mkdir()
    for path, said in ((not_sqlite, "not an SQLite database"), (folder, "is a folder")):
        with pytest.raises(LogDatabaseError, match=said):
            check_log_db(f"sqlite:///{path}")
    assert not_sqlite.read_text() == "mine"
    check_log_db(f"sqlite:///{tmp_path / 'new' / 'log.db'}")  # a missing folder is made
    assert (tmp_path / "new" / "log.db").is_file()
    with sqlite3.connect(tmp_path / "new" / "log.db") as db:
        db.execute("UPDATE tabship_log_meta SET value = 'bogus' WHERE key = 'schema_version'")
    with pytest.raises(LogDatabaseError, match="records schema version 'bogus'"):
        check_log_db(f"sqlite:///{tmp_path / 'new' / 'log.db'}")


def test_secrets_in_a_database_url_are_never_shown() -> None:
    from tabship.monitor.logurl import engine_url, redact

    shown = redact("postgresql:///db?user=bob&password=S3cret&sslpassword=K3y&host=h")
    assert "S3cret" not in shown and "K3y" not in shown and "user=bob" in shown
    unescaped = "postgresql://bob:S3cret@PW@127.0.0.1:1/db"
    assert "PW" not in redact(unescaped) and "S3cret" not in redact(unescaped)
    with pytest.raises(LogDatabaseError, match="must be written %40") as refused:
        engine_url(unescaped)
    assert "S3cret" not in str(refused.value) and "PW" not in str(refused.value)
    with pytest.raises(LogDatabaseError, match="not a database URL"):
        engine_url("postgresql://bob:pw@127.0.0.1:notaport/db")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux scheduling")
def test_a_starved_idle_writer_leaves_its_rows_to_the_catch_up_thread(tmp_path: Path) -> None:
    """The writer thread runs at SCHED_IDLE (a request takes the core from it at once); on a
    core something else keeps busy it gets a few ms a second. Far behind or asked to flush,
    the catch-up thread (normal priority) writes, and nothing the starved thread holds (a
    lock, a batch) keeps it waiting. Without it 20,000 rows took the starved thread seconds."""
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", max_queue_rows=40_000)
    writer.start()
    threads = {
        t.name: t.native_id for t in threading.enumerate() if t.name.startswith("tabship-log")
    }
    assert os.sched_getscheduler(threads["tabship-log"]) == os.SCHED_IDLE
    assert os.sched_getscheduler(threads["tabship-log-catch-up"]) == os.SCHED_OTHER
    core = {min(os.sched_getaffinity(0))}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for native_id in (hog.pid, *threads.values()):
            os.sched_setaffinity(native_id, core)
        for _ in range(20_000):
            writer.submit(Logged(prediction_ids(1), [PATIENT], [1.0], None, []), "/x", "", 0.001)
        assert writer.flush(timeout=3)
    finally:
        hog.kill()
        hog.wait()
        writer.close()
    assert writer.stats.written == 20_000 and writer.stats.dropped == 0
    assert store.count() == 20_000


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling")
def test_a_writer_of_one_of_several_workers_stays_at_normal_priority(tmp_path: Path) -> None:
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", low_priority=False)
    writer.start()
    try:
        threads = [t for t in threading.enumerate() if t.name.startswith("tabship-log")]
        assert len(threads) == 2
        for thread in threads:
            assert thread.native_id is not None
            assert os.sched_getscheduler(thread.native_id) == os.SCHED_OTHER
        writer.submit(Logged(prediction_ids(1), [PATIENT], [1.0], None, []), "/x", "", 0.001)
        assert writer.flush(timeout=5)
    finally:
        writer.close()
    assert store.count() == 1


def test_a_batch_answer_waits_for_a_writer_behind_not_for_a_database_stalled_or_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog_module, "STALLED_SECONDS", 1.0)
    path = tmp_path / "log.db"
    store = LogStore(f"sqlite:///{path}")
    store.open()
    # Both threads at normal priority: an idle-priority one may not run at all on a busy
    # machine, and the stall is told by an insert that has begun.
    writer = LogWriter(
        store, "sha", max_queue_rows=2000, batch_rows=10, flush_seconds=0.02, low_priority=False
    )

    def submit(requests: int) -> None:
        for _ in range(requests):
            batch = Logged(prediction_ids(10), [PATIENT] * 10, [1.0] * 10, None, [])
            writer.submit(batch, "/v1/predict", "", 0.001)

    submit(99)  # 990 rows: under half the bound, no answer waits
    asyncio.run(writer.room())
    assert writer.stats.waits == 0
    submit(51)  # 1,500 rows and no writer yet: behind, an answer waits its half second
    asyncio.run(writer.room())
    assert writer.stats.waits == 1
    assert writer.stats.wait_seconds >= backlog_module.WAIT_SECONDS
    # Another connection holds SQLite's write lock: the writer's inserts wait for it. Each
    # thread takes at most a batch, so most rows stay queued: answers wait while the inserts
    # are young, and stop waiting once one has run past STALLED_SECONDS.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    writer.start()
    asyncio.run(writer.room())
    assert writer.stats.waits == 2
    deadline = time.monotonic() + 30  # a loaded machine may start the inserts late
    while not any(writer._inserting) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.5)
    asyncio.run(writer.room())
    assert writer.stats.waits == 2
    scraped = {m.name: m.samples[0].value for m in LogCollector(writer).collect() if m.samples}
    assert scraped["tabship_prediction_log_waits"] == 2
    assert scraped["tabship_prediction_log_wait_seconds"] == writer.stats.wait_seconds >= 1.0
    blocker.execute("ROLLBACK")
    blocker.close()
    assert writer.flush(timeout=30)
    writer.close()
    assert store.count() == 1500 and writer.stats.dropped == 0

    # Told never to wait (TABSHIP_LOG_WAIT_SECONDS=0), an answer does not, however far behind.
    settings = ServeSettings.resolve(env={"TABSHIP_LOG_WAIT_SECONDS": "0"})
    assert settings.log_wait_seconds == 0
    writer = LogWriter(store, "sha", max_queue_rows=2000, wait_seconds=settings.log_wait_seconds)
    submit(150)
    asyncio.run(writer.room())
    assert writer.stats.waits == 0

    # A database that fails (its folder missing): no answer waits for its retries.
    down = LogWriter(
        LogStore(f"sqlite:///{tmp_path / 'missing' / 'log.db'}"),
        "sha",
        max_queue_rows=2000,
        batch_rows=10,
        flush_seconds=0.02,
        low_priority=False,
    )
    writer = down
    submit(150)
    down.start()
    # Seven failed passes (each about half a second: the schema's creation retries): the
    # backoff has grown past what close() gives below, which must still end with the rows
    # counted as dropped, not with a retry due after close() stopped waiting.
    deadline = time.monotonic() + 30
    while down.stats.failures < 7 and time.monotonic() < deadline:
        time.sleep(0.02)
    asyncio.run(down.room())
    assert down.stats.failures and down.stats.waits == 0
    down.close(timeout=1.5)
    assert down.stats.dropped == 1500  # said and counted when the writer gave up at close


def request_rows(store: LogStore, sha: str, requests: list[tuple[str, float, int, float]]) -> None:
    """Log requests given as (request id, time, rows, latency ms), one batch row each."""
    counter = 0
    for request_id, ts, count, latency in requests:
        entries = []
        for _ in range(count):
            counter += 1
            pid = f"0123456789ab-{counter:x}"
            fields = (pid, ts, request_id, "/v1/predict", PATIENT, 1e4, None, [], latency)
            entries.append((pid, ts, entry_text(fields)))
        store.insert(entries, sha, "pod:1")


def test_latency_and_requests_are_per_request_not_per_row(
    tmp_path: Path, tiny_model: TrainedModel
) -> None:
    # One 300-row /v1/predict request set both percentiles when each row counted as one.
    import numpy as np

    from tabship.monitor.summary import summarize

    card, now = tiny_model.artifact.card, 1_700_000_000.0
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    one_row = [(f"r{i}", now - 100 + i, 1, 2.0) for i in range(19)]
    # A client sending one X-Request-Id twice: two requests, told apart by their time.
    again = [("again", now - 60, 1, 3.0), ("again", now - 59, 2, 4.0)]
    request_rows(store, card.sha256, [("batch", now - 70, 300, 80.0), *one_row, *again])
    summary = summarize(store, card, None, 3600, now=now)
    store.close()
    (bucket,) = summary.buckets
    latencies = [80.0] + [2.0] * 19 + [3.0, 4.0]
    assert (bucket.predictions, bucket.requests) == (322, 22)
    assert bucket.latency_p50 == pytest.approx(np.percentile(latencies, 50))
    assert bucket.latency_p95 == pytest.approx(np.percentile(latencies, 95))
    traffic = summary.to_dict()["traffic"][0]
    assert (traffic["requests"], traffic["latency_ms_p50"]) == (22, 2.0)


def test_an_outage_stays_a_gap_in_the_buckets(tmp_path: Path, tiny_model: TrainedModel) -> None:
    from tabship.monitor.page import render_monitor
    from tabship.monitor.summary import summarize

    card, now = tiny_model.artifact.card, 1_700_000_000.0
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    # The last row is stamped three years ahead (a pod's wrong clock): no bucket is made
    # for the years between.
    later = now + 3 * 365 * 86400
    requests = [("a", now - 5 * 3600, 3, 2.0), ("b", now - 60, 2, 2.0), ("c", later, 1, 2.0)]
    request_rows(store, card.sha256, requests)
    summary = summarize(store, card, None, 86400, now=now)
    store.close()
    # Hourly buckets on whole hours (the same on every reload), the hours between kept empty.
    assert [b.start % 3600 for b in summary.buckets] == [0.0] * len(summary.buckets)
    assert [b.predictions for b in summary.buckets] == [3, 0, 0, 0, 0, 2]
    assert summary.buckets[1].latency_p50 is None and summary.buckets[0].label.endswith(" UTC")
    assert json.loads(json.dumps(summary.to_dict()))["traffic"][1]["latency_ms_p50"] is None
    assert "<svg" in render_monitor(summary, card, card.title, "24h")
    # A bucket the window begins inside is labelled from the window's start.
    (partial,) = summarize(
        LogStore(f"sqlite:///{tmp_path / 'log.db'}"), card, None, 70, now=now
    ).buckets
    assert partial.start == now - 70 and partial.predictions == 2


def test_feedback_outside_the_window_is_not_said_to_be_missing(
    tmp_path: Path, tiny_model: TrainedModel
) -> None:
    from tabship.monitor.page import render_monitor, render_table
    from tabship.monitor.summary import summarize

    card, now = tiny_model.artifact.card, 1_700_000_000.0
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    request_rows(store, card.sha256, [("old", now - 3 * 86400, 1, 2.0), ("new", now - 60, 1, 2.0)])
    fresh = summarize(store, card, None, 86400, now=now)
    assert not fresh.feedback_outside
    assert "live scores: no feedback yet: POST /v1/feedback" in render_table(fresh)
    found = store.batches_of(["0123456789ab-1"], card.sha256)
    store.add_feedback([("0123456789ab-1", 9000.0)], found)
    later = summarize(store, card, None, 86400, now=now)
    store.close()
    assert later.labelled == 0 and later.to_dict()["feedback_outside_window"] is True
    assert "live scores: no feedback in this window (the log holds feedback" in render_table(later)
    page = render_monitor(later, card, card.title, "24h")  # the /monitor page says the same
    assert "no feedback in this window" in page and "no feedback yet" not in page


def test_a_log_that_cannot_be_reached_answers_503_with_retry_after(
    tiny_model: TrainedModel,
) -> None:
    # Nothing listens there: a real refused connection, not a stand-in.
    app = started(tiny_model.artifact.directory, f"postgresql://tabship@127.0.0.1:{free_port()}/x")

    async def go() -> list[httpx.Response]:
        async with client(app) as c:
            return [
                await c.post("/v1/feedback", json={"id": "0123456789ab-1", "actual": 1.0}),
                await c.get("/monitor"),
            ]

    try:
        for answer in asyncio.run(go()):
            assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
            assert "cannot be reached" in answer.text
    finally:
        monitoring = app.context.monitoring
        assert monitoring is not None
        monitoring.writer.close(1.0)


def test_feedback_for_ids_still_queued_behind_a_locked_database_is_503(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    from .servers import start_server

    path = tmp_path / "log.db"
    server = start_server(tiny_model.artifact.directory, tmp_path, "--log-db", f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        first = httpx.post(f"{server.url}/v1/predict", json={"instances": [PATIENT]}).json()
        written = {"id": first["ids"][0], "actual": 1e4}
        assert httpx.post(f"{server.url}/v1/feedback", json=written).status_code == 200
        # Another process holds SQLite's write lock (reads go on): new rows wait to be written.
        holder.execute("BEGIN IMMEDIATE")
        # A worker with nothing queued (`--workers 2`: the id is the other's) still cannot
        # write: the id may be waiting there.
        other = {"id": "0123456789ab-0000000001", "actual": 1e4}
        idle = httpx.post(f"{server.url}/v1/feedback", json=other)
        assert idle.status_code == 503 and idle.headers["retry-after"] == "5"
        ids = httpx.post(f"{server.url}/v1/predict", json={"instances": [PATIENT]}).json()["ids"]
        waiting = httpx.post(f"{server.url}/v1/feedback", json={"id": ids[0], "actual": 1e4})
        # Not "not a logged prediction" (422): the client would throw the ground truth away.
        assert waiting.status_code == 503 and waiting.headers["retry-after"] == "5"
        assert "1 of the ids are waiting to be written" in waiting.text
        # Another worker's id may be queued there alike; an id no tabship gives is unknown,
        # whatever the writer's state.
        assert httpx.post(f"{server.url}/v1/feedback", json=other).status_code == 503
        made_up = httpx.post(f"{server.url}/v1/feedback", json={"id": "x-1", "actual": 1e4})
        assert made_up.status_code == 422
        holder.execute("ROLLBACK")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = httpx.post(f"{server.url}/v1/feedback", json={"id": ids[0], "actual": 1e4})
            if again.status_code != 503:
                break
            time.sleep(0.5)
        assert again.json() == {"stored": 1, "replaced": 0, "warnings": []}
    finally:
        holder.close()
        assert server.stop() == 0


def test_class_feedback_is_stored_as_answers_give_the_class(
    tmp_path: Path, tiny_model: TrainedModel
) -> None:
    from tabship.train import TrainOptions
    from tabship.workflow import train_model

    from .conftest import make_tiny_table

    table = make_tiny_table(rows=80).drop(columns="charges")
    table["sick"] = (table["age"] > 40).astype(int)
    table.to_csv(tmp_path / "sick.csv", index=False)
    options = TrainOptions(target="sick", folds=2, models=["logistic"], task="classification")
    model = train_model(str(tmp_path / "sick.csv"), options, tmp_path / "model").artifact
    path = tmp_path / "log.db"
    app = started(model.directory, f"sqlite:///{path}")
    records = table.drop(columns="sick").head(20).to_dict("records")

    async def go() -> None:
        async with client(app) as c:
            answer = (await c.post("/v1/predict", json={"instances": records})).json()
            sent = [
                {"id": pid, "actual": int(label) if n % 2 else str(label)}
                for n, (pid, label) in enumerate(zip(answer["ids"], table["sick"], strict=False))
            ]
            assert (await c.post("/v1/feedback", json=sent)).status_code == 200

    try:
        asyncio.run(go())
    finally:
        assert app.context.monitoring is not None
        app.context.monitoring.writer.close()
    # The log's view compares them as a user would (a stored "1" never equalled a 1).
    with sqlite3.connect(path) as db:
        equal, answered, truth = db.execute(
            "SELECT sum(p.prediction = f.actual), count(*), group_concat(DISTINCT f.actual)"
            " FROM tabship_predictions p JOIN tabship_feedback f ON f.id = p.id"
        ).fetchone()
    hits = sum(
        int(p == t)
        for p, t in zip(
            Predictor.load(model.directory).predict(records).values, table["sick"], strict=False
        )
    )
    assert answered == 20 and equal == hits > 10
    assert set(truth.split(",")) <= {"0", "1"}
