"""The rows waiting for the database, as the event loop queues them.

One-row requests (the common case) are turned into log entries on the event loop at the end
of the loop turn that answered them, one orjson call each, and copied together into a
preallocated slab (packed.py), so nothing a request allocated outlives its turn. A batch
request is queued as it came and made into entries by the writing threads, off the loop
(writer.py). The queue has a bound: past it rows are dropped and counted, never waited for,
except that a batch answer waits briefly for a writer that is behind while the database
answers (`Backlog.room`).

The books take no lock: each count has one writer (see `Backlog.__init__`), so the loop never
waits for a thread the kernel set aside.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from asyncio import _get_running_loop as _running_loop
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson

from tabship.monitor.drift import DriftReport
from tabship.monitor.ids import Logged
from tabship.monitor.packed import COMMA, Slab
from tabship.monitor.tables import Entry, entry_text

# Rows one transaction takes at most (one database row, tables.BATCH_ENTRIES), and the backlog
# that wakes the thread before its timer.
BATCH_ROWS = 500
MAX_QUEUE_ROWS = 50_000
# The idle-priority thread leaves the writing to the catch-up thread once this many batches
# wait: on a core the server keeps busy it gets a slice about every quarter second, and a
# transaction it began in one slice held SQLite's write lock, and the catch-up thread behind
# it, until the next (an insert of 1,000 rows took it 2-4 s under batch traffic, and 30,000
# rows were dropped meanwhile). A small queue (a test's, a tight TABSHIP_LOG_QUEUE_ROWS)
# calls the catch-up thread once this share of it waits, if that comes first.
CATCH_UP_BATCHES = 4
CATCH_UP_SHARE = 0.25
# Backpressure: while this share of the queue's bound waits to be written and the database
# answers, a batch answer waits for the writer, up to WAIT_SECONDS (TABSHIP_LOG_WAIT_SECONDS;
# a one-row answer never does). Four clients of 1,000-row requests to a one-core server are
# answered about 137,000 rows a second, and the bound is a third of a second of that: a
# writer given a quarter of the GIL, or held up by a disk's sync, dropped thousands of rows
# with the database healthy (0 to 44,000 in a run; every run under a concurrent `dd`).
# Waiting, the serving threads give the writer the core, and each waiting client adds its
# rows at most every WAIT_SECONDS.
BACKLOG_SHARE = 0.5
WAIT_SECONDS = 0.5
WAIT_POLL_SECONDS = 0.005
# An insert running this long means the database stopped answering (a hung connection, a
# disk that no longer writes): answers stop waiting and rows past the bound are dropped, as
# when the database is down.
STALLED_SECONDS = 2.0
# At most one line on stderr a minute about dropped rows (the metric counts every one).
DROP_NOTICE_SECONDS = 60.0
# A slab's room for a batch of one-row entries' JSON (a 6-feature entry is about 250 bytes):
# an entry that does not fit starts the next slab; one larger than a slab is queued alone.
SLAB_BYTES = 1 << 18
# Emptied slabs kept for reuse; past these (after a backlog) they go back to the allocator.
SPARE_SLABS = 4
# A request queued whole for the writing threads (a one-row request is queued as its Entry).
QueuedRequest = tuple[Logged, str, str, float, float]
ENTRY_WIDTH = 3
_dumps, _NUMPY = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


@dataclass
class WriterStats:
    """Counters read by the Prometheus collector at scrape time.

    The counts are added to by the event loop and both writing threads, each in a tally of
    its own: `+=` from two threads can lose an update, and a lock the idle-priority thread
    held when the kernel set it aside would keep the others waiting (see writer.py).
    """

    last_error: str = ""
    drift: DriftReport | None = None
    drift_time: float = 0.0
    deleted: int = 0
    # Backpressure (written by the event loop only): answers that waited, and for how long.
    waits: int = 0
    wait_seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    tallies: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, name: str, count: int) -> None:
        """Add to the calling thread's tally of `name` (written, dropped, failures)."""
        key = (name, threading.get_ident())
        self.tallies[key] = self.tallies.get(key, 0) + count

    def total(self, name: str) -> int:
        return sum(count for (what, _), count in list(self.tallies.items()) if what == name)

    @property
    def written(self) -> int:
        return self.total("written")

    @property
    def dropped(self) -> int:
        return self.total("dropped")

    @property
    def failures(self) -> int:
        return self.total("failures")


class Backlog:
    """The bounded queue the loop fills and the writing threads empty (writer.py)."""

    def __init__(
        self,
        *,
        max_queue_rows: int = MAX_QUEUE_ROWS,
        wait_seconds: float = WAIT_SECONDS,
        batch_rows: int = BATCH_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_queue_rows = max_queue_rows
        self.wait_seconds = wait_seconds
        self.batch_rows = batch_rows
        self.clock = clock
        self.stats = WriterStats()
        # A ready entry (a one-row request) or a whole request to be made into entries by a
        # writing thread.
        self._queue: deque[Entry | QueuedRequest] = deque()
        # This loop turn's one-row entries, as fields, until the turn's end (`_store_turn`).
        self._turn: list[tuple[Any, ...]] = []
        # One-row entries: the slab the loop fills, the filled ones waiting and emptied ones
        # for reuse. The lock is the loop's and the writer's taking turns at the open slab.
        self._slab_lock = threading.Lock()
        self._slab = Slab(batch_rows, SLAB_BYTES)
        self._filled: deque[Slab] = deque()
        self._spare: deque[Slab] = deque()
        # The books take no lock: a lock the idle-priority thread held when the kernel set it
        # aside (for a quarter of a second, on a busy core) would stop the catch-up thread.
        # So each count has one writer: queued the event loop; taken, the batch in hand and
        # the drift window each writing thread its own (by `idle`, writer.py); the deques are
        # taken from by one C call each.
        self._queued = 0
        self._taken_by = [0, 0]  # by `idle` (False, True)
        # The last attempt to write failed with the database unreachable.
        self._retrying = False
        # When each writing thread's insert in progress began (0.0: none), by `idle`.
        self._inserting = [0.0, 0.0]
        self._backlog_rows = max(1, int(BACKLOG_SHARE * max_queue_rows))
        # The idle-priority thread's wake, and the catch-up thread's.
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._catch_up_rows = max(
            1, min(CATCH_UP_BATCHES * batch_rows, int(CATCH_UP_SHARE * max_queue_rows))
        )
        self._drop_notice = 0.0

    @property
    def _taken(self) -> int:
        """Rows taken from the queue by either writing thread."""
        return sum(self._taken_by)

    def submit(self, logged: Logged, route: str, request_id: str, latency: float) -> None:
        """Queue one request's predictions; past the bound they are dropped and counted."""
        rows = len(logged.ids)
        if rows == 1:
            # Kept for the end of the loop's turn (`_store_turn`): the turn's requests are
            # answered together, and their entries are bounded, made and copied together.
            shares = logged.probabilities
            pid = logged.ids[0]
            turn = self._turn
            turn.append(
                (
                    pid,
                    self.clock(),
                    request_id or pid,
                    route,
                    logged.records[0],
                    logged.values[0],
                    None if shares is None else shares[0],
                    logged.warnings,
                    latency * 1000,
                )
            )
            if len(turn) == 1:
                loop = _running_loop()
                if loop is None:  # no event loop (a script, a test): stored now
                    self._store_turn()
                else:
                    loop.call_soon(self._store_turn)
            return
        if self._waiting() + rows > self.max_queue_rows:
            self._drop(rows)
            return
        self._queue.append((logged, route, request_id, self.clock(), latency))
        self._counted(rows)

    async def room(self) -> None:
        """Backpressure for a batch answer: wait while the writer is behind and the database
        answers, at most `wait_seconds` (see BACKLOG_SHARE); counted in the stats."""
        if not self.wait_seconds or not self._behind():
            return
        started = now = time.monotonic()
        while now - started < self.wait_seconds and self._behind(now):
            await asyncio.sleep(WAIT_POLL_SECONDS)
            now = time.monotonic()
        self.stats.waits += 1
        self.stats.wait_seconds += now - started

    def _behind(self, now: float = 0.0) -> bool:
        """Whether the backlog calls for backpressure: rows past BACKLOG_SHARE of the bound
        while the database answers."""
        return self._waiting() >= self._backlog_rows and self.database_answers(now)

    def database_answers(self, now: float = 0.0, stalled: float = STALLED_SECONDS) -> bool:
        """Whether the last write did not fail and no insert has run past `stalled` seconds
        (a writer merely behind, on a busy core, still has a database that answers)."""
        if self._retrying:
            return False
        since = (now or time.monotonic()) - stalled
        return not any(0.0 < began < since for began in self._inserting)

    def _waiting(self) -> int:
        """Rows queued and not yet taken by a writing thread (the loop's check, once a turn:
        the two counts read without the `_taken` property's call)."""
        taken = self._taken_by
        return self._queued - taken[True] - taken[False]

    def _counted(self, rows: int) -> None:
        """`rows` more are queued: wake the thread once a transaction's worth is waiting."""
        self._queued += rows
        waiting = self._waiting()
        # Woken once, as a transaction's worth fills: the thread then writes the whole batches
        # waiting. Below that, the timer wakes it.
        if waiting >= self.batch_rows > waiting - rows:
            self._wake.set()
        # Behind (the idle-priority thread starved by a busy core): the other one.
        if waiting >= self._catch_up_rows and not self._urgent.is_set():
            self._urgent.set()

    def _store_turn(self) -> None:
        """The loop turn's one-row entries as JSON, copied into the slab in one piece.

        Per request, the loop only keeps the entry's fields (`submit`); here one pass makes
        the JSON, one join and one copy store it, under one lock. A request at a time, the
        lock, the copies and the slab's bookkeeping cost as much as the JSON itself: at 32
        connections the loop's extra CPU a request went from 8.3 to 4.4 µs, the throughput
        with the log from 0.83 to 0.86-0.88 of it without (bench/README.md, session 12).
        The queue's bound is checked here, once a turn, and the bookkeeping is C loops (join,
        map, list.extend): the generators and arrays a turn cost more than the JSON
        (bench/README.md, session 16).
        """
        turn, self._turn = self._turn, []
        room = self.max_queue_rows - self._waiting()
        if len(turn) > room:
            self._drop(len(turn) - max(0, room))
            turn = turn[: max(0, room)]
        try:
            texts = [_dumps(fields, option=_NUMPY) for fields in turn]
        except TypeError:  # what orjson refuses (an integer past 64 bits): an entry at a time
            turn, texts = self._texts_apart(turn)
        if not turn:
            return
        count = len(turn)
        joined = b",".join(texts)
        # The ids too, each with its comma: the writer reads them without parsing the text.
        ids = (",".join(map(_FIRST, turn)) + ",").encode()
        with self._slab_lock:
            slab = self._slab
            row, size = slab.rows, slab.size
            if row + count <= self.batch_rows and size + len(joined) < SLAB_BYTES:
                end = size + len(joined)
                slab.data[size:end] = joined
                slab.data[end] = COMMA
                id_size = slab.id_size
                slab.ids[id_size : id_size + len(ids)] = ids
                slab.id_size = id_size + len(ids)
                slab.times.extend(map(_SECOND, turn))
                slab.lengths.extend(map(len, texts))
                slab.rows, slab.size = row + count, end + 1
            else:
                for fields, text in zip(turn, texts, strict=True):
                    self._store(fields[1], fields[0], text)
        self._counted(count)

    def _texts_apart(
        self, turn: list[tuple[Any, ...]]
    ) -> tuple[list[tuple[Any, ...]], list[bytes]]:
        """Each entry's JSON by `entry_text`, which writes what orjson refuses; an entry no
        JSON can hold is dropped and said."""
        kept, texts = [], []
        for fields in turn:
            try:
                texts.append(entry_text(fields))
            except (TypeError, ValueError) as exc:
                self._refuse(1, exc)
                continue
            kept.append(fields)
        return kept, texts

    def _store(self, ts: float, pid: str, text: bytes) -> None:
        """One entry into the open slab, or the next one (the slab lock held)."""
        if len(text) >= SLAB_BYTES:  # past a slab's room (a very wide model): on its own
            self._queue.append((pid, ts, text))
            return
        slab = self._slab
        row, start = slab.rows, slab.size
        end = start + len(text)
        if row == self.batch_rows or end >= SLAB_BYTES:
            slab, row, start, end = self._next_slab(), 0, 0, len(text)
        slab.data[start:end] = text
        slab.data[end] = COMMA
        pid_text = f"{pid},".encode()
        slab.ids[slab.id_size : slab.id_size + len(pid_text)] = pid_text
        slab.id_size += len(pid_text)
        slab.times.append(ts)
        slab.lengths.append(len(text))
        slab.rows = row + 1
        slab.size = end + 1

    def _drop(self, rows: int) -> None:
        """Rows past the queue's bound: counted, and said on stderr at most once a minute."""
        self.stats.add("dropped", rows)
        now = time.monotonic()
        if now >= self._drop_notice:
            self._drop_notice = now + DROP_NOTICE_SECONDS
            sys.stderr.write(
                f"prediction log: the queue is full ({self.max_queue_rows} rows waiting for "
                f"the database); dropping rows, {self.stats.dropped} so far "
                "(tabship_prediction_log_dropped_total)\n"
            )

    def _next_slab(self) -> Slab:
        """Hand the open slab to the writer and open another (the slab lock held)."""
        self._filled.append(self._slab)
        self._slab = self._fresh_slab()
        return self._slab

    def _fresh_slab(self) -> Slab:
        return self._spare.pop() if self._spare else Slab(self.batch_rows, SLAB_BYTES)

    def _refuse(self, rows: int, exc: Exception) -> None:
        """A request holding a value JSON cannot hold: its rows are dropped and said."""
        self.stats.add("dropped", rows)
        sys.stderr.write(f"prediction log: a request's rows dropped ({exc})\n")
