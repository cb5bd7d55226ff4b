"""Handing the core back to the event loop from the log's background thread."""

from __future__ import annotations

import os
import time


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


_SCHED_YIELD = getattr(os, "sched_yield", None)
