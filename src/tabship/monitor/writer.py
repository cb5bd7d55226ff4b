"""The background writer: two threads empty the backlog (backlog.py) into the store in batches.

A thread writes every FLUSH_SECONDS, or as soon as BATCH_ROWS are waiting, each batch as one
database row (see tables.py): the database's work is per batch, not per prediction. When the
database fails or stops answering the queue fills to its bound and further rows are dropped
and counted; the thread retries with a backoff and resumes by itself. close() flushes
everything (SIGTERM loses nothing); a SIGKILL loses what arrived since the last flush, at most
one flush interval.

The thread runs at idle priority (`idle_priority`), so a request never waits for its CPU
work; a second thread at the serving thread's priority writes when the first is starved or
behind (`LogWriter._run_catch_up`, `_leave_to_catch_up`). What each thread takes to write, and
how, is batches.py.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection

from tabship.monitor.backlog import BATCH_ROWS, MAX_QUEUE_ROWS, WAIT_SECONDS
from tabship.monitor.batches import Batches
from tabship.monitor.drift import DriftReport, compare_columns
from tabship.monitor.handover import idle_priority
from tabship.monitor.packed import Packed
from tabship.monitor.profile import ReferenceProfile
from tabship.monitor.store import BatchRefused, DatabaseDown, LogStore

FLUSH_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0
# A hand-over (sched_yield) that came back after this long means other threads had the core
# all along: the idle thread then gives its batch to the catch-up thread rather than begin a
# transaction it may not get the core to finish.
CONTENDED_SECONDS = 0.01
# The idle thread's timer pass this many intervals overdue (starved): the catch-up thread
# writes, so a SIGKILL on a busy core still loses about a flush interval, not a quarter queue.
LATE_PASSES = 2
# Per-pod drift: the pod's own recent inputs (window.py), re-scored on a timer.
DRIFT_SECONDS = 30.0
DRIFT_WINDOW_SECONDS = 24 * 3600.0
RETENTION_CHECK_SECONDS = 3600.0


def instance_name() -> str:
    """This process in the log: host (the pod's name on Kubernetes) and pid."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


def said(exc: BaseException) -> str:
    """An exception as the log says it on stderr: its type and first line."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


class LogWriter(Batches):
    """The backlog (its batches, batches.py) and the two threads that empty it into the store."""

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
        booleans: Collection[str] = (),
    ) -> None:
        super().__init__(
            profile,
            max_queue_rows=max_queue_rows,
            wait_seconds=wait_seconds,
            batch_rows=batch_rows,
            clock=clock,
        )
        self.store = store
        # The writer thread at idle priority (see `idle_priority`); the catch-up thread
        # writes what it cannot.
        self.low_priority = low_priority
        self.model_sha256 = model_sha256
        self.profile = profile
        # The boolean features, whose `true` the drift reads as the level `True`.
        self.booleans = frozenset(booleans)
        self.instance = instance_name()
        self.flush_seconds = flush_seconds
        self.retention_days = retention_days
        self.drift_seconds = drift_seconds
        self._catch_up: threading.Thread | None = None
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

    def _housekeeping(self) -> None:
        now = self.clock()
        if self.profile is not None and now >= self._next_drift:
            self._next_drift = now + self.drift_seconds
            self.refresh_drift(now)
        if self.retention_days and now >= self._next_retention:
            self._next_retention = now + RETENTION_CHECK_SECONDS
            try:
                self.stats.deleted += self.store.delete_before(
                    now - self.retention_days * 86400, self.model_sha256
                )
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
        report = compare_columns(self.profile, columns, predictions, self.booleans)
        self.stats.drift, self.stats.drift_time = report, now or self.clock()
        return report
