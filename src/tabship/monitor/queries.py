"""The log's reading queries over the batch tables: the batches that may hold an id, the
entries of a window (newest first), and the feedback given for them. Each batch row holds up
to 500 entries as one JSON array (tables.py), so a window is read batch by batch.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tabship.exact_json import loads_exact
from tabship.monitor.handover import hand_over
from tabship.monitor.tables import batches_table, feedback_table

# Feedback and batch ids go to the database in IN lists of at most this many.
IN_LIST = 500


def batches_holding(
    connection: Connection, prefix: str, counter: int, model_sha256: str | None = None
) -> Sequence[Any]:
    """The batches of `prefix` (and the model, if given) whose counter range holds `counter`.

    A batch's range is [first, last]; the batch holding the id starts at most the widest span
    of that prefix below it, so the index on (prefix, first_counter) is read over that stretch
    only, however long the prefix's process has logged.
    """
    b = batches_table
    span = connection.execute(sa.select(sa.func.max(b.c.span)).where(b.c.prefix == prefix))
    widest = span.scalar()
    if widest is None:
        return []
    query = sa.select(b.c.id, b.c.ids).where(
        b.c.prefix == prefix,
        b.c.first_counter.between(counter - widest, counter),
        b.c.last_counter >= counter,
    )
    if model_sha256:
        query = query.where(b.c.model_sha256 == model_sha256)
    return connection.execute(query).all()


def window_entries(
    connection: Connection, model_sha256: str | None, since: float, limit: int | None
) -> list[tuple[float, int, int, list[Any]]]:
    """The entries from `since` on, newest first: (ts, batch, position, entry)."""
    b = batches_table
    query = sa.select(b.c.id, b.c.ts_last, b.c.entries).where(b.c.ts_last >= since)
    if model_sha256:
        query = query.where(b.c.model_sha256 == model_sha256)
    found: list[tuple[float, int, int, list[Any]]] = []
    # Once `limit` entries are found, batches whose newest entry is older than the limit-th
    # newest found hold nothing more to keep.
    floor = since
    for batch, newest, text in connection.execute(query.order_by(b.c.ts_last.desc())):
        if limit and newest < floor:
            break
        found.extend(
            (entry[1], batch, position, entry)
            for position, entry in enumerate(loads_exact(text.encode()))
            if entry[1] >= since
        )
        if limit and len(found) >= 2 * limit:
            found = heapq.nlargest(limit, found, key=_order)
            floor = found[-1][0]
        hand_over()  # a batch read (up to 500 entries) at a time: requests get the core
    found.sort(key=_order, reverse=True)
    return found[:limit] if limit else found


def _order(item: tuple[float, int, int, list[Any]]) -> tuple[float, int, int]:
    return item[0], item[1], item[2]


def feedback_of(connection: Connection, batches: set[int]) -> dict[str, Any]:
    """The ground truth given for entries of `batches`, by prediction id."""
    f, listed = feedback_table, sorted(batches)
    actual: dict[str, Any] = {}
    for start in range(0, len(listed), IN_LIST):
        chosen = listed[start : start + IN_LIST]
        query = sa.select(f.c.id, f.c.actual).where(f.c.batch.in_(chosen))
        actual.update((pid, json.loads(text)) for pid, text in connection.execute(query))
    return actual
