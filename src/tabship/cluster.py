"""Training on a Dask cluster: the same scikit-learn calls, run by joblib's dask backend.

Nothing here is a second training path. `session()` is a context around training that makes
joblib hand every cross-validation fold, tuning trial and the final fit to the cluster's
workers (scikit-learn's documented way); outside it the same calls run on local processes.
"""

from __future__ import annotations

import _thread
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from tabship.errors import ConfigError, TabshipError

CONNECT_TIMEOUT = 10.0
# With no worker at all for this long the run stops with an error instead of waiting forever
# (a lost worker alone is retried by the scheduler on the others).
WORKERLESS_TIMEOUT = 60.0
WATCH_INTERVAL = 0.5
SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")
# Distribution names whose versions must match on the client and every worker: a fold fitted
# under another scikit-learn (or another tabship) is not the model this client will ship.
MATCHED = (
    "scikit-learn",
    "numpy",
    "scipy",
    "pandas",
    "joblib",
    "lightgbm",
    "xgboost-cpu",
    "dask",
    "distributed",
    "cloudpickle",
)
SKEW_SHOWN = 5
BACKEND = "tabship-dask"

Estimator = TypeVar("Estimator")


class ClusterError(TabshipError):
    """The Dask cluster cannot be reached, lost its workers, or runs other library versions."""


@dataclass(frozen=True)
class Session:
    """A connected cluster: its client and how many workers and threads it had at the start."""

    client: Any
    address: str
    workers: int
    threads: int
    # id() of the objects scattered for the whole run (the table), so none is sent twice.
    shared: frozenset[int] = frozenset()


_ACTIVE: ContextVar[Session | None] = ContextVar("tabship_cluster", default=None)


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A Dask client for `address`, or a ClusterError that says what to check."""
    if not address.startswith(SCHEMES):
        raise ConfigError(
            f"--cluster {address!r} is not a Dask scheduler address; e.g. tcp://SCHEDULER:8786"
        )
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "training on a cluster needs Dask: pip install 'tabship[cluster]'"
        ) from None
    from distributed.versions import VersionMismatchWarning

    try:
        with warnings.catch_warnings():
            # check_versions says what differs, once, in tabship's words (a different Python
            # patch release alone is no reason to warn).
            warnings.simplefilter("ignore", VersionMismatchWarning)
            return Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({exc}); "
            "check the address, that the scheduler runs, and that this machine reaches its port"
        ) from None


def version_skew(client: Any) -> list[str]:
    """Every MATCHED package (and Python) whose version differs between here and a worker."""
    from importlib.metadata import PackageNotFoundError, version

    def mine(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    ours = {name: mine(name) for name in MATCHED}
    report = client.get_versions(packages=list(MATCHED))
    skew = _tabship_skew(client)
    for worker, info in sorted((report.get("workers") or {}).items()):
        packages = (info or {}).get("packages") or {}
        python = packages.get("python", "")
        local_python = report["client"]["packages"]["python"]
        if python.split(".")[:2] != local_python.split(".")[:2]:
            skew.append(f"python {local_python} here, {python or 'unknown'} on {worker}")
        for name, here in ours.items():
            there = packages.get(name)
            if here is not None and there != here:
                skew.append(f"{name} {here} here, {there or 'missing'} on {worker}")
    return skew


def check_versions(client: Any) -> None:
    """Refuse a cluster whose workers run other versions of what training depends on."""
    skew = version_skew(client)
    if skew:
        more = f" (and {len(skew) - SKEW_SHOWN} more)" if len(skew) > SKEW_SHOWN else ""
        raise ClusterError(
            "the cluster's workers run other versions than this client: "
            + "; ".join(skew[:SKEW_SHOWN])
            + more
            + ". Build the worker image from the same pins: pip install 'tabship[cluster]=="
            + (_tabship_version())
            + "'"
        )


def _tabship_version() -> str:
    from tabship import __version__

    return __version__


def _tabship_skew(client: Any) -> list[str]:
    """tabship is asked for by import: an image carries it as source, without package metadata."""
    try:
        theirs: dict[str, str] = client.run(_tabship_version)
    except ImportError as exc:
        return [f"tabship cannot be imported on the workers ({exc})"]
    here = _tabship_version()
    return [
        f"tabship {here} here, {there} on {worker}"
        for worker, there in sorted(theirs.items())
        if there != here
    ]


class _Watchdog(threading.Thread):
    """Stops the run (KeyboardInterrupt in the main thread) once the cluster has no worker."""

    def __init__(self, client: Any, timeout: float) -> None:
        super().__init__(name="tabship-cluster-watchdog", daemon=True)
        self.client = client
        self.timeout = timeout
        self.tripped = False
        self.reason = ""
        self._stop = threading.Event()

    def run(self) -> None:
        empty_since: float | None = None
        while not self._stop.wait(WATCH_INTERVAL):
            try:
                workers = len(self.client.nthreads())
            except Exception as exc:  # the scheduler itself went away
                self._trip(f"the scheduler stopped answering ({type(exc).__name__}: {exc})")
                return
            now = time.monotonic()
            if workers:
                empty_since = None
            elif empty_since is None:
                empty_since = now
            elif now - empty_since >= self.timeout:
                self._trip(f"the cluster has had no worker for {self.timeout:g} s")
                return

    def _trip(self, reason: str) -> None:
        if self._stop.is_set():
            return
        self.tripped, self.reason = True, reason
        _thread.interrupt_main()

    def stop(self) -> None:
        self._stop.set()


def _backend() -> str:
    """Register (once) tabship's joblib dask backend (see `dask_backend`); its name."""
    from joblib import register_parallel_backend

    from tabship.dask_backend import Backend

    register_parallel_backend(BACKEND, Backend)
    return BACKEND


def _lost(address: str, exc: BaseException) -> str:
    """What a lost scheduler or worker means for this run, and what to do."""
    from distributed import KilledWorker

    cause = f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(exc, KilledWorker):
        return (
            f"training on {address} stopped: a task killed its worker again and again ({cause}); "
            "check the workers' memory limit"
        )
    if "scheduler-connection-lost" in str(exc) or "CommClosed" in type(exc).__name__:
        return (
            f"training on {address} lost the scheduler ({cause}); check that it runs and run "
            "the same command again"
        )
    return f"training on {address} lost its workers ({cause}); start workers and run it again"


def _lost_errors() -> tuple[type[BaseException], ...]:
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    return (KilledWorker, CommClosedError, FutureCancelledError)


@contextmanager
def session(
    address: str | None,
    features: Any,
    labels: Any,
    *,
    timeout: float = CONNECT_TIMEOUT,
    workerless_timeout: float | None = None,
) -> Iterator[Session | None]:
    """Run the joblib calls inside on the cluster at `address` (nothing changes when None).

    The table is scattered to every worker once, up front; tasks then refer to it instead of
    carrying it. A version skew or an unreachable scheduler fails before any work starts.
    """
    if not address:
        yield None
        return
    import joblib

    client = connect(address, timeout)
    watchdog = _Watchdog(client, workerless_timeout or WORKERLESS_TIMEOUT)
    try:
        check_versions(client)
        threads = client.nthreads()
        if not threads:
            client.wait_for_workers(1, timeout=timeout)
            threads = client.nthreads()
        active = Session(
            client,
            address,
            len(threads),
            sum(threads.values()),
            frozenset({id(features), id(labels)}),
        )
        watchdog.start()
        token = _ACTIVE.set(active)
        try:
            with joblib.parallel_config(
                backend=_backend(),
                client=client,
                scatter=[features, labels],
                wait_for_workers_timeout=timeout,
            ):
                yield active
        finally:
            _ACTIVE.reset(token)
    except TimeoutError as exc:
        raise ClusterError(
            f"the Dask cluster at {address} has no worker or stopped answering: {exc}"
        ) from None
    except KeyboardInterrupt:
        if watchdog.tripped:
            raise ClusterError(
                f"training on {address} stopped: {watchdog.reason}; start workers "
                "(or check the scheduler) and run the same command again"
            ) from None
        raise
    except _lost_errors() as exc:
        raise ClusterError(_lost(address, exc)) from None
    finally:
        watchdog.stop()
        client.close()


def scattered(features: Any, labels: Any) -> AbstractContextManager[Any]:
    """Within a session, send another table (a race's sample) to the workers once, not per task."""
    active = _ACTIVE.get()
    if active is None or {id(features), id(labels)} <= active.shared:
        return nullcontext()
    import joblib

    config: AbstractContextManager[Any] = joblib.parallel_config(
        backend=_backend(), client=active.client, scatter=[features, labels]
    )
    return config


def _fit(estimator: Any, features: Any, labels: Any) -> Any:
    return estimator.fit(features, labels)


def fit(estimator: Estimator, features: Any, labels: Any) -> Estimator:
    """`estimator.fit(features, labels)`: on a worker inside a session, here otherwise.

    A one-task joblib call: the local backend runs it in this process, the dask backend on the
    cluster with the scattered table, so the refit is the same code either way.
    """
    from joblib import Parallel, delayed

    fitted: Estimator = Parallel(n_jobs=1)([delayed(_fit)(estimator, features, labels)])[0]
    return fitted


def active() -> Session | None:
    """The session training runs in, if any."""
    return _ACTIVE.get()
