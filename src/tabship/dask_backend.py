"""tabship's joblib backend for a Dask cluster: joblib's own, with a local run's semantics.

Imported only inside `cluster.session` (it needs Dask). The classes live at module level so
a task refers to them by name: every worker runs the same tabship (the version check).

- Nested calls. joblib runs each batch on a worker under `parallel_config(backend="dask")`,
  and its dask backend sends every nested joblib call back to the cluster whatever its
  n_jobs: each column transformer's fit and transform became a task of its own (four in five
  of all tasks, a scheduler round trip each). Here, as in a local worker process, a nested
  n_jobs of None or 1 runs inside the task (a random forest sums its trees in the local
  order); an explicit larger one still goes to the cluster, whose workers secede while they
  wait, so it cannot deadlock.
- One fold per task (`compute_batch_size`).
- Small arguments travel with their task (`start_call`).
- A call's results are collected as they arrive, not every 10 ms (`_collect`).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

import joblib
from joblib._dask import Batch, DaskDistributedBackend

# The collector's fallback poll (joblib's own interval) in case a wake-up is missed.
COLLECT_POLL = 0.01


class LocalSemanticsBatch(Batch):  # type: ignore[misc]
    """A task's folds, run with nested joblib calls as a local worker process runs them."""

    def __call__(self, tasks: Any = None) -> list[Any]:
        with joblib.parallel_config(backend=Nested(), n_jobs=1):
            return [func(*args, **kwargs) for func, args, kwargs in tasks]


class Backend(DaskDistributedBackend):  # type: ignore[misc]
    """joblib's dask backend, one fold per task, collecting results as they arrive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.submitted = asyncio.Event()
        add = self.waiting_futures.add

        def wake(future: Any) -> None:  # on the client's loop, as joblib submits a task
            add(future)
            self.submitted.set()

        self.waiting_futures.add = wake

    def start_call(self) -> None:
        # joblib also scatters, per call, every other argument over 1 kB (fold indices) to
        # one worker; when that worker dies the data is gone and the run fails. Those small
        # arguments travel with their task instead (no call_data_futures), so the scheduler
        # can rerun it anywhere; the table itself is scattered to every worker by
        # `cluster.session` and `cluster.scattered`.
        self._continue = True
        self.calls += 1
        self.client.loop.add_callback(self._collect, self.calls)
        self.call_data_futures: Any = None

    def stop_call(self) -> None:
        # No 10 ms sleep for the collector to notice: it ends once its call is not the last.
        self._continue = False
        self.call_data_futures = {}

    def compute_batch_size(self) -> int:
        # One fold per task. joblib batches fast tasks together and, as one backend serves
        # every call of the session, a batch size learned on a quick candidate's folds was
        # applied to the next, slower one: four of five folds on one worker, the other idle
        # (a local pool starts every call at one).
        return 1

    async def _collect(self, call: int) -> None:
        # joblib's own collector polls every 10 ms once nothing is pending, so each call
        # waited for its first result and again to stop (30 ms a call against loky's 10 for
        # five quick folds). Here a submitted task wakes it.
        while self._continue and call == self.calls:
            self.submitted.clear()
            async for future, result in self.waiting_futures:
                outcome, callback = self._results.pop(future), self._callbacks.pop(future)
                if future.status == "error":
                    outcome.set_exception(result[1])
                else:
                    outcome.set_result(result)
                    callback(result)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.submitted.wait(), COLLECT_POLL)

    async def _to_func_args(self, func: Any) -> tuple[Any, Any]:
        _, tasks = await super()._to_func_args(func)
        return LocalSemanticsBatch(tasks), tasks


class Nested(Backend):
    """On a worker: n_jobs 1 (what None resolves to there) runs in the calling task.

    The top-level backend keeps sending even n_jobs=1 (the refit) to the cluster.
    """

    def effective_n_jobs(self, n_jobs: int) -> int:
        return 1 if n_jobs == 1 else int(super().effective_n_jobs(n_jobs))
