"""Moving a prediction log from schema 1 (one row per prediction) to schema 2 (one per batch).

Done once, by the first tabship 0.3 process that opens the database, in one transaction that
holds the database's write lock: a worker starting beside it waits, then finds version 2.
Every schema-1 row becomes an entry of a batch (grouped by model, process and id prefix, 500
to a batch, in id order), feedback is pointed at its batch, and the old table gives its name
to the view that reads the batches the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tabship.monitor.tables import (
    SCHEMA_VERSION,
    VIEW,
    batch_values,
    batches_table,
    feedback_table,
    meta_table,
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


def migrate(engine: Engine, sqlite: bool) -> None:
    """Move a schema-1 log to this schema, unless another process already has."""
    with engine.begin() as connection:
        # The write lock first, then the version again: it may have moved while we waited.
        if sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("LOCK TABLE tabship_log_meta IN EXCLUSIVE MODE")
        found = connection.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar()
        if found != "1":
            return
        if "batch" not in {
            c["name"] for c in sa.inspect(connection).get_columns("tabship_feedback")
        }:
            connection.exec_driver_sql("ALTER TABLE tabship_feedback ADD COLUMN batch INTEGER")
            connection.exec_driver_sql(
                "CREATE INDEX ix_tabship_feedback_batch ON tabship_feedback (batch)"
            )
        for key, entries in _batches(connection):
            _move(connection, key, entries)
        connection.exec_driver_sql(f"DROP TABLE {VIEW}")
        connection.execute(
            meta_table.update()
            .where(meta_table.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )


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
    shares = None if row.probabilities is None else orjson.Fragment(row.probabilities)
    fields = (
        row.id,
        row.ts,
        row.request_id,
        row.route,
        orjson.Fragment(row.input),
        orjson.Fragment(row.prediction),
        shares,
        orjson.Fragment(row.warnings),
        row.latency_ms,
    )
    return row.id, row.ts, orjson.dumps(fields)


def _move(
    connection: Connection, key: tuple[str, str, str], entries: list[tuple[str, float, bytes]]
) -> None:
    model_sha256, instance, prefix = key
    counters = [split_id(entry[0])[1] for entry in entries]
    values = batch_values(prefix, min(counters), max(counters), entries, model_sha256, instance)
    batch = connection.execute(
        batches_table.insert().values(**values).returning(batches_table.c.id)
    ).scalar_one()
    ids = [entry[0] for entry in entries]
    connection.execute(
        feedback_table.update().where(feedback_table.c.id.in_(ids)).values(batch=batch)
    )
