"""One-row entries laid end to end: the loop's slabs, the writer's packed batches, their rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tabship.artifact import Artifact
from tabship.monitor import backlog as backlog_module
from tabship.monitor import handover
from tabship.monitor import window as window_module
from tabship.monitor.ids import PREFIX, Logged, prediction_ids
from tabship.monitor.packed import Packed
from tabship.monitor.profile import load_profile
from tabship.monitor.store import LogStore
from tabship.monitor.tables import Entry, entry_text, packed_values
from tabship.monitor.window import RecentInputs
from tabship.monitor.writer import LogWriter
from tabship.workflow import TrainedModel

PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


def entry(pid: str, ts: float, record: dict[str, Any] = PATIENT) -> Entry:
    return pid, ts, entry_text((pid, ts, pid, "/predict_api", record, 1.5, None, [], 0.25))


def view_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return list(
            db.execute(
                "SELECT id, ts, request_id, route, input, prediction, warnings, latency_ms "
                "FROM tabship_predictions ORDER BY id"
            )
        )


def test_a_packed_batch_gives_back_its_entries_and_ids() -> None:
    entries = [entry(pid, 10.0 + n) for n, pid in enumerate(prediction_ids(7))]
    # What the standard library writes (spaces after commas) and an id with escapes in it.
    odd = 'say "hi"\\'
    entries.append((odd, 30.0, json.dumps([odd, 30.0, "r", "/p", {}, 1, None, [], 1]).encode()))
    packed = Packed.of(entries)
    assert packed.entries() == entries
    assert json.loads(packed.json_array()) == [json.loads(text) for _, _, text in entries]
    assert len(packed) == 8


def test_own_ids_are_read_whole_or_not_at_all() -> None:
    ids = prediction_ids(5)
    found = Packed.of([entry(pid, 1.0) for pid in ids]).own_ids()
    assert found == (",".join(ids), int(ids[0][-10:], 16), int(ids[-1][-10:], 16))
    # Any id not this process's fixed-width kind sends the batch the general way.
    for stranger in ("id-0", f"{PREFIX}-1", f"{PREFIX}-00000000zz", f"{PREFIX}-000000000a\\"):
        packed = Packed.of([entry(ids[0], 1.0), entry(stranger, 2.0)])
        assert packed.own_ids() is None
        assert [pid for pid, _, _ in packed.entries()] == [ids[0], stranger]
    assert Packed.of([]).own_ids() is None


def test_a_slabs_batch_carries_its_ids_and_reads_them_as_the_text_would(
    tmp_path: Path,
) -> None:
    """The loop writes each entry's id beside its JSON; the writer reads the batch's ids and
    counters from those, and any id not this process's fixed-width kind sends it the general
    way, as the text would have."""
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    wide = f"{PREFIX}-{16**10:011x}"  # a counter past ten hex digits
    other = ("0" if PREFIX[0] != "0" else "1") * 12 + "-0000000001"  # another process's
    odd = [f"{PREFIX}-00000000zz", f"{PREFIX}-0000,00000", f"{PREFIX}-0000-00000"]
    for strangers in ([], ["id-0"], [wide], [other], *([pid] for pid in odd)):
        writer = LogWriter(store, "sha")
        ids = [*prediction_ids(30), *strangers]
        for pid in ids:  # no event loop: each entry goes into the slab as it is submitted
            writer.submit(Logged([pid], [PATIENT], [1.5], None, []), "/predict_api", "", 0.001)
        packed = writer._slab.pack()
        assert packed.id_text == ",".join(ids).encode()
        from_text = Packed(packed.text, packed.times, packed.ends).own_ids()
        assert packed.own_ids() == from_text
        if strangers:
            assert from_text is None
        else:
            assert from_text == (",".join(ids), int(ids[0][-10:], 16), int(ids[-1][-10:], 16))
        store.insert(packed, "sha", "pod:1")
    assert store.count() == 216
    assert store.batches_of([wide, "id-0"]).keys() == {wide, "id-0"}


def test_a_packed_batch_is_one_row_that_reads_as_the_entries_did(tmp_path: Path) -> None:
    entries = [entry(pid, 5.0 + n) for n, pid in enumerate(prediction_ids(40))]
    packed, listed = (
        LogStore(f"sqlite:///{tmp_path / 'a.db'}"),
        LogStore(f"sqlite:///{tmp_path / 'b.db'}"),
    )
    values = packed_values(Packed.of(entries), "sha", "pod:1")
    assert values is not None and values["size"] == 40 and values["ts_last"] == 44.0
    packed.insert(Packed.of(entries), "sha", "pod:1")
    listed.insert(entries, "sha", "pod:1")
    assert view_rows(tmp_path / "a.db") == view_rows(tmp_path / "b.db")
    assert len(view_rows(tmp_path / "a.db")) == 40
    assert packed.batches_of([entries[17][0]]) == {entries[17][0]: 1}
    # Counters far apart (a request answered long after its ids were given) are split.
    far = [entry(f"{PREFIX}-{c:010x}", float(c)) for c in (1, 2, 5000)]
    assert packed_values(Packed.of(far), "sha", "pod:1") is None
    packed.insert(Packed.of(far), "sha", "pod:1")
    assert packed.count() == 43


def test_entries_fill_slabs_by_count_and_by_bytes_and_all_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slab of 2,000 bytes holds a few entries; one longer than a slab waits on its own.
    monkeypatch.setattr(backlog_module, "SLAB_BYTES", 2000)
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", batch_rows=7, flush_seconds=0.02)
    submitted = []
    for number in range(60):
        record = {**PATIENT, "note": "x" * (3000 if number == 33 else number * 11)}
        logged = Logged(prediction_ids(1), [record], [float(number)], None, [])
        writer.submit(logged, "/predict_api", "", 0.001)
        submitted.append((logged.ids[0], record))
    writer.start()
    assert writer.flush(timeout=30)
    writer.close()
    assert (writer.stats.written, writer.stats.dropped) == (60, 0)
    logged_rows = {row.id: row for row in store.rows(None, 0)}
    assert {pid: logged_rows[pid].input for pid, _ in submitted} == dict(submitted)


@pytest.mark.parametrize("per_turn", [1, 5, 40])
def test_a_loop_turns_entries_are_stored_together_as_they_would_be_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_turn: int
) -> None:
    """One-row requests answered in one loop turn are made into entries at the turn's end, in
    one copy; across slab ends (by count and by bytes) and with one entry past a slab, every
    entry reads back with its own id, time and values."""
    import asyncio

    monkeypatch.setattr(backlog_module, "SLAB_BYTES", 2000)
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", batch_rows=7, flush_seconds=0.02)
    submitted: dict[str, dict[str, Any]] = {}

    async def serve() -> list[int]:
        waiting = []
        for number in range(60):
            record = {**PATIENT, "note": "x" * (3000 if number == 33 else number % 9 * 23)}
            logged = Logged(prediction_ids(1), [record], [float(number)], None, [])
            writer.submit(logged, "/predict_api", "", 0.001)
            submitted[logged.ids[0]] = record
            if number % per_turn == per_turn - 1:
                waiting.append(writer._queued)  # nothing stored before the turn's end
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        return waiting

    waiting = asyncio.run(serve())
    assert waiting == [per_turn * turn for turn in range(len(waiting))]
    writer.start()
    assert writer.flush(timeout=30)
    writer.close()
    assert (writer.stats.written, writer.stats.dropped) == (60, 0)
    rows = {row.id: row for row in store.rows(None, 0)}
    assert {pid: rows[pid].input for pid in submitted} == submitted
    assert [rows[pid].prediction for pid in submitted] == [float(n) for n in range(60)]


def test_a_turn_still_open_at_close_is_written(tmp_path: Path) -> None:
    import asyncio

    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha")
    writer.start()

    async def last_requests() -> None:
        for _ in range(3):
            writer.submit(Logged(prediction_ids(1), [PATIENT], [1.0], None, []), "/x", "", 0.1)
        writer.close()  # before the turn's end: a shutdown in the middle of a turn

    asyncio.run(last_requests())
    assert store.count() == 3


def test_a_turn_keeps_the_queues_bound_and_drops_only_what_json_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bound is checked once a turn: a turn past the room left stores what fits and drops
    and counts the rest. In a turn, an integer past 64 bits (which orjson refuses) is written
    by the standard library's encoder and a value no JSON holds drops its row alone."""
    import asyncio

    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}")
    writer = LogWriter(store, "sha", max_queue_rows=20, batch_rows=500, flush_seconds=3600)
    values: list[Any] = [float(number) for number in range(12)]
    values[3], values[7] = 2**70, object()

    async def turn(outputs: list[Any]) -> list[str]:
        ids = []
        for value in outputs:
            logged = Logged(prediction_ids(1), [PATIENT], [value], None, [])
            writer.submit(logged, "/predict_api", "", 0.001)
            ids.append(logged.ids[0])
        await asyncio.sleep(0)
        return ids

    first = asyncio.run(turn(values))
    assert (writer._queued, writer.stats.dropped) == (11, 1)
    second = asyncio.run(turn([float(number) for number in range(15)]))
    assert (writer._queued, writer.stats.dropped) == (20, 7)
    said = capsys.readouterr().err
    assert "a request's rows dropped" in said and said.count("queue is full") == 1
    writer.start()
    assert writer.flush(timeout=30)
    writer.close()
    rows = {row.id: row for row in store.rows(None, 0)}
    kept = [pid for pid in first if pid != first[7]] + second[:9]
    assert sorted(rows) == sorted(kept)
    assert rows[first[3]].prediction == 2**70
    assert [rows[pid].prediction for pid in second[:9]] == [float(n) for n in range(9)]


def test_the_drift_window_keeps_the_newest_rows_from_the_cutoff(
    tiny_model: TrainedModel,
) -> None:
    profile = load_profile(Artifact.open(tiny_model.artifact.directory))
    assert profile is not None
    window = RecentInputs(profile)
    window.size = 1000
    for start in range(0, 1500, 300):  # five batches of 300 rows, times 0..1499
        batch = [
            entry(pid, float(start + n), {**PATIENT, "age": start + n})
            for n, pid in enumerate(prediction_ids(300))
        ]
        window.extend(Packed.of(batch))
    assert len(window.batches) == 4  # the oldest batch is not needed for the newest 1,000
    columns, predictions = window.since(0.0)
    assert columns["age"] == list(range(500, 1500)) and len(predictions) == 1000
    columns, _ = window.since(1234.0)
    assert columns["age"] == list(range(1234, 1500))


def test_the_drift_window_is_read_a_piece_at_a_time(
    tiny_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = load_profile(Artifact.open(tiny_model.artifact.directory))
    assert profile is not None
    window = RecentInputs(profile)
    batch = [
        entry(pid, float(n), {**PATIENT, "age": n}) for n, pid in enumerate(prediction_ids(500))
    ]
    window.extend(Packed.of(batch))
    read: list[int] = []

    def counted(data: bytes) -> Any:
        rows = json.loads(data)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(window_module, "loads_exact", counted)
    columns, _ = window.since(100.0)
    # Parsing the whole 500-row text at once held the serving thread for a millisecond.
    assert sum(read) == 500 and max(read) <= handover.PIECE_ROWS
    assert columns["age"] == list(range(100, 500))
