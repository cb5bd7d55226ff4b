"""The log's database on SQLite: batches and the view over them, id lookup, windows, schema 1."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import tempfile
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tabship.monitor.ids import PREFIX as OURS
from tabship.monitor.logurl import LogDatabaseError
from tabship.monitor.packed import Packed
from tabship.monitor.store import LogStore, check_log_db
from tabship.monitor.tables import SCHEMA_VERSION, entry_text, metadata

from .postgres import Postgres, remove, start_postgres
from .servers import free_port

PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}
PREFIX = "0123456789ab"
# Schema 1 as tabship 0.2 created it: one row per prediction.
SCHEMA_1 = (
    "CREATE TABLE tabship_log_meta (key VARCHAR(64) PRIMARY KEY, value VARCHAR(256) NOT NULL)",
    "CREATE TABLE tabship_predictions (id VARCHAR(40) PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
    " request_id VARCHAR(64) NOT NULL, model_sha256 VARCHAR(64) NOT NULL, route VARCHAR(64) NOT"
    " NULL, instance VARCHAR(64) NOT NULL, input TEXT NOT NULL, prediction TEXT NOT NULL,"
    " probabilities TEXT, warnings TEXT NOT NULL, latency_ms DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX ix_tabship_predictions_ts ON tabship_predictions (ts)",
    "CREATE TABLE tabship_feedback (id VARCHAR(40) PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
    " actual TEXT NOT NULL)",
    "CREATE INDEX ix_tabship_feedback_ts ON tabship_feedback (ts)",
    "INSERT INTO tabship_log_meta VALUES ('schema_version', '1')",
)


def entry(pid: str, ts: float) -> tuple[str, float, bytes]:
    return pid, ts, entry_text((pid, ts, pid, "/predict_api", PATIENT, 1.0, None, (), 0.5))


def packed(prefix: str, counters: list[int]) -> Packed:
    """Entries as a writer's thread takes them from the loop's slab: ids and lengths kept."""
    ids = [f"{prefix}-{c:010x}" for c in counters]
    texts = [entry(pid, float(c))[2] for pid, c in zip(ids, counters, strict=True)]
    times = array("d", [float(c) for c in counters])
    return Packed(
        b",".join(texts), times, None, ",".join(ids).encode(), array("q", map(len, texts))
    )


def schema_1_rows(count: int) -> list[dict[str, Any]]:
    """Rows as schema 1 held them: from two processes, and one id of the oldest kind."""
    out = []
    for number in range(count):
        prefix = PREFIX if number % 3 else "ba9876543210"
        pid = f"{prefix}-{number + 1:x}"
        out.append(
            {
                "id": pid,
                "ts": 1_700_000_000.0 + number,
                "request_id": f"req-{number}",
                "model_sha256": "m" * 64,
                "route": "/v1/predict",
                "instance": f"pod-{number % 3 == 0}:1",
                "input": json.dumps({**PATIENT, "age": 18 + number % 40}),
                "prediction": json.dumps(1000.5 + number),
                "probabilities": None,
                "warnings": json.dumps(["age: high"] if number % 7 == 0 else []),
                "latency_ms": 0.25,
            }
        )
    out.append({**out[0], "id": "5f0c2b8e-3f0d-4c5e-9a53-1d2e3f4a5b6c", "ts": 1_600_000_000.0})
    # Early builds wrote NaN (json.dumps' default), which no JSON reader of the view takes.
    out.append({**out[1], "id": f"{PREFIX}-ffff", "input": '{"age": 40, "bmi": NaN}'})
    return out


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and v != v else v for k, v in record.items()}


def write_schema_1(url: str, rows: list[dict[str, Any]], feedback: dict[str, float]) -> None:
    """A log database written by tabship 0.2 (schema 1), with feedback for some rows."""
    engine = sa.create_engine(LogStore(url).url)
    with engine.begin() as connection:
        for statement in SCHEMA_1:
            connection.exec_driver_sql(statement)
        columns = ", ".join(rows[0])
        marks = ", ".join(f":{name}" for name in rows[0])
        connection.execute(
            sa.text(f"INSERT INTO tabship_predictions ({columns}) VALUES ({marks})"),
            rows,
        )
        for pid, actual in feedback.items():
            connection.execute(
                sa.text("INSERT INTO tabship_feedback VALUES (:id, :ts, :actual)"),
                {"id": pid, "ts": 1.0, "actual": json.dumps(actual)},
            )
    engine.dispose()


def check_moved(url: str, rows: list[dict[str, Any]], feedback: dict[str, float]) -> None:
    """Every schema-1 row reads back the same, through the store and through the view."""
    store = LogStore(url)
    with pytest.raises(LogDatabaseError, match="run `tabship log migrate"):
        store.open()  # a server or a read-only command leaves it as it is
    assert store.migrate() == len(rows)
    assert store.migrate() == 0  # a second run finds version 2 and nothing to do
    assert store.count() == len(rows)
    read = {r.id: r for r in store.rows(None, 0)}
    assert set(read) == {r["id"] for r in rows}
    for row in rows:
        got = read[row["id"]]
        assert (got.ts, got.request_id, got.route) == (row["ts"], row["request_id"], row["route"])
        assert got.input == _finite(json.loads(row["input"]))
        assert got.warnings == json.loads(row["warnings"])
        assert got.actual == feedback.get(row["id"])
    with store.engine.connect() as connection:
        version = connection.exec_driver_sql(
            "SELECT value FROM tabship_log_meta WHERE key = 'schema_version'"
        ).scalar()
        view = connection.exec_driver_sql(
            "SELECT id, ts, request_id, model_sha256, route, instance, input, prediction, "
            "probabilities, warnings, latency_ms FROM tabship_predictions"
        ).all()
    assert version == str(SCHEMA_VERSION)
    with store.engine.connect() as connection:
        spans = connection.exec_driver_sql(
            f"SELECT max(span) FROM tabship_prediction_batches WHERE prefix = '{PREFIX}'"
        )
        # Runs of near counters (500 of them span about 750 here), not batches cut in the ids'
        # text order (1, 10, 100, 101, ...), which span the whole log.
        assert spans.scalar() < 800
    by_id = {r["id"]: r for r in rows}
    for got in view:
        row = by_id[got.id]
        assert got.probabilities is None and got.instance == row["instance"]
        assert json.loads(got.input) == _finite(json.loads(row["input"]))
        assert json.loads(got.prediction) == json.loads(row["prediction"])
        assert (got.ts, got.latency_ms, got.model_sha256) == (
            row["ts"],
            row["latency_ms"],
            row["model_sha256"],
        )
    assert len(view) == len(rows)
    oldest = rows[-1]["id"]  # the uuid, and a counter id of each process: feedback finds them
    some = [oldest, rows[1]["id"], rows[3]["id"]]
    assert set(store.batches_of([*some, f"{PREFIX}-ffffff"])) == set(some)
    store.close()


def test_a_schema_1_log_is_moved_with_its_feedback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    rows = schema_1_rows(1203)
    feedback = {rows[5]["id"]: 12.5, rows[1000]["id"]: 7.0, rows[-1]["id"]: 3.0}
    write_schema_1(url, rows, feedback)
    check_moved(url, rows, feedback)


def test_feedback_finds_ids_written_out_of_order(tmp_path: Path) -> None:
    # Requests end in another order than their ids were given: a slow one's row lands in a
    # later batch, whose counter range then covers most of an earlier batch's.
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    batches = [[1, 2, 3, 5, 6], [4, 7, 8, 9], [40, 41], [10, 11, 60]]
    for counters in batches:
        store.insert([entry(f"{PREFIX}-{c:x}", float(c)) for c in counters], "sha", "pod:1")
    found = store.batches_of([f"{PREFIX}-{c:x}" for counters in batches for c in counters])
    for number, counters in enumerate(batches, start=1):
        assert {found[f"{PREFIX}-{c:x}"] for c in counters} == {number}
    absent = [f"{PREFIX}-{c:x}" for c in (0, 12, 42, 61)] + [f"{PREFIX}-0x4", "ab-4", "4"]
    assert store.batches_of(absent) == {}
    store.add_feedback([(f"{PREFIX}-4", 2.0)], found)
    assert {r.id: r.actual for r in store.rows(None, 0)}[f"{PREFIX}-4"] == 2.0
    assert store.delete_before(9.5) == 9  # batches whose newest entry is older: 1 and 2
    assert sorted(store.batches_of([f"{PREFIX}-{c:x}" for c in (4, 10)]).values()) == [4]
    with sqlite3.connect(tmp_path / "log.db") as db:
        assert db.execute("SELECT count(*) FROM tabship_feedback").fetchone() == (0,)


def test_a_file_deleted_under_a_server_is_made_again_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tabship.monitor.database as database

    monkeypatch.setattr(database, "FILE_CHECK_SECONDS", 0.0)
    path = tmp_path / "log.db"
    store = LogStore(f"sqlite:///{path}")
    # As the writer's threads insert: a packed batch, through the thread's own connection.
    store.insert(packed(OURS, [1]), "sha", "pod:1")
    for name in ("log.db", "log.db-wal", "log.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    # The connections still held the deleted file: every later row went there, unseen.
    store.insert(packed(OURS, [2]), "sha", "pod:1")
    assert path.exists()
    assert [r.id for r in LogStore(f"sqlite:///{path}").rows(None, 0)] == [f"{OURS}-{2:010x}"]
    said = capsys.readouterr().err  # which worker: each of several says it once
    assert "moved or replaced while this server ran" in said and f"process {os.getpid()}" in said
    store.insert(packed(OURS, [3]), "sha", "pod:1")  # the new file, kept
    assert capsys.readouterr().err == ""
    assert len(list(store.rows(None, 0))) == 2
    # Moved aside and replaced by what is no log (another program's file): down, said, and
    # written again once a log is back at the path.
    for suffix in ("", "-wal", "-shm"):  # a SQLite file moves with its WAL
        (tmp_path / f"log.db{suffix}").rename(tmp_path / f"moved.db{suffix}")
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE tabship_log_meta (key TEXT, value TEXT)")
        other.execute("INSERT INTO tabship_log_meta VALUES ('schema_version', '1')")
    with pytest.raises(OSError, match="schema version 1"):
        store.insert(packed(OURS, [4]), "sha", "pod:1")
    path.unlink()
    store.insert(packed(OURS, [4]), "sha", "pod:1")
    assert [r.id for r in store.rows(None, 0)] == [f"{OURS}-{4:010x}"]
    assert len(list(LogStore(f"sqlite:///{tmp_path / 'moved.db'}").rows(None, 0))) == 2


def test_a_servers_retention_deletes_its_own_models_rows_only(tmp_path: Path) -> None:
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    store.insert([entry(f"{PREFIX}-{c:x}", float(c)) for c in (1, 2)], "mine", "pod:1")
    store.insert([entry(f"{PREFIX}-{c:x}", float(c)) for c in (30, 31)], "mine", "pod:1")
    # Another model's old rows stay, idle or not: its servers may keep theirs longer.
    other = "ba9876543210"
    store.insert([entry(f"{other}-{c:x}", float(c)) for c in (1, 2)], "theirs", "pod:2")
    found = store.batches_of([f"{other}-1", f"{PREFIX}-1e"])
    store.add_feedback([(f"{other}-1", 3.0), (f"{PREFIX}-1e", 4.0)], found)
    assert store.delete_before(10.0, "mine") == 2
    ids = [r.id for r in store.rows(None, 0)]
    assert ids == [f"{PREFIX}-1f", f"{PREFIX}-1e", f"{other}-2", f"{other}-1"]
    assert {r.id: r.actual for r in store.rows(None, 0)} == {
        f"{PREFIX}-1f": None, f"{PREFIX}-1e": 4.0, f"{other}-2": None, f"{other}-1": 3.0
    }  # fmt: skip


def test_the_view_compares_boolean_and_accented_classes_with_their_feedback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    store = LogStore(f"sqlite:///{path}")
    store.open()
    with sqlite3.connect(path) as db:  # the view an earlier tabship made: booleans read as 1
        db.execute("DROP VIEW tabship_predictions")
        db.execute(
            "CREATE VIEW tabship_predictions AS SELECT b.id AS batch, json_extract(e.value, "
            "'$[0]') AS id, json_quote(json_extract(e.value, '$[5]')) AS prediction FROM "
            "tabship_prediction_batches AS b, json_each(b.entries) AS e"
        )
    store = LogStore(f"sqlite:///{path}")  # a server opening it again
    answers = [(1, True), (2, False), (3, "élevé")]
    for counter, value in answers:
        pid = f"{PREFIX}-{counter:x}"
        fields = (pid, 1.0, pid, "/predict_api", PATIENT, value, None, (), 0.5)
        store.insert([(pid, 1.0, entry_text(fields))], "sha", "pod:1")
    pairs = [(f"{PREFIX}-{c:x}", value) for c, value in answers]
    store.add_feedback(pairs, store.batches_of([pid for pid, _ in pairs]))
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT p.prediction, f.actual, p.prediction = f.actual FROM tabship_predictions p "
            "JOIN tabship_feedback f ON f.id = p.id ORDER BY p.id"
        ).fetchall()
    assert found == [("true", "true", 1), ("false", "false", 1), ('"élevé"', '"élevé"', 1)]


def test_a_window_is_the_newest_rows_across_batches(tmp_path: Path) -> None:
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    # Two processes whose batches overlap in time, and a batch straddling the window's start.
    store.insert([entry(f"{PREFIX}-{c:x}", 10.0 + c) for c in range(1, 40)], "sha", "a:1")
    other = "ba9876543210"
    store.insert([entry(f"{other}-{c:x}", 10.5 + c) for c in range(1, 40)], "sha", "b:1")
    store.insert([entry(f"{PREFIX}-{c:x}", 100.0 + c) for c in range(40, 45)], "other", "a:1")
    every = sorted(((10.0 + c, "a") for c in range(1, 40)), reverse=True)
    every = sorted([*every, *((10.5 + c, "b") for c in range(1, 40))], reverse=True)
    newest = [r.ts for r in store.rows("sha", 0, 7)]
    assert newest == [ts for ts, _ in every[:7]]
    window = [r.ts for r in store.rows("sha", 45.0)]
    assert window == [ts for ts, _ in every if ts >= 45.0]
    assert len(list(store.rows(None, 0))) == 83


def test_the_view_reads_each_prediction_as_a_row(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = LogStore(f"sqlite:///{path}")
    shares = {"no": 0.25, "yes": 0.75}
    fields = (
        f"{PREFIX}-1",
        5.0,
        "req",
        "/v1/predict",
        {"région": "nord"},
        "yes",
        shares,
        ["w"],
        1.5,
    )
    store.insert([(f"{PREFIX}-1", 5.0, entry_text(fields))], "sha", "pod:1")
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        (row,) = [dict(r) for r in db.execute("SELECT * FROM tabship_predictions")]
    assert row == {
        "batch": 1,
        "position": 0,
        "id": f"{PREFIX}-1",
        "ts": 5.0,
        "request_id": "req",
        "model_sha256": "sha",
        "route": "/v1/predict",
        "instance": "pod:1",
        "input": '{"région":"nord"}',
        "prediction": '"yes"',
        "probabilities": '{"no":0.25,"yes":0.75}',
        "warnings": '["w"]',
        "latency_ms": 1.5,
    }


@pytest.mark.parametrize("version", ["1", "2"])
def test_openers_waiting_on_the_lock_move_the_log_once(tmp_path: Path, version: str) -> None:
    # Both openers start while another connection holds the write lock, so both would read
    # schema 1 if they read before locking; then one of them fails (its snapshot is stale)
    # or moves the rows twice.
    import threading
    import time

    path = tmp_path / "log.db"
    url = f"sqlite:///{path}"
    rows = schema_1_rows(600)
    if version == "1":
        write_schema_1(url, rows, {})
        # Schema 2's tables exist (as after a start that crashed), so the openers go straight
        # to reading the version.
        engine = sa.create_engine(url)
        metadata.create_all(engine)
        engine.dispose()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    failures: list[BaseException] = []

    def open_log() -> None:
        try:
            LogStore(url).migrate()
        except BaseException as exc:
            failures.append(exc)

    openers = [threading.Thread(target=open_log) for _ in range(2)]
    for opener in openers:
        opener.start()
    time.sleep(0.5)
    holder.execute("COMMIT")
    holder.close()
    for opener in openers:
        opener.join(60)
    assert failures == []
    store = LogStore(url)
    store.open()
    assert store.count() == (len(rows) if version == "1" else 0)
    store.close()


def test_a_late_id_gets_a_row_of_its_own(tmp_path: Path) -> None:
    # A slow client's request: its id was given long before the rows queued around it.
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    counters = [*range(5000, 5300), 7, *range(5300, 5400)]
    store.insert([entry(f"{OURS}-{c:010x}", float(c)) for c in counters], "sha", "pod:1")
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT first_counter, last_counter, size FROM tabship_prediction_batches "
            "ORDER BY first_counter"
        ).all()
    assert [tuple(r) for r in rows] == [(7, 7, 1), (5000, 5399, 400)]
    assert len(store.batches_of([f"{OURS}-{7:010x}", f"{OURS}-{5123:010x}"])) == 2


def test_a_lone_surrogate_in_a_record_reads_back(tmp_path: Path) -> None:
    # The JSON reader takes "\udc80" (orjson does not): the request is answered and logged,
    # and the window must still read.
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    fields = (f"{PREFIX}-1", 5.0, "r", "/predict_api", {"region": "\udc80"}, 1.0, None, [], 0.5)
    store.insert([(f"{PREFIX}-1", 5.0, entry_text(fields))], "sha", "pod:1")
    (row,) = store.rows(None, 0)
    assert row.input == {"region": "\udc80"}


def test_a_migrate_command_and_a_server_that_refuses_schema_1(
    tmp_path: Path, tiny_model: Any
) -> None:
    from typer.testing import CliRunner

    from tabship.cli import app as cli

    url = f"sqlite:///{tmp_path / 'log.db'}"
    rows = schema_1_rows(30)
    write_schema_1(url, rows, {})
    runner = CliRunner()
    serve = runner.invoke(
        cli, ["serve", str(tiny_model.artifact.directory), "--log-db", url, "--port", "1"]
    )
    assert serve.exit_code == 1 and "tabship log migrate" in serve.output
    model = str(tiny_model.artifact.directory)
    for command in (["monitor", model], ["log", "export", model, "-o", str(tmp_path / "r.csv")]):
        done = runner.invoke(cli, [*command, "--log-db", url])
        assert done.exit_code == 1 and "tabship log migrate" in done.output
    done = runner.invoke(cli, ["log", "migrate", "--log-db", url])
    assert done.exit_code == 0, done.output
    assert f"moved {len(rows)} logged predictions" in done.output
    again = runner.invoke(cli, ["log", "migrate", "--log-db", url])
    assert "nothing to move" in again.output


@contextmanager
def as_another_user() -> Iterator[None]:
    """The block run as `nobody` when the tests run as root, for whom no file is read-only
    (the saved user id stays root's, so the block's end takes it back)."""
    if os.geteuid() != 0:
        yield
        return
    nobody, groups = pwd.getpwnam("nobody"), os.getgroups()
    os.setgroups([])
    os.setresgid(nobody.pw_gid, nobody.pw_gid, 0)
    os.setresuid(nobody.pw_uid, nobody.pw_uid, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(groups)


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder another user can enter (pytest's own are private to the user running it)."""
    folder = Path(tempfile.mkdtemp(prefix="tabship-log-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for inside, names, _ in os.walk(folder):
            Path(inside).chmod(0o755)
            for name in names:
                (Path(inside) / name).chmod(0o755)
        shutil.rmtree(folder)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    with shared_folder() as folder:
        yield folder


def test_a_log_that_cannot_be_written_stops_the_server_at_once(
    open_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Once only a warning ("unreachable for now ... serving anyway"): every row then waited
    # for ever and /monitor and /v1/feedback answered 503.
    shelf, locked = open_folder / "shelf", open_folder / "locked"
    for folder in (shelf, locked):
        folder.mkdir()
        check_log_db(f"sqlite:///{folder / 'log.db'}")  # a log, made as a server makes it
    shelf.chmod(0o777)
    (shelf / "log.db").chmod(0o444)
    (locked / "log.db").chmod(0o666)
    locked.chmod(0o555)
    cases = [
        (shelf / "log.db", "is read-only: the log cannot be written there"),
        (locked / "log.db", "its folder is read-only and cannot be written"),
        (locked / "new.db", "its folder is read-only and cannot be written"),
    ]
    with as_another_user():
        for path, said in cases:
            with pytest.raises(LogDatabaseError, match=said) as refused:
                check_log_db(f"sqlite:///{path}")
            assert str(refused.value).startswith(f"--log-db sqlite:///{path}")
    assert sorted(os.listdir(locked)) == ["log.db"]
    capsys.readouterr()
    # A PostgreSQL server that is down may come back: a warning, and the server starts.
    check_log_db(f"postgresql://tabship:hunter2@127.0.0.1:{free_port()}/log")
    said = capsys.readouterr().err
    assert "is unreachable for now" in said and "hunter2" not in said


def test_a_row_that_is_not_json_stops_the_move_and_leaves_the_log_as_it_was(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from tabship.cli import app as cli

    path = tmp_path / "log.db"
    rows = schema_1_rows(20)
    rows[7]["input"] = "not json at all"
    write_schema_1(f"sqlite:///{path}", rows, {rows[3]["id"]: 1.0})

    def contents() -> list[Any]:
        with sqlite3.connect(path) as db:
            return list(db.iterdump())

    before = contents()
    done = CliRunner().invoke(cli, ["log", "migrate", "--log-db", f"sqlite:///{path}"])
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert (
        f"row id {rows[7]['id']!r}: its input is not JSON ('not json at all'); nothing was "
        "moved: fix or delete that row and run migrate again"
    ) in done.output
    assert contents() == before  # no new table, version 1, every row where it was


def test_counts_are_by_model_from_the_windows_start(tmp_path: Path) -> None:
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    store.insert([entry(f"{PREFIX}-{c:x}", 100.0 + c) for c in range(1, 11)], "a" * 64, "p:1")
    store.insert([entry(f"{PREFIX}-{c:x}", 100.0 + c) for c in range(11, 14)], "b" * 64, "p:1")
    # The first batch straddles 105: only its entries from 105 on count.
    assert store.counts(105.0) == {"a" * 64: 6, "b" * 64: 3}
    assert store.counts(111.0) == {"b" * 64: 3}
    assert store.counts(200.0) == {}
    store.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    cluster = start_postgres()
    yield cluster
    remove(cluster)


@pytest.mark.slow
def test_a_read_only_store_makes_nothing_and_writes_nothing_on_postgres(
    postgres: Postgres,
) -> None:
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    reader = LogStore(postgres.url, read_only=True)
    with pytest.raises(LogDatabaseError, match="is not a tabship prediction log"):
        reader.open()
    assert postgres.sql(tables, "tabship") == "0"
    writer = LogStore(postgres.url)
    writer.insert([entry(f"{PREFIX}-1", 5.0)], "sha", "pod:1")
    writer.close()
    assert [r.id for r in reader.rows("sha", 0)] == [f"{PREFIX}-1"]
    with reader.engine.connect() as connection, pytest.raises(sa.exc.DBAPIError) as refused:
        connection.exec_driver_sql("CREATE TABLE mine (a integer)")
    assert "read-only transaction" in str(refused.value)
    reader.close()
    # The URL's own options are kept beside it.
    from tabship.monitor.logurl import engine_url, read_only_options

    given = engine_url(f"{postgres.url}?options=-c%20search_path%3Dpublic")
    assert read_only_options(given) == "-c search_path=public -c default_transaction_read_only=on"
