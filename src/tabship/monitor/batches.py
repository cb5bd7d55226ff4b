"""The batches the writing threads take from the backlog (backlog.py) and hold until written.

Each writing thread (writer.py) has the batch in hand, by `idle`; a batch the catch-up thread
could not write waits in `_returned` for the idle thread's retries. A batch is taken as a
filled slab, else as queued requests made into entries here, off the event loop, else as the
open slab. Taking hands the core over between its steps while the writer keeps up
(POLITE_SHARE), so the serving thread is not kept waiting by a thread behind it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from itertools import repeat, starmap
from typing import TypeVar, cast

from tabship.monitor.backlog import (
    BATCH_ROWS,
    ENTRY_WIDTH,
    MAX_QUEUE_ROWS,
    SPARE_SLABS,
    WAIT_SECONDS,
    Backlog,
    QueuedRequest,
)
from tabship.monitor.handover import hand_over
from tabship.monitor.packed import Packed
from tabship.monitor.profile import ReferenceProfile
from tabship.monitor.tables import Entry, request_entries
from tabship.monitor.window import RecentInputs

# Behind by more than this share of the queue's bound, a writing thread stops handing the
# core and the GIL over between its steps: each hand-over costs it up to a switch interval
# (5 ms) of waiting for a busy loop to give the GIL back, and under batch traffic (4 clients
# of 1,000-row requests) it fell so far behind that three rows in four were dropped, with the
# database healthy. Catching up, it takes the GIL as often as the loop does.
POLITE_SHARE = 0.25
T = TypeVar("T")


def _pop(items: deque[T]) -> T | None:
    """The first item, or None if another thread took the last one (one C call)."""
    try:
        return items.popleft()
    except IndexError:
        return None


class Batches(Backlog):
    """The backlog as the writing threads take it: each one's batch in hand, the batches
    returned for a retry, and the drift windows (window.py) the taken rows feed."""

    def __init__(
        self,
        profile: ReferenceProfile | None = None,
        *,
        max_queue_rows: int = MAX_QUEUE_ROWS,
        wait_seconds: float = WAIT_SECONDS,
        batch_rows: int = BATCH_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            max_queue_rows=max_queue_rows,
            wait_seconds=wait_seconds,
            batch_rows=batch_rows,
            clock=clock,
        )
        # The batch each writing thread has in hand, by `idle`.
        self._pending: dict[bool, Packed | None] = {True: None, False: None}
        # Batches the catch-up thread could not write (the database down): retried by the
        # idle thread, whose retries back off.
        self._returned: deque[Packed] = deque()
        self._windows = (
            {idle: RecentInputs(profile) for idle in (True, False)} if profile is not None else None
        )

    @property
    def queued_rows(self) -> int:
        """Rows waiting to be written (queued, pending and returned)."""
        held = [*self._pending.values(), *self._returned]
        return self._waiting() + sum(len(batch) for batch in held if batch)

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
            items: list[Entry | QueuedRequest] = []
            rows = 0
            while rows < self.batch_rows and (item := _pop(queue)) is not None:
                items.append(item)
                rows += 1 if len(item) == ENTRY_WIDTH else len(cast(QueuedRequest, item)[0].ids)
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

    def _entries(self, items: list[Entry | QueuedRequest]) -> tuple[Packed, int]:
        """Queued items (entries, requests) as one batch, and the rows they counted for."""
        rows: list[Entry] = []
        taken = 0
        for item in items:
            if len(item) == ENTRY_WIDTH:
                rows.append(cast(Entry, item))
                taken += 1
            else:
                request = cast(QueuedRequest, item)
                taken += len(request[0].ids)
                rows.extend(self._request_rows(request))
                self._hand_over()  # a batch request's rows took a while: let the loop in
        return Packed.of(rows), taken

    def _request_rows(self, request: QueuedRequest) -> list[Entry]:
        """A batch request's rows; none (dropped and said) if a value cannot be written."""
        try:
            return request_entries(*request)
        except (TypeError, ValueError) as exc:
            self._refuse(len(request[0].ids), exc)
            return []
