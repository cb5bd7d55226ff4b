"""Sharing the core with the event loop from the log's background threads."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
# A background pass (the drift gauges' refresh reads 20,000 rows at about 2 µs each) runs at
# most about this long before the loop gets the core: what a request in flight waits for it.
SLICE_SECONDS = 0.0002
# Rows between looks at the clock: a few µs each, well under a slice.
PIECE_ROWS = 32


def hand_over() -> None:
    """Let the event loop run now, from a server's background thread.

    Releasing the GIL is not enough when both threads share one core: the thread that
    released it keeps the core and takes it back before the loop is scheduled, and the loop
    then waits out the 5 ms switch interval or the kernel's time slice, which is what the
    p99 of a logging server showed. Yielding the core lets a waiting loop take both at once;
    with nothing waiting it returns at once.
    """
    if _SCHED_YIELD is None:  # Windows: releasing the GIL is what there is
        time.sleep(0)
    else:
        _SCHED_YIELD()


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


def pieces(values: Sequence[T], size: int = PIECE_ROWS) -> Iterator[tuple[int, Sequence[T]]]:
    """`values` as (start, piece) in pieces of `size`, the core handed over between pieces
    whenever a slice's worth of time has run since it last was."""
    clock = _CLOCK
    until = clock() + SLICE_SECONDS
    for start in range(0, len(values), size):
        yield start, values[start : start + size]
        if clock() >= until:
            hand_over()
            until = clock() + SLICE_SECONDS


_SCHED_YIELD = getattr(os, "sched_yield", None)
_CLOCK = time.perf_counter
