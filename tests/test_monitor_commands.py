"""`tabship monitor`, `log export` and `log migrate` on real SQLite files: they read, never write."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tabship.cli import app as cli
from tabship.monitor.store import LogStore
from tabship.monitor.tables import entry_text
from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model

from .conftest import make_tiny_table
from .test_monitor_log import client, started
from .test_monitor_store import as_another_user, shared_folder

PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}
PREFIX = "0123456789ab"


def write_log(path: Path, model_sha256: str, count: int, start: int = 1) -> None:
    """`count` one-row requests of `model_sha256`, the newest a second ago."""
    now = time.time()
    entries = []
    for counter in range(start, start + count):
        pid, ts = f"{PREFIX}-{counter:x}", now - 1 - counter / 1000
        fields = (
            pid,
            ts,
            pid,
            "/predict_api",
            {**PATIENT, "age": 18 + counter % 40},
            1e4,
            None,
            [],
            2.0,
        )
        entries.append((pid, ts, entry_text(fields)))
    store = LogStore(f"sqlite:///{path}")
    store.insert(entries, model_sha256, "pod:1")
    store.close()


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file in `folder` and its contents' hash."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_reading_commands_leave_a_database_that_is_not_a_log_as_it_was(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    # They made tabship's tables, view and meta row in it and reported 0 rows.
    empty, theirs = tmp_path / "empty" / "log.db", tmp_path / "theirs" / "app.db"
    empty.parent.mkdir()
    empty.touch()
    theirs.parent.mkdir()
    with sqlite3.connect(theirs) as db:
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("INSERT INTO users VALUES ('ann')")
    db.close()
    model = str(tiny_model.artifact.directory)
    runner = CliRunner()
    for path in (empty, theirs):
        before = fingerprint(path.parent)
        url = f"sqlite:///{path}"
        for command in (
            ["monitor", model, "--log-db", url],
            ["log", "export", model, "--log-db", url, "-o", str(tmp_path / "rows.csv")],
            ["log", "migrate", "--log-db", url],
        ):
            done = runner.invoke(cli, command)
            assert done.exit_code == 1, (command, done.output)
            assert (
                f"the log database {url} is not a tabship prediction log (no tabship_log_meta "
                "table); check --log-db"
            ) in done.output
            assert fingerprint(path.parent) == before
    assert not (tmp_path / "rows.csv").exists()


@pytest.fixture
def base() -> Iterator[Path]:
    with shared_folder() as folder:
        yield folder


def test_a_log_on_read_only_storage_is_read(tiny_model: TrainedModel, base: Path) -> None:
    # A WAL log closed cleanly is one file; read-only, SQLite wants to make its -wal and -shm
    # beside it, which a folder that cannot be written refuses.
    model = base / "model"
    shutil.copytree(tiny_model.artifact.directory, model)
    for inside, _, names in os.walk(model):
        Path(inside).chmod(0o755)
        for name in names:
            (Path(inside) / name).chmod(0o644)
    written, shelf, out = base / "written", base / "shelf", base / "out"
    for folder in (written, shelf, out):
        folder.mkdir()
    write_log(written / "log.db", tiny_model.artifact.card.sha256, 120)
    assert fingerprint(written).keys() == {"log.db"}  # closed cleanly: one file
    shutil.copy(written / "log.db", shelf / "log.db")
    (shelf / "log.db").chmod(0o444)
    out.chmod(0o777)

    def commands(path: Path, output: Path) -> list[list[str]]:
        url = f"sqlite:///{path}"
        return [
            ["monitor", str(model), "--log-db", url, "--format", "json"],
            ["log", "export", str(model), "--log-db", url, "-o", str(output)],
        ]

    runner = CliRunner()
    # Once as this user on the writable log: what the commands import is then imported.
    assert all(
        runner.invoke(cli, c).exit_code == 0 for c in commands(written / "log.db", out / "a.csv")
    )
    shelf.chmod(0o555)
    before = fingerprint(shelf)
    with as_another_user():
        report, export = (runner.invoke(cli, c) for c in commands(shelf / "log.db", out / "b.csv"))
    assert report.exit_code == 0, report.output
    assert json.loads(report.output)["rows"] == 120
    assert export.exit_code == 0, export.output
    assert f"exported 120 rows to {out / 'b.csv'}" in export.output
    assert len(pd.read_csv(out / "b.csv")) == 120
    assert fingerprint(shelf) == before


def train_classifier(folder: Path, labels: dict[str, Any]) -> Path:
    """A quick classifier of `smoker`, its classes spelled as `labels` maps no/yes."""
    table = make_tiny_table()
    table["smoker"] = table["smoker"].map(labels)
    folder.mkdir()
    table.to_csv(folder / "t.csv", index=False)
    options = TrainOptions(target="smoker", folds=2, models=["logistic"])
    return train_model(str(folder / "t.csv"), options, folder / "model").artifact.directory


@pytest.mark.parametrize(
    ("labels", "arrow", "kind"),
    [
        ({"no": 0, "yes": 1}, pa.int64(), "integer"),
        ({"no": False, "yes": True}, pa.bool_(), "boolean"),
    ],
)
def test_an_export_gives_prediction_and_actual_the_classes_own_type(
    tmp_path: Path, labels: dict[str, Any], arrow: pa.DataType, kind: str
) -> None:
    # Feedback is stored as the class's text: exported as '1' next to an int64 prediction,
    # no row was right; a True/False target exported both as text.
    model = train_classifier(tmp_path / "train", labels)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    app = started(model, url)
    assert app.context.predictor.card.label_type == kind
    table = make_tiny_table().head(12)
    records = table.drop(columns="smoker").to_dict("records")
    truth = [labels[value] for value in table["smoker"]]

    async def go() -> dict[str, Any]:
        async with client(app) as c:
            answer = (await c.post("/v1/predict", json={"instances": records})).json()
            feedback = [
                {"id": i, "actual": a} for i, a in zip(answer["ids"][1:], truth[1:], strict=True)
            ]
            assert (await c.post("/v1/feedback", json=feedback)).status_code == 200
            return dict(answer)

    answer = asyncio.run(go())
    assert app.context.monitoring is not None
    app.context.monitoring.writer.close()
    predicted = answer["predictions"]
    assert {type(p) for p in predicted} == {type(truth[0])}
    right = sum(p == t for p, t in zip(predicted[1:], truth[1:], strict=True))
    runner = CliRunner()
    for name in ("rows.parquet", "rows.csv"):
        out = tmp_path / name
        done = runner.invoke(cli, ["log", "export", str(model), "--log-db", url, "-o", str(out)])
        assert done.exit_code == 0, done.output
    exported = pq.read_table(tmp_path / "rows.parquet")
    assert exported.schema.field("prediction").type == arrow
    assert exported.schema.field("actual").type == arrow
    assert exported["prediction"].to_pylist() == predicted
    assert exported["actual"].to_pylist() == [None, *truth[1:]]
    written = pd.read_csv(tmp_path / "rows.csv").iloc[1:]
    assert (written["prediction"] == written["actual"]).sum() == right > 0


def test_a_window_with_only_other_models_rows_says_whose(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    # A model retrained into its folder has a new sha256: the window then said "0 rows".
    path, ours = tmp_path / "log.db", tiny_model.artifact.card.sha256
    other = "cb356e0dca03" + "0" * 52
    write_log(path, other, 301)
    model, url = str(tiny_model.artifact.directory), f"sqlite:///{path}"
    said = (
        f"the log holds 301 rows of another model (cb356e0dca03) in this window and none of "
        f"this one ({ours[:12]}): was the model retrained into this folder?"
    )
    runner = CliRunner()
    report = runner.invoke(cli, ["monitor", model, "--log-db", url, "--format", "json"])
    assert json.loads(report.output)["note"] == said
    assert f"note: {said}" in runner.invoke(cli, ["monitor", model, "--log-db", url]).output
    out = tmp_path / "rows.csv"
    export = runner.invoke(cli, ["log", "export", model, "--log-db", url, "-o", str(out)])
    assert export.exit_code == 0 and export.output == f"exported 0 rows to {out}; {said}\n"
    for number, digit in enumerate("abd", start=1):
        write_log(path, digit * 64, number, start=1000 * number)
    report = runner.invoke(cli, ["monitor", model, "--log-db", url, "--format", "json"])
    assert json.loads(report.output)["note"].startswith(
        "the log holds 307 rows of 4 other models (cb356e0dca03, dddddddddddd, bbbbbbbbbbbb "
        "and 1 more) in this window and none of this one"
    )
    write_log(path, ours, 3, start=5000)
    assert (
        json.loads(
            runner.invoke(cli, ["monitor", model, "--log-db", url, "--format", "json"]).output
        )["note"]
        == "3 rows in the window; drift needs at least 100"
    )


def test_odd_formats_windows_and_outputs_are_said_plainly(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    path = tmp_path / "log.db"
    write_log(path, tiny_model.artifact.card.sha256, 5)
    model, url = str(tiny_model.artifact.directory), f"sqlite:///{path}"
    runner = CliRunner()
    report = runner.invoke(cli, ["monitor", model, "--log-db", url, "--format", "JSON"])
    assert report.exit_code == 0 and json.loads(report.output)["rows"] == 5
    bad = runner.invoke(cli, ["monitor", model, "--log-db", url, "--format", "yaml"])
    assert bad.exit_code == 1 and "--format 'yaml': choose one of table, json, html" in bad.output
    for since in ("1e308h", "1e999"):  # past float64: was 'must be a positive duration'
        done = runner.invoke(cli, ["monitor", model, "--log-db", url, "--since", since])
        assert done.exit_code == 1 and "is over 3650d" in done.output, done.output
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "rows.csv").write_text("mine")
    below = tmp_path / "exp" / "rows.csv" / "x.csv"
    for command in (["log", "export", model], ["monitor", model]):
        done = runner.invoke(cli, [*command, "--log-db", url, "-o", str(below)])
        assert done.exit_code == 1, done.output
        assert f"-o {below}: {tmp_path / 'exp' / 'rows.csv'} is a file, not a folder" in done.output
    assert (tmp_path / "exp" / "rows.csv").read_text() == "mine"
