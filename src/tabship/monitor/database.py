"""The prediction log's database: SQLAlchemy Core over SQLite (embedded) or PostgreSQL (psycopg).

The schema is created on first use and its version recorded in `tabship_log_meta`; a database
written by a newer tabship is refused rather than half-understood, and one written by schema 1
is moved to schema 2 in one transaction (see migration.py). SQLite runs in WAL mode with a busy
timeout, so several worker processes can append to one file. What is written and read there is
store.py; what the tables hold is tables.py.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tabship.monitor.logurl import (
    LogDatabaseError,
    engine_url,
    read_only_options,
    read_only_uri,
    shown_url,
)
from tabship.monitor.tables import (
    SCHEMA_VERSION,
    SQLITE_VIEW_MARK,
    VIEW,
    meta_table,
    metadata,
    view_sql,
)

SQLITE_BUSY_MS = 10_000
SQLITE_PAGE_BYTES = 16384
# WAL pages a commit may leave before it copies them into the database (SQLite's checkpoint;
# its default, 1,000). With 16 KB pages one commit in about thirty copies 16 MB: 200 ms of a
# writer sharing a saturated core, and four clients of 1,000-row requests to a one-core
# server overflowed the queue meanwhile, until batch answers waited for a writer behind
# (backlog.BACKLOG_SHARE). Every 100 pages the copying was the same in smaller pieces, each
# with its syncs: 0.03 of the throughput at 32 connections (bench/README.md, sessions 14, 17).
SQLITE_CHECKPOINT_PAGES = 1000
# How often a server's SQLite file is checked to still be the one it opened: a file deleted
# (or replaced) under a running server took every later row and feedback with it, unseen.
FILE_CHECK_SECONDS = 1.0


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    # A new file's pages (an existing file keeps its own): a batch row (500 entries, about
    # 90 KB) spans 6 pages, not 23, each written, checksummed and checkpointed on its own.
    # Larger pages cost more than they save: each commit also writes the three indexes'
    # pages whole (drained in-thread, 840,000 rows/s at 16 KB against 740,000 at 4 and 64 KB).
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES}")
    # Set once per file: setting it again takes a lock, so a new connection (a read of the
    # monitor page, a writer's after a failure) failed at once while another process wrote.
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    # WAL + NORMAL survives a process crash; only a power loss can drop the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    cursor.close()


class LogDatabase:
    """One database's engine and schema: the schema checked (or made) on open.

    `read_only` (the commands that read a log): the database is opened so that it cannot be
    written (SQLite's `mode=ro`, PostgreSQL's read-only transactions) and nothing is made in
    it; one without tabship's meta table is refused, not given tabship's tables.
    """

    def __init__(self, url: str, connect_timeout: float = 5.0, read_only: bool = False) -> None:
        self.url = engine_url(url)
        self.shown = shown_url(self.url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.read_only = read_only
        args: dict[str, Any] = {}
        if self.sqlite:
            args["timeout"] = SQLITE_BUSY_MS / 1000  # the driver's busy timeout, no PRAGMA
        else:
            args["connect_timeout"] = max(1, int(connect_timeout))
            if read_only:
                args["options"] = read_only_options(self.url)
        if self.sqlite and read_only:
            uri = read_only_uri(Path(str(self.url.database)))
            self.engine: Engine = sa.create_engine(
                self.url,
                creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False, **args),
            )
        else:
            self.engine = sa.create_engine(
                self.url, connect_args=args, pool_pre_ping=not self.sqlite
            )
        if self.sqlite and not read_only:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.ready = False
        # The SQLite file this opened (device, inode), checked every FILE_CHECK_SECONDS, and
        # how many times it was found replaced (a thread's own connection is then renewed).
        self._file: tuple[int, int] | None = None
        self._file_checked = 0.0
        self.generation = 0
        self._replaced = False
        self._reopening = threading.Lock()

    def open(self) -> None:
        """Create the schema if absent (read-only: refuse a database that is not a log);
        refuse an older one (see `migrate`) or a newer one. A SQLite file deleted or
        replaced since is left for a new one at its path, said on stderr."""
        if self.ready:
            if self._file is not None and time.monotonic() >= self._file_checked:
                with self._reopening:  # the writer's threads and the monitor's share it
                    if self.ready and time.monotonic() >= self._file_checked:
                        self._check_file()
            return
        if self._replaced:
            with self._reopening:
                if self._replaced:
                    self._reopen()
            return
        self._open()

    def _reopen(self) -> None:
        """Open what is at the path now; what is no log of ours is 'down' until one is."""
        try:
            self._open()
        except Exception as exc:
            self.engine.dispose()  # its connections may hold what is at the path now
            if isinstance(exc, LogDatabaseError):
                raise OSError(str(exc)) from None
            raise
        self._replaced = False

    def _open(self) -> None:
        if self.read_only:
            tables = self.log_tables()
            found = self._version(record=False)
        else:
            self._create_tables([meta_table])
            found = self._version()
        if found > SCHEMA_VERSION:
            raise LogDatabaseError(
                f"the log database {self.shown} has schema version {found}, written by a newer "
                f"tabship; this one writes version {SCHEMA_VERSION}: upgrade tabship or use "
                "another --log-db"
            )
        if found < SCHEMA_VERSION:
            # Not moved on the way: a server's start would wait on it (and a pod's probes
            # kill it), and a read-only command would rewrite a production database.
            raise LogDatabaseError(
                f"the log database {self.shown} has schema version {found}, written by an "
                "earlier tabship: stop the servers writing to it, then run `tabship log migrate "
                f"--log-db URL` to move it to version {SCHEMA_VERSION} (one transaction)"
            )
        if self.read_only:
            missing = {t.name for t in metadata.sorted_tables} - tables
            if missing:  # a server stopped between the meta table and the others
                raise LogDatabaseError(
                    f"the log database {self.shown} has no {min(missing)} table yet: start a "
                    "server on it once, or check --log-db"
                )
        else:
            self._create_tables(metadata.sorted_tables)
            self._create_view()
            self._file = self._file_identity()
            self._file_checked = time.monotonic() + FILE_CHECK_SECONDS
        self.ready = True

    def _file_identity(self) -> tuple[int, int] | None:
        """The SQLite file's device and inode; None for PostgreSQL, memory, or no file."""
        name = self.url.database if self.sqlite else None
        if not name or name == ":memory:":
            return None
        try:
            found = Path(name).stat()
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def _check_file(self) -> None:
        self._file_checked = time.monotonic() + FILE_CHECK_SECONDS
        if self._file_identity() == self._file:
            return
        print(
            f"tabship (process {os.getpid()}): the log database {self.shown} was deleted, "
            "moved or replaced while this server ran; logging moves to the file now at that "
            "path (made if none; rows written since then went to the old file)",
            file=sys.stderr,
            flush=True,
        )
        self._file = None
        self.ready = False
        self._replaced = True
        self.generation += 1  # threads' own connections (LogStore's) hold the old file too
        self.engine.dispose()  # the pool's connections hold the old file open
        self._reopen()

    def log_tables(self) -> set[str]:
        """The names of the database's tables; a database without tabship's meta table (a
        new file, another application's) is refused."""
        tables = set(sa.inspect(self.engine).get_table_names())
        if meta_table.name not in tables:
            raise LogDatabaseError(
                f"the log database {self.shown} is not a tabship prediction log (no "
                f"{meta_table.name} table); check --log-db"
            )
        return tables

    def migrate(self) -> int:
        """Move a schema-1 log to this schema (see migration.py); the predictions moved."""
        from tabship.monitor.migration import migrate

        self._create_tables([meta_table])
        found = self._version()
        moved = 0
        if found < SCHEMA_VERSION:
            moved = migrate(self.engine, self.sqlite)
        self.open()
        return moved

    def _create_tables(self, tables: Sequence[sa.Table]) -> None:
        for attempt in range(5):
            try:
                metadata.create_all(self.engine, tables=tables, checkfirst=True)
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
                # Two workers creating the schema at once: the loser sees the winner's tables.
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _version(self, record: bool = True) -> int:
        """The recorded schema version; a new database is recorded as this one's (`record`),
        else has none."""
        with self.engine.begin() as connection:
            found = connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
            if found is None and record:
                try:
                    connection.execute(
                        meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                except sa.exc.IntegrityError:  # another worker recorded it first: this one's
                    found = str(SCHEMA_VERSION)
        if found is None and not record:
            raise LogDatabaseError(
                f"the log database {self.shown} records no schema version in "
                f"{meta_table.name}; check --log-db"
            )
        if found is None:
            return SCHEMA_VERSION
        if not str(found).isdigit():
            raise LogDatabaseError(
                f"the log database {self.shown} records schema version {str(found)[:40]!r}, "
                "which no tabship writes: its tabship_log_meta table was changed by hand, or "
                "the database belongs to something else; use another --log-db"
            )
        return int(found)

    def _create_view(self) -> None:
        for attempt in range(5):
            outdated = self.sqlite and self._sqlite_view_outdated()
            if VIEW in sa.inspect(self.engine).get_view_names() and not outdated:
                return
            try:
                with self.engine.begin() as connection:
                    if outdated:
                        connection.exec_driver_sql(f"DROP VIEW IF EXISTS {VIEW}")
                    connection.exec_driver_sql(view_sql(self.sqlite))
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.InternalError):
                # Two pods creating it at once: PostgreSQL refuses the second.
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _sqlite_view_outdated(self) -> bool:
        """Whether a SQLite log has the view an earlier tabship made (booleans read as 1)."""
        with self.engine.connect() as connection:
            found = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?", (VIEW,)
            ).scalar()
        return found is not None and SQLITE_VIEW_MARK not in found

    def close(self) -> None:
        """Close the pool's connections."""
        self.engine.dispose()
