"""The prediction log's tables, the `tabship_predictions` view and the move from schema 1.

Schema 2 stores one database row per written batch (up to 500 predictions, as one JSON
array), not one per prediction. On a saturated server the database's per-row work (binding
eleven values, the table and index pages of every row) cost the serving core about 3.5 µs a
prediction, most of what the log cost; a batch row costs it a fraction of a microsecond. The
view `tabship_predictions` unpacks the batches into the columns schema 1 had, so SQL written
against one prediction per row still reads the same.

Each batch row records which ids it holds: their process prefix, the lowest and highest
counter and the difference (`span`), so feedback finds an id's batch through an index.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from tabship.monitor.ids import PREFIX, Logged

if TYPE_CHECKING:
    from tabship.monitor.packed import Packed

SCHEMA_VERSION = 2
# Entries one batch row holds at most: feedback reads a row's ids to find one.
BATCH_ENTRIES = 500
VIEW = "tabship_predictions"
# The order of the values in each entry of a batch's JSON array.
ENTRY_FIELDS = (
    "id",
    "ts",
    "request_id",
    "route",
    "input",
    "prediction",
    "probabilities",
    "warnings",
    "latency_ms",
)
_ID, _TIME, _TEXT = (operator.itemgetter(index) for index in range(3))
_OWN = operator.methodcaller("startswith", PREFIX + "-")
# An entry as the writer hands it over: its id, its time, and its JSON (`entry_text`).
Entry = tuple[str, float, bytes]
_FIRST = _ID
# Counters further apart than this start a new database row (see `runs`): a live batch's ids
# follow one another (a gap is rows dropped or a slow request); a schema-1 log read in its
# ids' text order (1, 10..1f, 100..1ff) comes in runs separated by hundreds.
MAX_GAP = 64
# Ids are `prefix-counter` (monitor/ids.py); the prefix stays under 64 bits of counter.
_OUR_ID = re.compile(r"([0-9a-f]{12})-([0-9a-f]{1,15})")

metadata = sa.MetaData()
meta_table = sa.Table(
    "tabship_log_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
batches_table = sa.Table(
    "tabship_prediction_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts_first", sa.Float, nullable=False),
    sa.Column("ts_last", sa.Float, nullable=False, index=True),
    sa.Column("model_sha256", sa.String(64), nullable=False),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(40), nullable=False),
    sa.Column("first_counter", sa.BigInteger, nullable=False),
    sa.Column("last_counter", sa.BigInteger, nullable=False),
    sa.Column("span", sa.BigInteger, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    # The entries' ids, comma-separated: membership without reading the entries.
    sa.Column("ids", sa.Text, nullable=False),
    sa.Column("entries", sa.Text, nullable=False),
    # Unique: a batch written again (its commit's answer lost, so retried) is refused, not
    # counted twice; ids are unique, so two batches never share a first id.
    sa.Index("ix_tabship_batches_counters", "prefix", "first_counter", "last_counter", unique=True),
    sa.Index("ix_tabship_batches_span", "prefix", "span"),
)
feedback_table = sa.Table(
    "tabship_feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("actual", sa.Text, nullable=False),
    # The batch holding the prediction: retention deletes feedback with its batch.
    sa.Column("batch", sa.Integer, index=True),
)

# json_extract, not -> and ->> (SQLite 3.38): Ubuntu 22.04 and Debian 11 ship older SQLite.
# json_quote keeps a string prediction as JSON text ("yes" with its quotes), as schema 1 had;
# a boolean is spelled apart, as json_extract reads it as 1 (feedback's `true` never equalled
# it). A log made before gets this view when a server next opens it (`SQLITE_VIEW_MARK`).
SQLITE_VIEW_MARK = "json_type(e.value, '$[5]')"
_SQLITE_VIEW = f"""CREATE VIEW IF NOT EXISTS {VIEW} AS
SELECT b.id AS batch, e.key AS position,
  json_extract(e.value, '$[0]') AS id, json_extract(e.value, '$[1]') AS ts,
  json_extract(e.value, '$[2]') AS request_id, b.model_sha256 AS model_sha256,
  json_extract(e.value, '$[3]') AS route, b.instance AS instance,
  json_extract(e.value, '$[4]') AS input,
  CASE {SQLITE_VIEW_MARK} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
    ELSE json_quote(json_extract(e.value, '$[5]')) END AS prediction,
  json_extract(e.value, '$[6]') AS probabilities, json_extract(e.value, '$[7]') AS warnings,
  json_extract(e.value, '$[8]') AS latency_ms
FROM tabship_prediction_batches AS b, json_each(b.entries) AS e"""  # noqa: S608 - our names
# json, not jsonb: the entries' text (an integer past 64 bits, key order) is kept as written.
_POSTGRES_VIEW = f"""CREATE OR REPLACE VIEW {VIEW} AS
SELECT b.id AS batch, e.position - 1 AS position,
  e.value ->> 0 AS id, (e.value ->> 1)::double precision AS ts, e.value ->> 2 AS request_id,
  b.model_sha256 AS model_sha256, e.value ->> 3 AS route, b.instance AS instance,
  (e.value -> 4)::text AS input, (e.value -> 5)::text AS prediction,
  NULLIF((e.value -> 6)::text, 'null') AS probabilities, (e.value -> 7)::text AS warnings,
  (e.value ->> 8)::double precision AS latency_ms
FROM tabship_prediction_batches AS b
CROSS JOIN LATERAL json_array_elements(b.entries::json) WITH ORDINALITY AS e(value, position)"""  # noqa: S608


def view_sql(sqlite: bool) -> str:
    """The statement that creates the `tabship_predictions` view on this backend."""
    return _SQLITE_VIEW if sqlite else _POSTGRES_VIEW


def split_id(pid: str) -> tuple[str, int]:
    """An id's (process prefix, counter). Any other id (a client's, an old uuid) is a prefix
    of its own with counter 0, so every id has one place to be looked up."""
    found = _OUR_ID.fullmatch(pid)
    if found is None:
        return pid, 0
    return found[1], int(found[2], 16)


def entry_text(entry: Sequence[Any]) -> bytes:
    """One entry (the fields of ENTRY_FIELDS) as JSON; TypeError or ValueError if a value
    cannot be JSON.

    What orjson refuses, an integer past 64 bits that a record may hold (the JSON reader keeps
    it exact and the prediction is answered), the standard library writes: otherwise a client
    could keep its requests out of the log by sending one.
    """
    try:
        return orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return json.dumps(entry, allow_nan=False, default=_plain_number).encode()


def request_entries(
    logged: Logged, route: str, request_id: str, ts: float, latency: float
) -> list[Entry]:
    """A batch request's entries (made by the writer's thread, off the event loop); TypeError
    or ValueError if a value cannot be JSON."""
    # Without the client's X-Request-Id, a request is named by its first prediction.
    request_id = request_id or logged.ids[0]
    warned = _row_warnings(logged.warnings, len(logged.ids))
    shares = logged.probabilities

    def rows() -> Iterator[tuple[Any, ...]]:
        each = [None] * len(logged.ids) if shares is None else shares
        return zip(logged.ids, logged.records, logged.values, each, warned, strict=True)

    ms = latency * 1000
    dumps, numpy = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
    try:  # one comprehension, no call a row: a thousand rows in about half a millisecond
        texts = [
            dumps((pid, ts, request_id, route, record, value, share, warns, ms), option=numpy)
            for pid, record, value, share, warns in rows()
        ]
    except TypeError:  # an integer past 64 bits: this request by the exact, slower writer
        texts = [
            entry_text((pid, ts, request_id, route, record, value, share, warns, ms))
            for pid, record, value, share, warns in rows()
        ]
    return list(zip(logged.ids, repeat(ts), texts))


def _row_warnings(warnings: Sequence[str], rows: int) -> list[list[str]]:
    """Each row's warnings: 'row i: ...' goes to row i, the rest to every row."""
    if rows == 1:
        return [list(warnings)]
    out: list[list[str]] = [[] for _ in range(rows)]
    shared = []
    for text in warnings:
        head, sep, rest = text.partition(": ")
        number = head[4:] if head.startswith("row ") else ""
        if sep and number.isdigit() and int(number) < rows:
            out[int(number)].append(rest)
        else:
            shared.append(text)
    if shared:
        for item in out:
            item.extend(shared)
    return out


def _plain_number(value: Any) -> Any:
    """A numpy number or array as Python's, for the standard library's encoder."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def runs(
    counted: Sequence[tuple[int, Any]],
) -> list[tuple[int, int, list[Any]]]:
    """(counter, entry) pairs of one prefix as database rows: sorted by counter, at most
    BATCH_ENTRIES to a row, a new row where the counters jump. Each row's span then stays
    small, and feedback, which reads every row of a prefix within the widest span below an
    id, stays cheap: a request answered long after its ids were given (a slow client) or a
    log moved from schema 1 (ids of several widths, in text order) would otherwise stretch it
    over the whole log."""
    rows: list[tuple[int, int, list[Any]]] = []
    members: list[Any] = []
    low = last = 0
    for counter, entry in sorted(counted, key=_FIRST):
        if members and (len(members) == BATCH_ENTRIES or counter - last > MAX_GAP):
            rows.append((low, last, members))
            members = []
        if not members:
            low = counter
        members.append(entry)
        last = counter
    if members:
        rows.append((low, last, members))
    return rows


def batch_values(
    prefix: str,
    low: int,
    high: int,
    entries: Sequence[tuple[str, float, bytes]],
    model_sha256: str,
    instance: str,
) -> dict[str, Any]:
    """One batch row's values: entries (id, time, the entry as JSON) of one id prefix, whose
    counters run from low to high."""
    # C loops (map, join): this runs on the writer thread, which shares the serving core.
    return {
        "ts_first": min(map(_TIME, entries)),
        "ts_last": max(map(_TIME, entries)),
        "model_sha256": model_sha256,
        "instance": instance,
        "prefix": prefix,
        "first_counter": low,
        "last_counter": high,
        "span": high - low,
        "size": len(entries),
        "ids": ",".join(map(_ID, entries)),
        "entries": (b"[" + b",".join(map(_TEXT, entries)) + b"]").decode(),
    }


def packed_values(batch: Packed, model_sha256: str, instance: str) -> dict[str, Any] | None:
    """The writer's batch as one batch row's values, its JSON as it came; None when it must be
    split first (`batch_rows`): ids not all this process's, more than BATCH_ENTRIES, or
    counters far apart."""
    found = batch.own_ids() if len(batch) <= BATCH_ENTRIES else None
    if found is None:
        return None
    ids, low, high = found
    if high - low >= 2 * BATCH_ENTRIES:  # a request answered long after its ids were given
        return None
    first, last = batch.time_range()
    return {
        "ts_first": first,
        "ts_last": last,
        "model_sha256": model_sha256,
        "instance": instance,
        "prefix": PREFIX,
        "first_counter": low,
        "last_counter": high,
        "span": high - low,
        "size": len(batch),
        "ids": ids,
        "entries": batch.json_array().decode(),
    }


def batch_rows(entries: Sequence[Entry]) -> list[tuple[str, int, int, Sequence[Entry]]]:
    """Entries as database rows: by id prefix, at most BATCH_ENTRIES to a row, each with the
    lowest and highest counter among its ids (see tables.runs)."""
    size = BATCH_ENTRIES
    ids = list(map(_ID, entries))
    if not (len(set(map(len, ids))) == 1 and all(map(_OWN, ids))):
        return _split(entries)
    # This process's ids, all of one width (the writer's every batch): their order as text is
    # their counters' order, so a row's range is found without reading every counter.
    rows: list[tuple[str, int, int, Sequence[Entry]]] = []
    for start in range(0, len(entries), size):
        chosen = ids[start : start + size]
        low, high = split_id(min(chosen))[1], split_id(max(chosen))[1]
        if high - low < 2 * size:  # the usual batch: ids given one after another
            rows.append((PREFIX, low, high, entries[start : start + size]))
        else:  # a request answered long after its ids were given
            rows.extend(_split(entries[start : start + size]))
    return rows


def _split(entries: Sequence[Entry]) -> list[tuple[str, int, int, Sequence[Entry]]]:
    """Entries of any ids as database rows: by prefix, then in runs of near counters."""
    groups: dict[str, list[tuple[int, Entry]]] = {}
    for entry in entries:
        prefix, counter = split_id(entry[0])
        groups.setdefault(prefix, []).append((counter, entry))
    return [
        (prefix, low, high, members)
        for prefix, counted in groups.items()
        for low, high, members in runs(counted)
    ]
