"""The background writer: the request path queues rows, a thread inserts them in batches.

One-row requests (the common case) are turned into log entries on the event loop at the end
of the loop turn that answered them, one orjson call each, and copied together into a
preallocated slab (packed.py), so nothing a request allocated outlives its turn. A batch
request is queued as it came and made into entries by
the thread, off the loop. The thread writes every FLUSH_SECONDS, or as soon as BATCH_ROWS are
waiting, each batch as one database row (see tables.py): the database's work is per batch,
not per prediction. When the database is slow or down the queue fills to its bound and
further rows are dropped and counted, never waited for; the thread retries with a backoff
and resumes by itself. close() flushes everything (SIGTERM loses nothing); a SIGKILL loses
what arrived since the last flush, at most one flush interval.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from array import array
from asyncio import _get_running_loop as _running_loop
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat, starmap
from operator import add, itemgetter
from typing import Any, cast

import orjson

from tabship.exact_json import loads_exact
from tabship.monitor.drift import DriftReport, compare_columns
from tabship.monitor.handover import hand_over, pieces
from tabship.monitor.ids import Logged
from tabship.monitor.packed import COMMA, Packed, Slab
from tabship.monitor.profile import ReferenceProfile
from tabship.monitor.store import BatchRefused, DatabaseDown, LogStore
from tabship.monitor.tables import Entry, entry_text

FLUSH_SECONDS = 0.1
# Rows one transaction takes at most (one database row, tables.BATCH_ENTRIES), and the backlog
# that wakes the thread before its timer.
BATCH_ROWS = 500
MAX_QUEUE_ROWS = 50_000
RETRY_MAX_SECONDS = 2.0
# Behind by more than this share of the queue's bound, the writer stops handing the core and
# the GIL over between its steps: each hand-over costs it up to a switch interval (5 ms) of
# waiting for a busy loop to give the GIL back, and under batch traffic (4 clients of
# 1,000-row requests) it fell so far behind that three rows in four were dropped, with the
# database healthy. Catching up, it takes the GIL as often as the loop does.
CATCH_UP_SHARE = 0.25
# At most one line on stderr a minute about dropped rows (the metric counts every one).
DROP_NOTICE_SECONDS = 60.0
# Per-pod drift: the pod's own recent inputs, kept in memory, re-scored on a timer.
DRIFT_SECONDS = 30.0
DRIFT_WINDOW_SECONDS = 24 * 3600.0
DRIFT_WINDOW_ROWS = 20_000
# The window keeps the records (as text): bound its cells, so a wide model keeps fewer rows
# (500 features: 1,000 rows) and a pod's memory stays well under its limit.
DRIFT_WINDOW_CELLS = 500_000
RETENTION_CHECK_SECONDS = 3600.0
# A slab's room for a batch of one-row entries' JSON (a 6-feature entry is about 250 bytes):
# an entry that does not fit starts the next slab; one larger than a slab is queued alone.
SLAB_BYTES = 1 << 18
# Emptied slabs kept for reuse; past these (after a backlog) they go back to the allocator.
SPARE_SLABS = 4
# A request queued whole for the thread (a one-row request is queued as its Entry).
_Request = tuple[Logged, str, str, float, float]
_ENTRY_WIDTH = 3
_dumps, _NUMPY = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
_FIRST = itemgetter(0)


def instance_name() -> str:
    """This process in the log: host (the pod's name on Kubernetes) and pid."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


@dataclass
class WriterStats:
    """Counters read by the Prometheus collector at scrape time."""

    written: int = 0
    dropped: int = 0
    failures: int = 0
    last_error: str = ""
    drift: DriftReport | None = None
    drift_time: float = 0.0
    deleted: int = 0
    extra: dict[str, float] = field(default_factory=dict)


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


class RecentInputs:
    """This process's recent inputs for its drift gauges: the newest batches, as written.

    A batch is kept as the writer took it (`Packed`: one text, two arrays), so keeping 20,000
    rows is 40 objects, none of which the garbage collector tracks or the loop's allocations
    land between. The rows are read back into columns only when the gauges are refreshed.
    """

    def __init__(self, profile: ReferenceProfile) -> None:
        self.names = [f.name for f in profile.features]
        width = max(1, len(self.names))
        self.size = max(1000, min(DRIFT_WINDOW_ROWS, DRIFT_WINDOW_CELLS // width))
        self.batches: deque[Packed] = deque()
        self.rows = 0

    def extend(self, batch: Packed) -> None:
        """Keep a batch, dropping the oldest ones not needed for the newest `size` rows."""
        self.batches.append(batch)
        self.rows += len(batch)
        while self.rows - len(self.batches[0]) >= self.size:
            self.rows -= len(self.batches.popleft())

    def since(self, cutoff: float) -> tuple[dict[str, list[Any]], list[Any]]:
        """The newest `size` kept rows from `cutoff` on, by feature name, and their
        predictions."""
        columns: dict[str, list[Any]] = {name: [] for name in self.names}
        predictions = []
        surplus = self.rows - self.size  # the oldest batch's rows past the newest `size`
        for batch in list(self.batches):
            skip, surplus = max(0, surplus), 0
            # Read a piece at a time, the core handed over between pieces: a whole batch's
            # text (500 rows) held the serving thread for a millisecond.
            for start, rows in pieces(range(len(batch))):
                stop = start + len(rows)
                entries = loads_exact(batch.json_rows(start, stop))
                for entry, ts in zip(entries, batch.times[start:stop], strict=True):
                    if ts < cutoff:
                        continue
                    if skip:
                        skip -= 1
                        continue
                    record = entry[4]
                    for name, column in columns.items():
                        column.append(record.get(name))
                    predictions.append(entry[5])
        return columns, predictions


class LogWriter:
    """The bounded queue and the thread that empties it into the store."""

    def __init__(
        self,
        store: LogStore,
        model_sha256: str,
        profile: ReferenceProfile | None = None,
        *,
        max_queue_rows: int = MAX_QUEUE_ROWS,
        batch_rows: int = BATCH_ROWS,
        flush_seconds: float = FLUSH_SECONDS,
        retention_days: float | None = None,
        drift_seconds: float = DRIFT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.model_sha256 = model_sha256
        self.profile = profile
        self.instance = instance_name()
        self.max_queue_rows = max_queue_rows
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retention_days = retention_days
        self.drift_seconds = drift_seconds
        self.clock = clock
        self.stats = WriterStats()
        # A ready entry (a one-row request) or a whole request to be made into entries by the
        # thread.
        self._queue: deque[Entry | _Request] = deque()
        # This loop turn's one-row entries, as fields, until the turn's end (`_store_turn`).
        self._turn: list[tuple[Any, ...]] = []
        # One-row entries: the slab the loop fills, the filled ones waiting and emptied ones
        # for reuse. The lock is the loop's and the writer's taking turns at the open slab.
        self._slab_lock = threading.Lock()
        self._slab = Slab(batch_rows, SLAB_BYTES)
        self._filled: deque[Slab] = deque()
        self._spare: deque[Slab] = deque()
        # Each counter is written by one thread only (queued: the event loop; taken: the
        # writer), so the bound needs no lock.
        self._queued = 0
        self._taken = 0
        self._pending: Packed | None = None
        # The pending batch's last attempt failed with the database unreachable.
        self._retrying = False
        self._window = RecentInputs(profile) if profile is not None else None
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stop = False
        # Set by flush(): rows queued up to here are written now, not only whole batches.
        self._flush_to = 0
        self._thread: threading.Thread | None = None
        self._next_retention = 0.0
        self.close_timeout = 20.0
        self._next_drift = 0.0
        self._drop_notice = 0.0

    @property
    def queued_rows(self) -> int:
        """Rows waiting to be written (queued and pending)."""
        return self._queued - self._taken + len(self._pending or ())

    def submit(self, logged: Logged, route: str, request_id: str, latency: float) -> None:
        """Queue one request's predictions; past the bound they are dropped and counted."""
        rows = len(logged.ids)
        if self._queued - self._taken + rows > self.max_queue_rows:
            self._drop(rows)
            return
        ts = self.clock()
        if rows == 1:
            # Kept for the end of the loop's turn (`_store_turn`): the turn's requests are
            # answered together, and their entries are made and copied together.
            shares = logged.probabilities
            pid = logged.ids[0]
            turn = self._turn
            turn.append(
                (
                    pid,
                    ts,
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
        self._queue.append((logged, route, request_id, ts, latency))
        self._counted(rows)

    def _counted(self, rows: int) -> None:
        """`rows` more are queued: wake the thread once a transaction's worth is waiting."""
        self._queued += rows
        waiting = self._queued - self._taken
        # Woken once, as a transaction's worth fills: the thread then writes the whole batches
        # waiting. Below that, the timer wakes it.
        if waiting >= self.batch_rows > waiting - rows:
            self._wake.set()

    def _store_turn(self) -> None:
        """The loop turn's one-row entries as JSON, copied into the slab in one piece.

        Per request, the loop only keeps the entry's fields (`submit`); here one pass makes
        the JSON, one join and one copy store it, under one lock. A request at a time, the
        lock, the copies and the slab's bookkeeping cost as much as the JSON itself: at 32
        connections the loop's extra CPU a request went from 8.3 to 4.4 µs, the throughput
        with the log from 0.83 to 0.86-0.88 of it without (bench/README.md, session 12).
        """
        turn, self._turn = self._turn, []
        texts = []
        for fields in turn:
            try:
                texts.append(_dumps(fields, option=_NUMPY))
            except TypeError:
                try:  # what orjson refuses (an integer past 64 bits) the standard library writes
                    texts.append(entry_text(fields))
                except (TypeError, ValueError) as exc:
                    self._refuse(1, exc)
                    texts.append(b"")
        kept = [
            (fields[1], fields[0], text) for fields, text in zip(turn, texts, strict=True) if text
        ]
        if not kept:
            return
        joined = b",".join(text for _, _, text in kept)
        with self._slab_lock:
            slab = self._slab
            row, size = slab.rows, slab.size
            count = len(kept)
            if row + count <= self.batch_rows and size + len(joined) < SLAB_BYTES:
                end = size + len(joined)
                slab.data[size:end] = joined
                slab.data[end] = COMMA
                slab.times[row : row + count] = array("d", map(_FIRST, kept))
                # Each entry's end: the lengths so far, one comma after each earlier one.
                lengths = accumulate(len(text) for _, _, text in kept)
                slab.ends[row : row + count] = array(
                    "q", map(add, lengths, range(size, size + count))
                )
                slab.rows, slab.size = row + count, end + 1
            else:
                for ts, pid, text in kept:
                    self._store(ts, pid, text)
        self._counted(count)

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
        slab.times[row] = ts
        slab.ends[row] = end
        slab.rows = row + 1
        slab.size = end + 1

    def _drop(self, rows: int) -> None:
        """Rows past the queue's bound: counted, and said on stderr at most once a minute."""
        self.stats.dropped += rows
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
        self.stats.dropped += rows
        sys.stderr.write(f"prediction log: a request's rows dropped ({exc})\n")

    def start(self) -> None:
        """Start the writer thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tabship-log", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 20.0) -> None:
        """Write everything queued (retrying within `timeout`), then stop the thread."""
        self.close_timeout = max(0.1, timeout - 0.5)
        if self._turn:  # the last turn's entries, should its end not have come
            self._store_turn()
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self.store.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what is queued now has been written; False if the database is down."""
        target = self._queued
        deadline = time.monotonic() + timeout
        self._flush_to = max(self._flush_to, target)
        self._wake.set()
        with self._idle:
            while self._taken < target or self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        # The thread runs at the serving thread's priority. Lowered (nice 10, as it once
        # was), it got too little of a saturated core and dropped a third of the rows at
        # 28,000 requests/s: the log is for every prediction, so it takes its fair share.
        retry = 0.0
        deadline: float | None = None
        while True:
            timed_out = not self._wake.wait(retry or self.flush_seconds)
            self._wake.clear()
            # Read once: a close() that lands during a pass of whole batches wakes the next
            # pass, which drains; exiting after this one would leave its remainder unwritten.
            stopping = self._stop
            if stopping and deadline is None:
                deadline = time.monotonic() + self.close_timeout
            try:
                # The timer's pass writes what waited when it began; close() writes all.
                until = sys.maxsize if stopping else self._queued if timed_out else 0
                ok = self._write_all(until)
                self._housekeeping()
            except Exception as exc:  # the thread must outlive any bug: count it and go on
                self._drop_batch(exc)
                ok = True
            if stopping and (ok or time.monotonic() > (deadline or 0)):
                if not ok:
                    lost = self.queued_rows
                    self.stats.dropped += lost
                    sys.stderr.write(
                        f"prediction log: exiting with the database unreachable; {lost} rows "
                        "not written\n"
                    )
                return
            retry = 0.0 if ok else min(RETRY_MAX_SECONDS, max(0.05, retry * 2))

    def _write_all(self, until: int) -> bool:
        """Write whole batches, and every row queued before the `until`th; False on a
        database error.

        Rows keep arriving while it writes, and chasing them would make a transaction (and
        a database row) of the handful that came during the last one, again and again: every
        commit writes its pages to the WAL whatever its size. At one connection the timer's
        pass did that, 33 rows a transaction and 32 µs of writer CPU a row (2 at 32
        connections). So woken because a batch filled, it writes whole batches; the timer's
        wake (every FLUSH_SECONDS) writes what waited when it began, flush() what was queued
        when it was called, close() everything.
        """
        while True:
            if self._pending is None:
                whole = self._queued - self._taken >= self.batch_rows
                if not (whole or self._taken < max(until, self._flush_to)):
                    return True
                self._take()
                self._hand_over()  # popping a batch took a while: the loop runs before the insert
            if self._pending is None:
                with self._idle:
                    self._idle.notify_all()
                return True
            try:
                self.store.insert(self._pending, self.model_sha256, self.instance, self._polite())
            except BatchRefused as exc:
                if self._retrying and self._already_written():
                    sys.stderr.write(
                        "prediction log: a batch retried after a lost answer was written the "
                        "first time\n"
                    )
                else:
                    # The database answered and refused these rows (a constraint): retrying
                    # would refuse them forever, so they are dropped, counted and said.
                    self._drop_batch(exc)
                    continue
            except DatabaseDown as exc:
                self._retrying = True
                self.stats.failures += 1
                message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                if message != self.stats.last_error:
                    sys.stderr.write(
                        f"prediction log: database write failed ({message}); retrying\n"
                    )
                self.stats.last_error = message
                return False
            self._retrying = False
            if self.stats.last_error:
                sys.stderr.write("prediction log: database writes resumed\n")
                self.stats.last_error = ""
            self.stats.written += len(self._pending)
            self._pending = None
            with self._idle:
                self._idle.notify_all()

    def _already_written(self) -> bool:
        """Whether the pending batch is in the database: a commit can succeed and its answer
        be lost (a connection reset), and its retry is then refused as a duplicate."""
        try:
            return self._pending is not None and bool(
                self.store.batches_of(self._pending.ids()[:1], self.model_sha256)
            )
        except DatabaseDown:
            return False

    def _drop_batch(self, exc: BaseException) -> None:
        lost = len(self._pending or ())
        self.stats.failures += 1
        self.stats.dropped += lost
        sys.stderr.write(
            f"prediction log: {lost} rows refused and dropped "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})\n"
        )
        self._pending = None

    def _polite(self) -> bool:
        """Whether the writer hands the core over between its steps (see CATCH_UP_SHARE)."""
        return self.queued_rows < CATCH_UP_SHARE * self.max_queue_rows

    def _hand_over(self) -> None:
        if self._polite():
            hand_over()

    def _take(self) -> None:
        """Move a batch to pending: a filled slab, else queued requests (made into entries
        here), else the open slab, which the loop goes on filling until it is taken."""
        slab = self._filled.popleft() if self._filled else None
        if slab is None and not self._queue:
            with self._slab_lock:
                if self._slab.rows:
                    slab, self._slab = self._slab, self._fresh_slab()
        if slab is not None:
            batch = slab.pack()
            taken = len(batch)
            if len(self._spare) < SPARE_SLABS:
                self._spare.append(slab)
        else:
            batch, taken = self._take_queued()
        if self._window is not None and len(batch):
            self._window.extend(batch)
        # Pending first, then taken: flush() (on the loop, which `hand_over` lets run) waits
        # while either says rows are unwritten, so it never sees them neither queued nor
        # pending.
        self._pending = batch if len(batch) else None
        self._taken += taken

    def _take_queued(self) -> tuple[Packed, int]:
        """Up to a batch of queued requests as entries, and the rows they counted for."""
        queue = self._queue
        # Popped by C calls: a Python loop over thousands of entries would hold the GIL (and
        # the serving thread) for as long.
        items = list(starmap(queue.popleft, repeat((), min(len(queue), self.batch_rows))))
        rows: list[Entry] = []
        taken = 0
        for item in items:
            if len(item) == _ENTRY_WIDTH:
                rows.append(cast(Entry, item))
                taken += 1
            else:
                request = cast(_Request, item)
                taken += len(request[0].ids)
                rows.extend(self._request_rows(request))
                self._hand_over()  # a batch request's rows took a while: let the loop in
        return Packed.of(rows), taken

    def _request_rows(self, request: _Request) -> list[Entry]:
        """A batch request's rows; none (dropped and said) if a value cannot be written."""
        try:
            return self._rows(*request)
        except (TypeError, ValueError) as exc:
            self._refuse(len(request[0].ids), exc)
            return []

    def _rows(
        self, logged: Logged, route: str, request_id: str, ts: float, latency: float
    ) -> list[Entry]:
        """A batch request's entries."""
        # Without the client's X-Request-Id, a request is named by its first prediction.
        request_id = request_id or logged.ids[0]
        warned = _row_warnings(logged.warnings, len(logged.ids))
        shares = logged.probabilities

        def rows() -> Iterator[tuple[Any, ...]]:
            each = [None] * len(logged.ids) if shares is None else shares
            return zip(logged.ids, logged.records, logged.values, each, warned, strict=True)

        ms = latency * 1000
        try:  # one comprehension, no call a row: a thousand rows in about half a millisecond
            texts = [
                _dumps((pid, ts, request_id, route, record, value, share, warns, ms), option=_NUMPY)
                for pid, record, value, share, warns in rows()
            ]
        except TypeError:  # an integer past 64 bits: this request by the exact, slower writer
            texts = [
                entry_text((pid, ts, request_id, route, record, value, share, warns, ms))
                for pid, record, value, share, warns in rows()
            ]
        return list(zip(logged.ids, repeat(ts), texts))

    def _housekeeping(self) -> None:
        now = self.clock()
        if self.profile is not None and now >= self._next_drift:
            self._next_drift = now + self.drift_seconds
            self.refresh_drift(now)
        if self.retention_days and now >= self._next_retention:
            self._next_retention = now + RETENTION_CHECK_SECONDS
            try:
                self.stats.deleted += self.store.delete_before(now - self.retention_days * 86400)
            except DatabaseDown as exc:
                self._next_retention = now + 60
                sys.stderr.write(
                    f"prediction log: retention delete failed ({type(exc).__name__})\n"
                )

    def refresh_drift(self, now: float | None = None) -> DriftReport | None:
        """Score this process's recent inputs against the profile (the gauges read the result)."""
        if self.profile is None:
            return None
        assert self._window is not None
        columns, predictions = self._window.since((now or self.clock()) - DRIFT_WINDOW_SECONDS)
        report = compare_columns(self.profile, columns, predictions)
        self.stats.drift, self.stats.drift_time = report, now or self.clock()
        return report
