"""Moving a prediction log from schema 1 (one row per prediction) to schema 2 (one per batch).

Run by `tabship log migrate`, once, with the servers writing to the log stopped: in one
transaction that holds the write lock (SQLite's, or on PostgreSQL the log's three tables'),
so a second migrate waits and then finds version 2, and a server still writing schema 1
waits and then has its rows refused (dropped and counted) rather than lost unseen. Every
schema-1 row becomes an entry of a batch (grouped by model, process and id prefix, in runs of
near counters, see tables.runs), feedback is pointed at its batch, and the old table gives its
name to the view that reads the batches the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tabship.feature import shown
from tabship.monitor.logurl import LogDatabaseError
from tabship.monitor.tables import (
    SCHEMA_VERSION,
    VIEW,
    batch_values,
    batches_table,
    entry_text,
    feedback_table,
    meta_table,
    metadata,
    runs,
    split_id,
)

BATCH = 500
PAGE = 5000
_OLD_COLUMNS = (
    "id, ts, request_id, model_sha256, route, instance, input, prediction, probabilities, "
    "warnings, latency_ms"
)
_PAGE_QUERY = sa.text(
    f"SELECT {_OLD_COLUMNS} FROM {VIEW} WHERE id > :after ORDER BY id LIMIT {PAGE}"  # noqa: S608
)


def migrate(engine: Engine, sqlite: bool) -> int:
    """Move a schema-1 log to this schema, unless another process already has; the
    predictions moved."""
    with engine.begin() as connection:
        # The write lock first, then the version again: it may have moved while we waited.
        if sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql(
                f"LOCK TABLE tabship_log_meta, {VIEW}, tabship_feedback IN EXCLUSIVE MODE"
            )
        found = connection.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar()
        if found != "1":
            return 0
        # In the move's transaction: a refused move leaves no new table behind.
        metadata.create_all(connection, checkfirst=True)
        if "batch" not in {
            c["name"] for c in sa.inspect(connection).get_columns("tabship_feedback")
        }:
            connection.exec_driver_sql("ALTER TABLE tabship_feedback ADD COLUMN batch INTEGER")
            connection.exec_driver_sql(
                "CREATE INDEX ix_tabship_feedback_batch ON tabship_feedback (batch)"
            )
        moved = 0
        for key, entries in _batches(connection):
            _move(connection, key, entries)
            moved += len(entries)
        connection.exec_driver_sql(f"DROP TABLE {VIEW}")
        connection.execute(
            meta_table.update()
            .where(meta_table.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
    return moved


def _batches(
    connection: Connection,
) -> Iterator[tuple[tuple[str, str, str], list[tuple[str, float, bytes]]]]:
    """The old rows as batch entries, keyed by (model, instance, prefix), in id order."""
    key: tuple[str, str, str] | None = None
    entries: list[tuple[str, float, bytes]] = []
    after = ""
    while True:
        page = connection.execute(_PAGE_QUERY, {"after": after}).all()
        if not page:
            break
        for row in page:
            here = (row.model_sha256, row.instance, split_id(row.id)[0])
            if entries and (here != key or len(entries) >= BATCH):
                assert key is not None
                yield key, entries
                entries = []
            key = here
            entries.append(_entry(row))
        after = page[-1].id
    if entries and key is not None:
        yield key, entries


def _entry(row: Any) -> tuple[str, float, bytes]:
    """A schema-1 row as a schema-2 entry; its JSON columns go in as they were written."""
    fields = (
        row.id,
        row.ts,
        row.request_id,
        row.route,
        _json(row, "input"),
        _json(row, "prediction"),
        None if row.probabilities is None else _json(row, "probabilities"),
        _json(row, "warnings"),
        row.latency_ms,
    )
    try:
        return row.id, row.ts, orjson.dumps(fields)
    except TypeError:  # a value orjson cannot write (a lone surrogate)
        return row.id, row.ts, entry_text(fields)


def _json(row: Any, column: str) -> Any:
    """A schema-1 JSON column as it was written, or, where it is not JSON every reader takes
    (early builds wrote NaN), its values with NaN and infinities as null. A value that is not
    JSON at all (changed by hand) stops the move, which leaves the log as it was."""
    text = getattr(row, column)
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return _finite(json.loads(text))
        except (json.JSONDecodeError, TypeError):
            raise LogDatabaseError(
                f"row id {shown(row.id)}: its {column} is not JSON ({shown(text)}); nothing was "
                "moved: fix or delete that row and run migrate again"
            ) from None
    return orjson.Fragment(text)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def _move(
    connection: Connection, key: tuple[str, str, str], entries: list[tuple[str, float, bytes]]
) -> None:
    model_sha256, instance, prefix = key
    counted = [(split_id(entry[0])[1], entry) for entry in entries]
    for low, high, members in runs(counted):
        values = batch_values(prefix, low, high, members, model_sha256, instance)
        batch = connection.execute(
            batches_table.insert().values(**values).returning(batches_table.c.id)
        ).scalar_one()
        ids = [entry[0] for entry in members]
        connection.execute(
            feedback_table.update().where(feedback_table.c.id.in_(ids)).values(batch=batch)
        )
