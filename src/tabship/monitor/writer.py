"""The background writer: the request path queues rows, a thread inserts them in batches.

One-row requests (the common case) are turned into log entries on the event loop at the end
of the loop turn that answered them, one orjson call each, and copied together into a
preallocated slab (packed.py), so nothing a request allocated outlives its turn. A batch
request is queued as it came and made into entries by
the thread, off the loop. The thread writes every FLUSH_SECONDS, or as soon as BATCH_ROWS are
waiting, each batch as one database row (see tables.py): the database's work is per batch,
not per prediction. A writer behind while the database answers (short of the shared core,
or held up by a disk's sync) has batch answers wait for it, briefly (`LogWriter.room`); when
the database fails or stops answering the queue fills to its bound and further rows are
dropped and counted, never waited for; the thread retries with a backoff and resumes by
itself. close() flushes everything (SIGTERM loses nothing); a SIGKILL loses
what arrived since the last flush, at most one flush interval.

The thread runs at idle priority (`idle_priority`), so a request never waits for its CPU
work; a second thread at the serving thread's priority writes when the first is starved or
behind (`LogWriter._run_catch_up`, `_leave_to_catch_up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
import time
from asyncio import _get_running_loop as _running_loop
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat, starmap
from operator import itemgetter
from typing import Any, TypeVar, cast

import orjson

from tabship.monitor.drift import DriftReport, compare_columns
from tabship.monitor.handover import hand_over
from tabship.monitor.ids import Logged
from tabship.monitor.packed import COMMA, Packed, Slab
from tabship.monitor.profile import ReferenceProfile
from tabship.monitor.store import BatchRefused, DatabaseDown, LogStore
from tabship.monitor.tables import Entry, entry_text, request_entries
from tabship.monitor.window import RecentInputs

FLUSH_SECONDS = 0.1
# Rows one transaction takes at most (one database row, tables.BATCH_ENTRIES), and the backlog
# that wakes the thread before its timer.
BATCH_ROWS = 500
MAX_QUEUE_ROWS = 50_000
RETRY_MAX_SECONDS = 2.0
# Behind by more than this share of the queue's bound, a writing thread stops handing the
# core and the GIL over between its steps: each hand-over costs it up to a switch interval
# (5 ms) of waiting for a busy loop to give the GIL back, and under batch traffic (4 clients
# of 1,000-row requests) it fell so far behind that three rows in four were dropped, with the
# database healthy. Catching up, it takes the GIL as often as the loop does.
POLITE_SHARE = 0.25
# The idle-priority thread leaves the writing to the catch-up thread once this many batches
# wait: on a core the server keeps busy it gets a slice about every quarter second, and a
# transaction it began in one slice held SQLite's write lock, and the catch-up thread behind
# it, until the next (an insert of 1,000 rows took it 2-4 s under batch traffic, and 30,000
# rows were dropped meanwhile). A small queue (a test's, a tight TABSHIP_LOG_QUEUE_ROWS)
# calls the catch-up thread once this share of it waits, if that comes first.
CATCH_UP_BATCHES = 4
CATCH_UP_SHARE = 0.25
# A hand-over (sched_yield) that came back after this long means other threads had the core
# all along: the idle thread then gives its batch to the catch-up thread rather than begin a
# transaction it may not get the core to finish.
CONTENDED_SECONDS = 0.01
# The idle thread's timer pass this many intervals overdue (starved): the catch-up thread
# writes, so a SIGKILL on a busy core still loses about a flush interval, not a quarter queue.
LATE_PASSES = 2
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
# Per-pod drift: the pod's own recent inputs (window.py), re-scored on a timer.
DRIFT_SECONDS = 30.0
DRIFT_WINDOW_SECONDS = 24 * 3600.0
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
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
T = TypeVar("T")


def instance_name() -> str:
    """This process in the log: host (the pod's name on Kubernetes) and pid."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


@dataclass
class WriterStats:
    """Counters read by the Prometheus collector at scrape time.

    The counts are added to by the event loop and both writing threads, each in a tally of
    its own: `+=` from two threads can lose an update, and a lock the idle-priority thread
    held when the kernel set it aside would keep the others waiting (see `LogWriter`).
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


def idle_priority() -> None:
    """Run the calling thread only when nothing else wants the core (Linux's SCHED_IDLE).

    At the serving thread's priority the writer's pass (its own Python, SQLite's commit and
    checkpoints, which run without the GIL) kept the core from a request that arrived
    meanwhile until the kernel's time slice ended: at one connection the p99 with the log was
    2.3 to 2.8 times the p99 without it. At idle priority the request takes the core at once,
    and waits at most for the GIL, which the writer holds only between the driver's calls.
    Lowered by nice (19) instead, the kernel let the writer finish its slice (p99 3.2 times).
    Refused (a seccomp profile) or elsewhere, the thread stays as it is. Only for a server of
    one worker: with several sharing the cores, another worker's loop takes the core from an
    idle thread that may hold its own process's GIL.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def said(exc: BaseException) -> str:
    """An exception as the log says it on stderr: its type and first line."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


def _pop(items: deque[T]) -> T | None:
    """The first item, or None if another thread took the last one (one C call)."""
    try:
        return items.popleft()
    except IndexError:
        return None


class LogWriter:
    """The bounded queue and the two threads that empty it into the store."""

    def __init__(
        self,
        store: LogStore,
        model_sha256: str,
        profile: ReferenceProfile | None = None,
        *,
        max_queue_rows: int = MAX_QUEUE_ROWS,
        wait_seconds: float = WAIT_SECONDS,
        batch_rows: int = BATCH_ROWS,
        flush_seconds: float = FLUSH_SECONDS,
        retention_days: float | None = None,
        drift_seconds: float = DRIFT_SECONDS,
        clock: Callable[[], float] = time.time,
        low_priority: bool = True,
    ) -> None:
        self.store = store
        # The writer thread at idle priority (see `idle_priority`); the catch-up thread
        # writes what it cannot.
        self.low_priority = low_priority
        self.model_sha256 = model_sha256
        self.profile = profile
        self.instance = instance_name()
        self.max_queue_rows = max_queue_rows
        self.wait_seconds = wait_seconds
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
        # The books take no lock: a lock the idle-priority thread held when the kernel set it
        # aside (for a quarter of a second, on a busy core) would stop the catch-up thread.
        # So each count has one writer: queued the event loop; taken, the batch in hand and
        # the drift window each writing thread its own (by `idle`); the deques are taken
        # from by one C call each.
        self._queued = 0
        self._taken_by = [0, 0]  # by `idle` (False, True)
        self._pending: dict[bool, Packed | None] = {True: None, False: None}
        # Batches the catch-up thread could not write (the database down): retried by the
        # idle thread, whose retries back off.
        self._returned: deque[Packed] = deque()
        # The last attempt to write failed with the database unreachable.
        self._retrying = False
        # When each writing thread's insert in progress began (0.0: none), by `idle`.
        self._inserting = [0.0, 0.0]
        self._backlog_rows = max(1, int(BACKLOG_SHARE * max_queue_rows))
        self._windows = (
            {idle: RecentInputs(profile) for idle in (True, False)} if profile is not None else None
        )
        self._wake = threading.Event()
        # The catch-up thread's wake.
        self._urgent = threading.Event()
        self._catch_up: threading.Thread | None = None
        self._catch_up_rows = max(
            1, min(CATCH_UP_BATCHES * batch_rows, int(CATCH_UP_SHARE * max_queue_rows))
        )
        # Set while the catch-up thread writes: the idle one then begins no transaction.
        self._catching_up = False
        # When the idle thread last began a pass: its sign of life for the catch-up thread.
        self._idle_pass_at = time.monotonic()
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
    def _taken(self) -> int:
        """Rows taken from the queue by either writing thread."""
        return sum(self._taken_by)

    @property
    def queued_rows(self) -> int:
        """Rows waiting to be written (queued, pending and returned)."""
        held = [*self._pending.values(), *self._returned]
        return self._waiting() + sum(len(batch) for batch in held if batch)

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
        """Whether the backlog calls for backpressure: rows past BACKLOG_SHARE of the bound,
        the last write not failed, and no insert running past STALLED_SECONDS."""
        if self._waiting() < self._backlog_rows or self._retrying:
            return False
        stalled = (now or time.monotonic()) - STALLED_SECONDS
        return not any(0.0 < began < stalled for began in self._inserting)

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

    def start(self) -> None:
        """Start the writer thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tabship-log", daemon=True)
            self._thread.start()
            self._catch_up = threading.Thread(
                target=self._run_catch_up, name="tabship-log-catch-up", daemon=True
            )
            self._catch_up.start()

    def close(self, timeout: float = 20.0) -> None:
        """Write everything queued (retrying within `timeout`), then stop the thread."""
        self.close_timeout = max(0.1, timeout - 0.5)
        if self._turn:  # the last turn's entries, should its end not have come
            self._store_turn()
        self._stop = True
        self._wake.set()
        self._urgent.set()
        if self._catch_up is not None:
            self._catch_up.join(timeout)
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
        self._urgent.set()  # at once, even on a core the server keeps busy
        with self._idle:
            while self._taken < target or self._returned or any(self._pending.values()):
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        # This thread writes at idle priority (`idle_priority`); the catch-up thread, at the
        # serving thread's, when it falls behind.
        if self.low_priority:
            idle_priority()
        retry = 0.0
        deadline: float | None = None
        while True:
            timed_out = not self._wake.wait(retry or self.flush_seconds)
            self._wake.clear()
            # Read once: a close() that lands during a pass of whole batches wakes the next
            # pass, which drains; exiting after this one would leave its remainder unwritten.
            stopping = self._stop
            self._idle_pass_at = time.monotonic()
            if stopping and deadline is None:
                deadline = time.monotonic() + self.close_timeout
            # The timer's pass writes what waited when it began; close() writes all.
            ok = self._pass(sys.maxsize if stopping else self._queued if timed_out else 0, True)
            try:
                self._housekeeping()
            except Exception as exc:  # the thread must outlive any bug: count it and go on
                self.stats.add("failures", 1)
                sys.stderr.write(f"prediction log: housekeeping failed ({said(exc)})\n")
            retry = 0.0 if ok else min(RETRY_MAX_SECONDS, max(0.05, retry * 2))
            # Closing, a failed pass is the last when the next would come past the deadline:
            # close() stops waiting for this thread then, and rows given up on after it had
            # would go uncounted and unsaid.
            if stopping and (ok or time.monotonic() + retry > (deadline or 0)):
                if not ok:
                    lost = self.queued_rows
                    self.stats.add("dropped", lost)
                    sys.stderr.write(
                        f"prediction log: exiting with the database unreachable; {lost} rows "
                        "not written\n"
                    )
                return

    def _run_catch_up(self) -> None:
        """Write at the serving thread's priority while the idle-priority thread is far behind
        (a core the server keeps busy gives it next to nothing) or a flush waits. Retries
        after a database error and close() are the other thread's."""
        late = LATE_PASSES * self.flush_seconds
        while True:
            woken = self._urgent.wait(late)
            self._urgent.clear()
            if self._stop:
                return
            overdue = time.monotonic() - self._idle_pass_at > late and self._queued > self._taken
            if (
                woken or overdue
            ) and not self._retrying:  # everything queued now, as the idle thread's timer pass
                self._catching_up = True
                try:
                    self._pass(self._queued, False)
                finally:
                    self._catching_up = False

    def _pass(self, until: int, idle: bool) -> bool:
        """One writing pass of the `idle` thread or the catch-up thread (see `_write_all`)."""
        try:
            return self._write_all(until, idle)
        except Exception as exc:  # the thread must outlive any bug: count it and go on
            self._drop_batch(exc, idle)
            return True

    def _write_all(self, until: int, idle: bool = False) -> bool:
        """Write whole batches, and every row queued before the `until`th; False on a
        database error. The `idle` thread stops when far behind: the catch-up thread waits
        for the lock its pass holds, and a starved thread would hold it batch after batch.

        Rows keep arriving while it writes, and chasing them would make a transaction (and
        a database row) of the handful that came during the last one, again and again: every
        commit writes its pages to the WAL whatever its size. At one connection the timer's
        pass did that, 33 rows a transaction and 32 µs of writer CPU a row (2 at 32
        connections). So woken because a batch filled, it writes whole batches; the timer's
        wake (every FLUSH_SECONDS) writes what waited when it began, flush() what was queued
        when it was called, close() everything.
        """
        while self._ready(until, idle):
            batch = self._pending[idle]
            assert batch is not None
            try:
                # The idle thread never hands the core over inside a transaction: set aside
                # there, it would keep SQLite's write lock from the catch-up thread.
                self._insert(batch, idle, polite=not idle and self._polite())
            except BatchRefused as exc:
                if self._retrying and self._already_written(batch):
                    sys.stderr.write(
                        "prediction log: a batch retried after a lost answer was written the "
                        "first time\n"
                    )
                else:
                    # The database answered and refused these rows (a constraint): retrying
                    # would refuse them forever, so they are dropped, counted and said.
                    self._drop_batch(exc, idle)
                    continue
            except DatabaseDown as exc:
                self._retrying = True
                self.stats.add("failures", 1)
                message = said(exc)
                if message != self.stats.last_error:
                    sys.stderr.write(
                        f"prediction log: database write failed ({message}); retrying\n"
                    )
                self.stats.last_error = message
                if not idle:
                    self._returned.append(batch)
                    self._pending[idle] = None
                return False
            self._retrying = False
            if self.stats.last_error:
                sys.stderr.write("prediction log: database writes resumed\n")
                self.stats.last_error = ""
            self._pending[idle] = None
            self.stats.add("written", len(batch))
            self._notify()
        return True

    def _insert(self, batch: Packed, idle: bool, polite: bool) -> None:
        """One batch into the store, its start noted for `_behind` while it runs."""
        self._inserting[idle] = time.monotonic()
        try:
            self.store.insert(batch, self.model_sha256, self.instance, polite)
        finally:
            self._inserting[idle] = 0.0

    def _ready(self, until: int, idle: bool) -> bool:
        """Whether this pass has a batch to insert: one a failure left pending, else one
        taken now (see `_write_all`)."""
        if self._pending[idle] is None:
            # Far behind, the idle thread leaves the rows to the catch-up thread (unless the
            # database is down: its retries and backoff are this thread's).
            if idle and self._leave_to_catch_up():
                self._urgent.set()
                return False
            whole = self._waiting() >= self.batch_rows
            if not (whole or self._returned or self._taken < max(until, self._flush_to)):
                return False
            self._take(idle)
            # Taking a batch took a while: the loop runs before the insert.
            started = time.perf_counter()
            self._hand_over()
            contended = time.perf_counter() - started > CONTENDED_SECONDS
            batch = self._pending[idle]
            if idle and batch is not None and self._leave_to_catch_up(contended):
                # Fallen behind while set aside: the batch goes to the catch-up thread, and
                # this thread, waiting on its timer, stops asking for the GIL (each ask made
                # a busy thread stop and wait until this one, last in line for the core,
                # had run).
                self._returned.append(batch)
                self._pending[idle] = None
                self._urgent.set()
                return False
        if self._pending[idle] is None:
            self._notify()
            return False
        return True

    def _leave_to_catch_up(self, contended: bool = False) -> bool:
        """Whether the idle thread leaves the rows to the catch-up thread: the core
        `contended`, the rows behind, or the catch-up thread writing (unless the database is
        down or the writer closing: the retries, with their backoff, and the final drain are
        the idle thread's)."""
        if self._stop or self._retrying:
            return False
        behind = self._waiting() >= self._catch_up_rows
        return contended or behind or self._catching_up

    def _notify(self) -> None:
        """Wake a flush() waiting, unless that means waiting for its lock (flush polls)."""
        if self._idle.acquire(blocking=False):
            try:
                self._idle.notify_all()
            finally:
                self._idle.release()

    def _already_written(self, batch: Packed) -> bool:
        """Whether a batch is in the database: a commit can succeed and its answer be lost
        (a connection reset), and its retry is then refused as a duplicate."""
        try:
            return bool(self.store.batches_of(batch.ids()[:1], self.model_sha256))
        except DatabaseDown:
            return False

    def _drop_batch(self, exc: BaseException, idle: bool) -> None:
        lost = len(self._pending[idle] or ())
        self._pending[idle] = None
        self.stats.add("failures", 1)
        self.stats.add("dropped", lost)
        sys.stderr.write(f"prediction log: {lost} rows refused and dropped ({said(exc)})\n")

    def _polite(self) -> bool:
        """Whether a writing thread hands the core over between its steps (see POLITE_SHARE)."""
        return self.queued_rows < POLITE_SHARE * self.max_queue_rows

    def _hand_over(self) -> None:
        if self._polite():
            hand_over()

    def _take(self, idle: bool) -> None:
        """Move a batch to the `idle` or catch-up thread's pending: one returned for a retry,
        else a filled slab, else queued requests (made into entries here, outside the books'
        lock), else the open slab, which the loop goes on filling until it is taken."""
        returned = _pop(self._returned)
        if returned is not None:
            self._pending[idle] = returned
            return
        slab = _pop(self._filled)
        if slab is None and not self._queue:
            # Shared with the loop, which waits for it at its turn's end: a thread set aside
            # holding it gets the core back as soon as the loop stops for it.
            with self._slab_lock:
                if self._slab.rows:
                    slab, self._slab = self._slab, self._fresh_slab()
        if slab is not None:
            batch = slab.pack()
            if len(self._spare) < SPARE_SLABS:
                self._spare.append(slab)
            self._hold(batch, len(batch), idle)
            return
        # Up to a batch of items (a batch request is queued whole, as one item); the idle
        # thread takes up to a batch of rows, since a thread set aside with more in hand would
        # keep them from the other. Popped by C calls, each item by one thread: a Python loop
        # over thousands of entries would hold the GIL (and the serving thread) for as long.
        queue = self._queue
        if idle:
            items: list[Entry | _Request] = []
            rows = 0
            while rows < self.batch_rows and (item := _pop(queue)) is not None:
                items.append(item)
                rows += 1 if len(item) == _ENTRY_WIDTH else len(cast(_Request, item)[0].ids)
        else:
            popped = starmap(_pop, repeat((queue,), min(len(queue), self.batch_rows)))
            items = [item for item in popped if item is not None]
        self._hold(*self._entries(items), idle)

    def _hold(self, batch: Packed, taken: int, idle: bool) -> None:
        """A batch taken by the `idle` or catch-up thread: pending first, then counted as
        taken, so flush() never sees its rows neither queued nor pending."""
        if self._windows is not None and len(batch):
            self._windows[idle].extend(batch)
        self._pending[idle] = batch if len(batch) else None
        self._taken_by[idle] += taken

    def _entries(self, items: list[Entry | _Request]) -> tuple[Packed, int]:
        """Queued items (entries, requests) as one batch, and the rows they counted for."""
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
            return request_entries(*request)
        except (TypeError, ValueError) as exc:
            self._refuse(len(request[0].ids), exc)
            return []

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
        assert self._windows is not None
        # Both writing threads' windows: the newest rows of each (on a busy core, most are
        # the catch-up thread's).
        cutoff = (now or self.clock()) - DRIFT_WINDOW_SECONDS
        columns, predictions = self._windows[True].since(cutoff)
        more_columns, more_predictions = self._windows[False].since(cutoff)
        for name, values in more_columns.items():
            columns[name].extend(values)
        predictions.extend(more_predictions)
        report = compare_columns(self.profile, columns, predictions)
        self.stats.drift, self.stats.drift_time = report, now or self.clock()
        return report
