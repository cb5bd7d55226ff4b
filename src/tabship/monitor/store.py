"""The prediction log's reads and writes: batch inserts, feedback, retention, the rows queried.

The database itself (engine, schema, SQLite's settings) is database.py; what the tables hold
is tables.py: one row per written batch of predictions.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tabship.exact_json import loads_exact
from tabship.monitor.database import LogDatabase
from tabship.monitor.handover import hand_over, pieces
from tabship.monitor.logurl import LogDatabaseError, check_sqlite_file
from tabship.monitor.packed import Packed
from tabship.monitor.queries import batches_holding, feedback_of, window_entries
from tabship.monitor.tables import (
    Entry,
    batch_rows,
    batch_values,
    batches_table,
    feedback_table,
    packed_values,
    split_id,
)

# How long feedback's check waits for SQLite's write lock (`LogStore.takes_writes`).
WRITE_PROBE_SECONDS = 0.25


def _go_on() -> None:
    """No hand-over (`LogStore.insert` for a writer catching up)."""


@dataclass(frozen=True)
class LoggedRow:
    """One prediction as read back from the log, with its ground truth when given."""

    id: str
    ts: float
    route: str
    input: dict[str, Any]
    prediction: Any
    warnings: list[str]
    latency_ms: float
    actual: Any = None
    request_id: str = ""
    probabilities: Any = None  # {class: share} for a classifier's prediction


class LogStore(LogDatabase):
    """One database (database.py) as the log uses it: batch inserts, queries for drift and
    export."""

    def __init__(self, url: str, connect_timeout: float = 5.0, read_only: bool = False) -> None:
        super().__init__(url, connect_timeout, read_only)
        # The writing threads' own driver connections, by thread, each with the file
        # generation it opened (`LogDatabase.generation`), and their compiled insert.
        self._raw: dict[int, tuple[Any, int]] = {}
        self._insert_sql: tuple[str, Sequence[str] | None] | None = None

    def insert(
        self,
        entries: Sequence[Entry] | Packed,
        model_sha256: str,
        instance: str,
        polite: bool = True,
    ) -> None:
        """Append one transaction of entries: a batch row for each id prefix among them (one,
        this process's, when the writer hands them over). `polite`: hand the core over
        between the steps (the writer does unless it is catching up)."""
        self.open()
        step = hand_over if polite else _go_on
        if isinstance(entries, Packed):
            values = packed_values(entries, model_sha256, instance)
            if values is not None:  # the writer's usual batch: one row, its text as it came
                step()
                self._insert_row(values)
                return
            entries = entries.entries()
        # The serving thread shares the core: it runs between each step, not after them all.
        rows = batch_rows(entries)
        step()
        with self.engine.begin() as connection:
            for prefix, low, high, chunk in rows:
                values = batch_values(prefix, low, high, chunk, model_sha256, instance)
                step()
                connection.execute(batches_table.insert(), values)
                step()

    def _insert_row(self, values: dict[str, Any]) -> None:
        """One batch row in a transaction of its own, through the driver's connection.

        SQLAlchemy's execute and commit took the GIL back from the serving thread a dozen
        times a batch, each return from the driver's C code (which runs without it) one
        more wait for the loop; the driver's own execute and commit take it back twice.
        A failed connection is dropped (the next batch gets a new one); the driver's error
        is raised as SQLAlchemy's, which the writer tells apart (BatchRefused, DatabaseDown).
        """
        if self._insert_sql is None:
            compiled = batches_table.insert().compile(
                dialect=self.engine.dialect, column_keys=list(values)
            )
            self._insert_sql = str(compiled), compiled.positiontup if compiled.positional else None
        statement, order = self._insert_sql
        dbapi = self.engine.dialect.loaded_dbapi
        thread = threading.get_ident()
        current = self.generation  # read first: a connection made after is of this file
        raw, generation = self._raw.get(thread, (None, current))
        if raw is not None and generation != current:  # its file was replaced
            self._raw.pop(thread, None)
            raw.invalidate()
            raw = None
        try:
            if raw is None:
                raw = self.engine.raw_connection()
                self._raw[thread] = (raw, current)
            cursor = raw.cursor()
            try:
                cursor.execute(statement, [values[k] for k in order] if order else values)
            finally:
                cursor.close()
            raw.commit()
        except dbapi.Error as exc:
            if raw is not None:
                self._raw.pop(thread, None)
                raw.invalidate()
            raise DBAPIError.instance(
                statement, None, exc, dbapi.Error, hide_parameters=True, dialect=self.engine.dialect
            ) from exc

    def batches_of(self, ids: Sequence[str], model_sha256: str | None = None) -> dict[str, int]:
        """The batch holding each of `ids` that is a logged prediction (of that model, when
        given: servers of several models may share one database)."""
        self.open()
        wanted: dict[str, list[tuple[int, str]]] = {}
        for pid in ids:
            prefix, counter = split_id(pid)
            wanted.setdefault(prefix, []).append((counter, pid))
        found: dict[str, int] = {}
        with self.engine.connect() as connection:
            members: dict[int, set[str]] = {}
            for prefix, items in wanted.items():
                for counter, pid in items:
                    for batch, listed in batches_holding(connection, prefix, counter, model_sha256):
                        if batch not in members:
                            members[batch] = set(listed.split(","))
                        if pid in members[batch]:
                            found[pid] = batch
                            break
        return found

    def takes_writes(self, timeout: float = WRITE_PROBE_SECONDS) -> bool:
        """Whether the database takes a write now. SQLite: its write lock can be had within
        `timeout` (another process may hold it: another worker's writer then waits too);
        PostgreSQL takes writes while it answers reads (its rows lock one by one)."""
        name = self.url.database if self.sqlite else None
        if not name or name == ":memory:":
            return True
        try:
            probe = sqlite3.connect(name, timeout=timeout, isolation_level=None)
        except sqlite3.Error:
            return False
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.Error:
            return False
        finally:
            probe.close()
        return True

    def add_feedback(self, pairs: Sequence[tuple[str, Any]], batches: Mapping[str, int]) -> int:
        """Store ground truth by prediction id; a second answer for an id replaces the first.
        How many ids had another answer before (the same one sent again changes nothing)."""
        self.open()
        now = time.time()
        f = feedback_table
        with self.engine.begin() as connection:
            ids = [pid for pid, _ in pairs]
            found = connection.execute(sa.select(f.c.id, f.c.actual).where(f.c.id.in_(ids)))
            before = {pid: text for pid, text in found}
            # As text, so a class stored as "1" by an earlier tabship is the 1 sent now.
            changed = sum(
                1
                for pid, actual in pairs
                if pid in before and str(json.loads(before[pid])) != str(actual)
            )
            connection.execute(f.delete().where(f.c.id.in_(ids)))
            connection.execute(
                feedback_table.insert(),
                [
                    {
                        "id": pid,
                        "ts": now,
                        # As the view writes a prediction: `é`, not its escape.
                        "actual": json.dumps(actual, ensure_ascii=False),
                        "batch": batches[pid],
                    }
                    for pid, actual in pairs
                ],
            )
            return changed

    def delete_before(self, cutoff: float, model_sha256: str | None = None) -> int:
        """Delete predictions older than `cutoff` (epoch seconds), and their feedback: one
        model's (a server's retention: other models' servers may share the database, be
        idle for weeks, and keep theirs longer), or every model's.

        Whole batches go: a batch whose newest entry is older. A batch spans at most a flush
        interval (100 ms), unless the database was down while its entries waited.
        """
        self.open()
        b, f = batches_table, feedback_table
        aged = b.c.ts_last < cutoff
        if model_sha256 is not None:
            aged = sa.and_(aged, b.c.model_sha256 == model_sha256)
        with self.engine.begin() as connection:
            # The batches chosen once: a batch logged meanwhile is neither deleted nor
            # stripped of its feedback.
            chosen = connection.execute(sa.select(b.c.id, b.c.size).where(aged)).all()
            ids = [batch for batch, _ in chosen]
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                connection.execute(f.delete().where(f.c.batch.in_(part)))
                connection.execute(b.delete().where(b.c.id.in_(part)))
            if model_sha256 is None:
                # Feedback moved from schema 1 for a prediction no longer logged has no
                # batch, so no model: only a cleaning of every model's rows takes it.
                connection.execute(f.delete().where(f.c.batch.is_(None), f.c.ts < cutoff))
            return sum(int(size) for _, size in chosen)

    def rows(
        self, model_sha256: str | None, since: float, limit: int | None = None
    ) -> Iterator[LoggedRow]:
        """Logged rows from `since` on, newest first (the newest `limit` of them), with
        feedback joined."""
        self.open()
        with self.engine.connect() as connection:
            found = window_entries(connection, model_sha256, since, limit)
            actual = feedback_of(connection, {batch for _, batch, _, _ in found})
        # A big window is read in a server thread: requests get the core between pieces.
        for _, piece in pieces(found):
            for _, _, _, entry in piece:
                yield LoggedRow(
                    id=entry[0],
                    ts=entry[1],
                    route=entry[3],
                    input=entry[4],
                    prediction=entry[5],
                    probabilities=entry[6],
                    warnings=entry[7],
                    latency_ms=entry[8],
                    actual=actual.get(entry[0]),
                    request_id=entry[2],
                )

    def counts(self, since: float) -> dict[str, int]:
        """Logged predictions from `since` on, by model sha256."""
        self.open()
        b = batches_table
        found: dict[str, int] = {}
        recent = b.c.ts_last >= since
        inside = sa.select(b.c.model_sha256, sa.func.sum(b.c.size)).where(recent)
        # A batch the window's start cuts through is counted entry by entry.
        cut = sa.select(b.c.model_sha256, b.c.entries).where(recent, b.c.ts_first < since)
        with self.engine.connect() as connection:
            query = inside.where(b.c.ts_first >= since).group_by(b.c.model_sha256)
            for model, size in connection.execute(query):
                found[model] = int(size)
            for model, text in connection.execute(cut):
                kept = sum(1 for entry in loads_exact(text.encode()) if entry[1] >= since)
                found[model] = found.get(model, 0) + kept
        return {model: size for model, size in found.items() if size}

    def has_feedback(self, model_sha256: str) -> bool:
        """Whether the log holds an answer for any prediction of this model."""
        self.open()
        f, b = feedback_table, batches_table
        query = sa.select(f.c.id).join(b, f.c.batch == b.c.id)
        with self.engine.connect() as connection:
            found = connection.execute(query.where(b.c.model_sha256 == model_sha256).limit(1))
            return found.first() is not None

    def count(self) -> int:
        """Logged predictions in all."""
        self.open()
        with self.engine.connect() as connection:
            total = sa.select(sa.func.coalesce(sa.func.sum(batches_table.c.size), 0))
            return int(connection.execute(total).scalar_one())

    def close(self) -> None:
        """Close the pool's connections."""
        for raw, _ in list(self._raw.values()):
            raw.close()
        self._raw.clear()
        super().close()


DatabaseDown = (DBAPIError, SQLAlchemyError, OSError)
# Errors where the database answered and refused the rows themselves.
BatchRefused = (sa.exc.IntegrityError, sa.exc.DataError)


def check_log_db(url: str) -> None:
    """Open the log database once before serving: a bad URL, a newer schema or an SQLite file
    that cannot be written is an error; a database that is down is only a warning (the writer
    retries, predictions go on)."""
    import sys

    store = LogStore(url)
    try:
        if store.sqlite:
            check_sqlite_file(store.url, writing=True)
        store.open()
        if store.sqlite:  # what the file's and folder's modes do not say (a -shm of another user's)
            with store.engine.connect() as connection:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                connection.exec_driver_sql("ROLLBACK")
    except LogDatabaseError:
        raise
    except DatabaseDown as exc:
        if _read_only(exc):
            reason = str(getattr(exc, "orig", exc))[:100]
            raise LogDatabaseError(
                f"--log-db {store.shown} is read-only: the log cannot be written there "
                f"({reason}); give a file this user can write"
            ) from None
        sys.stderr.write(
            f"warning: prediction log {store.shown} is unreachable for now "
            f"({type(exc).__name__}); serving anyway, rows queue and are retried\n"
        )
    finally:
        store.close()


def _read_only(exc: BaseException) -> bool:
    """An SQLite error that no retry mends: its file or folder cannot be written."""
    name = getattr(getattr(exc, "orig", None), "sqlite_errorname", "")
    return isinstance(name, str) and name.startswith("SQLITE_READONLY")
