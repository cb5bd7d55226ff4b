"""The prediction log's database: SQLAlchemy Core over SQLite (embedded) or PostgreSQL (psycopg).

The schema is created on first use and its version recorded in `tabship_log_meta`; a database
written by a newer tabship is refused rather than half-understood. SQLite runs in WAL mode
with a busy timeout, so several worker processes can append to one file.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from tabship.errors import ConfigError
from tabship.monitor.handover import hand_over

SCHEMA_VERSION = 1
SQLITE_BUSY_MS = 10_000
# Rows per driver call within one batch's transaction. For SQLite one multi-row statement
# binds its values in C and gives up the GIL once (executemany gives it up once a row, and
# each time the event loop's thread must win it back); between calls the writer thread
# hands the core back (see `hand_over`), so a request never waits behind a whole batch.
INSERT_CHUNK_ROWS = 64

metadata = sa.MetaData()
meta_table = sa.Table(
    "tabship_log_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
predictions_table = sa.Table(
    "tabship_predictions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("model_sha256", sa.String(64), nullable=False),
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("prediction", sa.Text, nullable=False),
    sa.Column("probabilities", sa.Text),
    sa.Column("warnings", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
)
feedback_table = sa.Table(
    "tabship_feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("actual", sa.Text, nullable=False),
)


# The order of the tuples the writer inserts.
ROW_COLUMNS = tuple(column.name for column in predictions_table.columns)


class LogDatabaseError(ConfigError):
    """The log database cannot be used as configured (bad URL, newer schema)."""


def engine_url(url: str) -> sa.URL:
    """The SQLAlchemy URL for a --log-db value; postgresql:// means psycopg 3."""
    if url.startswith("postgres://"):  # what Heroku and some providers hand out
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LogDatabaseError(
            f"--log-db {redact(url)!r} is not a database URL; use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise LogDatabaseError(
                "--log-db sqlite needs a file: sqlite:///relative.db or sqlite:////abs/path.db"
            )
        return parsed
    raise LogDatabaseError(
        f"--log-db {redact(url)!r}: the log database must be sqlite:///PATH or postgresql://..."
    )


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    # WAL + NORMAL survives a process crash; only a power loss can drop the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


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


class LogStore:
    """One database: schema check on open, batched inserts, queries for drift and export."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = engine_url(url)
        self.shown = self.url.render_as_string(hide_password=True)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        args: dict[str, Any] = {}
        if self.sqlite:
            args["timeout"] = SQLITE_BUSY_MS / 1000
        else:
            args["connect_timeout"] = max(1, int(connect_timeout))
        self.engine: Engine = sa.create_engine(
            self.url, connect_args=args, pool_pre_ping=not self.sqlite
        )
        if self.sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.ready = False
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._row_marks = f"({', '.join([mark] * len(ROW_COLUMNS))})"
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        # By row count: each size is one statement, prepared once by the driver.
        self._insert_sql: dict[int, str] = {}

    def open(self) -> None:
        """Create the schema if absent, record its version, refuse a newer one."""
        if self.ready:
            return
        for attempt in range(5):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
                # Two workers creating the schema at once: the loser sees the winner's tables.
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        with self.engine.begin() as connection:
            found = connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
            if found is None:
                try:
                    connection.execute(
                        meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                except sa.exc.IntegrityError:
                    found = str(SCHEMA_VERSION)
        if found is not None and int(found) > SCHEMA_VERSION:
            raise LogDatabaseError(
                f"the log database {self.shown} has schema version {found}, written by a newer "
                f"tabship; this one writes version {SCHEMA_VERSION}: upgrade tabship or use "
                "another --log-db"
            )
        self.ready = True

    def insert(self, rows: Sequence[Mapping[str, Any] | tuple[Any, ...]]) -> None:
        """Append prediction rows (tuples in ROW_COLUMNS order, or dicts) in one transaction.

        SQLite takes each chunk as one multi-row statement; psycopg takes it as executemany
        (pipelined, and its per-parameter work makes a 700-parameter statement ten times
        slower).
        """
        self.open()
        tuples = [tuple(r[c] for c in ROW_COLUMNS) if isinstance(r, Mapping) else r for r in rows]
        with self.engine.begin() as connection:
            # The driver's own cursor: SQLAlchemy's per-statement work (about 10 µs) would cost
            # the serving core more than binding the rows does. Its errors are wrapped as
            # SQLAlchemy wraps them, so the writer tells refused rows from a database down.
            cursor = connection.connection.cursor()
            for start in range(0, len(tuples), INSERT_CHUNK_ROWS):
                chunk = tuples[start : start + INSERT_CHUNK_ROWS]
                try:
                    if self.sqlite:
                        values = tuple(itertools.chain.from_iterable(chunk))
                        cursor.execute(self._insert_statement(len(chunk)), values)
                    else:
                        cursor.executemany(self._insert_statement(1), chunk)
                except self._driver_error as exc:
                    raise DBAPIError.instance(
                        "INSERT INTO tabship_predictions", None, exc, self._driver_error
                    ) from exc
                hand_over()

    def _insert_statement(self, rows: int) -> str:
        sql = self._insert_sql.get(rows)
        if sql is None:
            sql = self._insert_sql[rows] = (
                f"INSERT INTO {predictions_table.name} ({', '.join(ROW_COLUMNS)}) VALUES "  # noqa: S608 - our own names
                + ", ".join([self._row_marks] * rows)
            )
        return sql

    def known_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are logged predictions."""
        self.open()
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(predictions_table.c.id).where(predictions_table.c.id.in_(list(ids)))
            )
            return {row[0] for row in found}

    def add_feedback(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """Store ground truth by prediction id; a second answer for an id replaces the first."""
        self.open()
        now = time.time()
        with self.engine.begin() as connection:
            ids = [pid for pid, _ in pairs]
            connection.execute(feedback_table.delete().where(feedback_table.c.id.in_(ids)))
            connection.execute(
                feedback_table.insert(),
                [{"id": pid, "ts": now, "actual": json.dumps(actual)} for pid, actual in pairs],
            )

    def delete_before(self, cutoff: float) -> int:
        """Delete predictions (and their feedback) older than `cutoff` (epoch seconds)."""
        self.open()
        with self.engine.begin() as connection:
            old = sa.select(predictions_table.c.id).where(predictions_table.c.ts < cutoff)
            connection.execute(feedback_table.delete().where(feedback_table.c.id.in_(old)))
            result = connection.execute(
                predictions_table.delete().where(predictions_table.c.ts < cutoff)
            )
            return int(result.rowcount or 0)

    def rows(
        self, model_sha256: str | None, since: float, limit: int | None = None
    ) -> Iterator[LoggedRow]:
        """Logged rows from `since` on (newest `limit` of them), with feedback joined."""
        self.open()
        p, f = predictions_table, feedback_table
        query = (
            sa.select(
                p.c.id,
                p.c.ts,
                p.c.route,
                p.c.input,
                p.c.prediction,
                p.c.warnings,
                p.c.latency_ms,
                f.c.actual,
                p.c.request_id,
            )
            .select_from(p.outerjoin(f, f.c.id == p.c.id))
            .where(p.c.ts >= since)
            .order_by(p.c.ts.desc())
        )
        if model_sha256:
            query = query.where(p.c.model_sha256 == model_sha256)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            for number, row in enumerate(connection.execute(query)):
                if number % 1000 == 999:
                    hand_over()  # a big window is read in a server thread: let requests in
                yield LoggedRow(
                    id=row.id,
                    ts=row.ts,
                    route=row.route,
                    input=json.loads(row.input),
                    prediction=json.loads(row.prediction),
                    warnings=json.loads(row.warnings),
                    latency_ms=row.latency_ms,
                    actual=None if row.actual is None else json.loads(row.actual),
                    request_id=row.request_id,
                )

    def count(self) -> int:
        """Logged predictions in all."""
        self.open()
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count()).select_from(predictions_table)
                ).scalar_one()
            )

    def close(self) -> None:
        """Close the pool's connections."""
        self.engine.dispose()


DatabaseDown = (DBAPIError, SQLAlchemyError, OSError)
# Errors where the database answered and refused the rows themselves.
BatchRefused = (sa.exc.IntegrityError, sa.exc.DataError)


def check_log_db(url: str) -> None:
    """Open the log database once before serving: a bad URL or a newer schema is an error;
    a database that is down is only a warning (the writer retries, predictions go on)."""
    import sys

    store = LogStore(url)
    try:
        store.open()
    except LogDatabaseError:
        raise
    except DatabaseDown as exc:
        sys.stderr.write(
            f"warning: prediction log {store.shown} is unreachable for now "
            f"({type(exc).__name__}); serving anyway, rows queue and are retried\n"
        )
    finally:
        store.close()
