"""The server's monitoring: the log writer, POST /v1/feedback, GET /monitor and the gauges.

Built once per worker process when --log-db is set. Handlers that touch the database run in a
thread, never on the event loop; the request path itself only queues (see backlog.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tabship.classes import answer_key, class_text, typed_label
from tabship.config import ServeSettings
from tabship.errors import BodyTooLargeError, MalformedBodyError, RetryLaterError
from tabship.feature import FLOAT32_MAX, listed, past_float32, shown
from tabship.monitor.drift import ALERT, SIGNIFICANCE
from tabship.monitor.ids import is_prediction_id
from tabship.monitor.page import render_monitor
from tabship.monitor.profile import NumericProfile, load_profile
from tabship.monitor.store import DatabaseDown, LogStore
from tabship.monitor.summary import DEFAULT_SINCE_SECONDS, parse_since, summarize
from tabship.monitor.writer import LogWriter
from tabship.predictor import Predictor
from tabship.serve.contract import read_json
from tabship.serve.http import Answer, Request, html_answer, json_answer

MAX_FEEDBACK = 1000
FEEDBACK_GRACE_SECONDS = 0.3
FEEDBACK_FLUSH_SECONDS = 1.0
# An insert running this long while feedback waited for the flush: the database hangs.
FLUSH_STALLED = FEEDBACK_FLUSH_SECONDS / 2
MAX_LISTED = 10
# A regression actual this many times its training predictions' range away is refused.
FAR = 100
MONITOR_THREADS = 2


class LogUnavailableError(RetryLaterError):
    """The prediction log's database cannot be reached just now (the writer retries on its
    own; a client retries after a few flush intervals)."""

    retry_after = 5


class Monitoring:
    """One worker's prediction log and the routes that read it."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, title: str = "") -> None:
        assert settings.log_db
        self.card = predictor.card
        # The log's own threads: a /monitor summary over 100,000 rows takes seconds, and
        # feedback may wait up to a second for a flush. In the pool that big predictions use,
        # two such requests held both its threads and stalled every big /v1/predict.
        self.pool = ThreadPoolExecutor(MONITOR_THREADS, "tabship-monitor")
        self.max_body = settings.max_body_bytes
        self.title = title or self.card.title
        self.profile = load_profile(predictor.artifact)
        self.store = LogStore(settings.log_db)
        self.writer = LogWriter(
            self.store,
            self.card.sha256,
            self.profile,
            retention_days=settings.log_retention_days,
            max_queue_rows=settings.log_queue_rows,
            wait_seconds=settings.log_wait_seconds,
            drift_seconds=settings.drift_seconds,
            # Several workers share the cores: an idle-priority writer holding the GIL when
            # another worker's loop took its core would stall its own loop until that loop
            # rested (see handover.idle_priority).
            low_priority=settings.workers == 1,
            booleans=self.card.schema.boolean_names,
        )

    def register(self, registry: CollectorRegistry) -> None:
        """Add the log's counters and the drift gauges to the server's registry."""
        registry.register(LogCollector(self.writer))

    async def feedback(self, request: Request) -> Answer:
        """Store ground truth for logged predictions: {"id", "actual"} or a list of them."""
        pairs, places = self._read_feedback(request)
        warnings = self._unusual(pairs, places)
        loop = asyncio.get_running_loop()
        try:
            unknown, replaced, written = await loop.run_in_executor(
                self.pool, self._store_feedback, pairs, True
            )
            if unknown:
                # Another pod may have answered them and not flushed yet: give it a few
                # intervals, waiting here rather than in the pool (a client sending unknown
                # ids would otherwise hold its threads).
                await asyncio.sleep(FEEDBACK_GRACE_SECONDS)
                unknown, replaced, _ = await loop.run_in_executor(
                    self.pool, self._store_feedback, pairs, False
                )
        except DatabaseDown:
            raise LogUnavailableError(
                "prediction log: the database cannot be reached; retry shortly"
            ) from None
        waiting = [pid for pid in unknown if is_prediction_id(pid)]
        # Ids of the form tabship gives while the database fails, hangs or takes no writes
        # (this worker's writer says so, or another worker's would: the write lock cannot
        # be had): predictions still queued, not unknown ones (a 422 would have the client
        # throw the ground truth away). A writer merely behind is no such case.
        if waiting and (
            not (written or self.writer.database_answers(stalled=FLUSH_STALLED))
            or not await loop.run_in_executor(self.pool, self.store.takes_writes)
        ):
            raise LogUnavailableError(
                f"prediction log: {len(waiting)} of the ids are waiting to be written and the "
                "database is not taking writes; retry shortly"
            )
        if unknown:
            listed = ", ".join(
                f"{places.get(pid, '')}id {pid[:40]!r}" for pid in unknown[:MAX_LISTED]
            )
            more = f" ({len(unknown)} in all)" if len(unknown) > MAX_LISTED else ""
            raise MalformedBodyError(
                f"{listed}{more}: not a logged prediction of this model; use the ids "
                "that /v1/predict answers (or the X-Prediction-Id header of /predict_api)"
            )
        if replaced:
            warnings.append(
                f"{replaced} of the ids had another answer already; the new one replaces it"
            )
        return json_answer({"stored": len(pairs), "replaced": replaced, "warnings": warnings})

    def _read_feedback(self, request: Request) -> tuple[list[tuple[str, Any]], dict[str, str]]:
        """The (id, actual) pairs, and each id's place in a list (`[3].`) for messages."""
        payload = read_json(request.headers, request.body, self.max_body)
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            raise MalformedBodyError("body: an empty list; send at least one {id, actual}")
        if len(items) > MAX_FEEDBACK:  # 413, as an oversized /v1/predict batch
            raise BodyTooLargeError(f"body: {len(items)} items is over the limit of {MAX_FEEDBACK}")
        answers: dict[str, Any] = {}
        places: dict[str, str] = {}
        for index, item in enumerate(items):
            where = f"[{index}]." if isinstance(payload, list) else ""
            _check_fields(item, where)
            pid = item["id"]
            # ASCII: every id this tabship gives is; a lone surrogate cannot reach the database.
            if not isinstance(pid, str) or not 0 < len(pid) <= 40 or not pid.isascii():
                raise MalformedBodyError(f"{where}id: must be a prediction id (a short string)")
            actual = self._actual(item["actual"], where)
            if answers.get(pid, actual) != actual:  # which answer is true is unknown
                raise MalformedBodyError(
                    f"{where}id: {pid[:40]!r} is answered twice in the list with different "
                    f"actuals (also at {places[pid][:-1]}); send one answer an id"
                )
            answers[pid] = actual
            places[pid] = where
        return list(answers.items()), places

    def _unusual(self, pairs: list[tuple[str, Any]], places: dict[str, str]) -> list[str]:
        """A warning per actual well outside the range of the model's own predictions in
        training: stored (live values move), but said, as one such typo moves the live
        scores; one a hundred ranges away is refused."""
        predicted = self.profile.prediction if self.profile else None
        if not isinstance(predicted, NumericProfile):  # a classifier's classes
            return []
        low, high = predicted.minimum, predicted.maximum
        if low is None or high is None:
            return []
        span = max(high - low, abs(high), abs(low)) or 1.0
        for pid, value in pairs:
            # Past a hundred times the range away: a typo or a unit mix-up (cents), which
            # would swamp every live score; refused.
            if not low - FAR * span <= value <= high + FAR * span:
                raise MalformedBodyError(
                    f"{places[pid]}actual: {value:.6g} is far outside the range the model "
                    f"predicted in training ({low:.6g} to {high:.6g}); check its value and unit"
                )
        # Live values go past training's (and predictions are narrower than actuals): said
        # only a whole range beyond it, or below 0 where the model never predicted below 0.
        floor = 0.0 if low >= 0 else low - span
        odd = [(pid, value) for pid, value in pairs if not floor <= value <= high + span]
        said = [
            f"{places[pid]}actual: {value:.6g} is well outside the range the model predicted "
            f"in training ({low:.6g} to {high:.6g}); stored: if it is a typo, send the right "
            "value for the same id, which replaces it"
            for pid, value in odd[:MAX_LISTED]
        ]
        if len(odd) > MAX_LISTED:
            said.append(f"{len(odd) - MAX_LISTED} more actuals outside that range")
        return said

    def _actual(self, value: object, where: str) -> Any:
        if self.card.task == "regression":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise MalformedBodyError(
                    f"{where}actual: must be a finite number (the true {self.card.target}), "
                    f"got {shown(value)}"
                )
            # The inputs' rule: a value past it would overflow the live scores, and an integer
            # of a thousand digits does not fit a float at all.
            if not (-FLOAT32_MAX <= value <= FLOAT32_MAX):
                raise MalformedBodyError(f"{where}actual: {past_float32(value)}")
            return float(value)
        classes = self.card.classes
        text = class_text(value, self.card.label_type)
        if text not in classes:
            named = [answer_key(c, self.card.label_type) for c in classes]  # true, as answers
            raise MalformedBodyError(
                f"{where}actual: must be one of the classes {listed(named)}, got {shown(value)}"
            )
        # Stored as answers give the class (1, true), so the log's view compares it with
        # the prediction (a stored "1" never equalled a predicted 1).
        return typed_label(text, self.card.label_type)

    def _store_feedback(
        self, pairs: list[tuple[str, Any]], first: bool
    ) -> tuple[list[str], int, bool]:
        """Store the answers if every id is a logged prediction of this model (another
        model's servers may share the database); the ids that are not, how many ids had an
        answer the new one replaced, and whether everything this server queued is written."""
        # Ids answered a moment ago may still be queued. Bounded: this waits in the log's
        # pool, and a database that is down answers nothing anyway.
        written = self.writer.flush(FEEDBACK_FLUSH_SECONDS) if first else True
        ids = [pid for pid, _ in pairs]
        known = self.store.batches_of(ids, self.card.sha256)
        unknown = [pid for pid in ids if pid not in known]
        replaced = 0 if unknown else self.store.add_feedback(pairs, known)
        return unknown, replaced, written

    async def page(self, request: Request) -> Answer:
        """The monitor page over the whole log (every pod), the last 24 h by default."""
        window, notice = _since_query(request.query) or "24h", ""
        try:
            seconds = parse_since(window)
        except ValueError:
            notice = (
                f"since={window!r} is not a window such as 30m, 24h, 7d or 2w (s, m, h, d or "
                "w, at most 3650d): showing the last 24 h"
            )
            window, seconds = "24h", DEFAULT_SINCE_SECONDS
        loop = asyncio.get_running_loop()
        try:
            summary = await loop.run_in_executor(
                self.pool, lambda: summarize(self.store, self.card, self.profile, seconds)
            )
        except DatabaseDown:
            raise LogUnavailableError(
                "prediction log: the database cannot be reached; retry shortly"
            ) from None
        return html_answer(render_monitor(summary, self.card, self.title, window, notice))


def _since_query(query: bytes) -> str | None:
    """The ?since= value of a query string, if any (bounded)."""
    from urllib.parse import parse_qs

    values = parse_qs(query[:200].decode("latin-1")).get("since")
    return values[0][:20] if values else None


class LogCollector(Collector):
    """The log's counters and this process's drift, read from the writer at scrape time."""

    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Any]:
        stats = self.writer.stats
        yield CounterMetricFamily(
            "tabship_prediction_log_dropped",
            "Prediction rows dropped because the log's queue was full (database slow or down).",
            value=stats.dropped,
        )
        yield CounterMetricFamily(
            "tabship_prediction_log_written",
            "Prediction rows written to the log database.",
            value=stats.written,
        )
        yield CounterMetricFamily(
            "tabship_prediction_log_failures",
            "Batch writes that failed (they are retried).",
            value=stats.failures,
        )
        yield CounterMetricFamily(
            "tabship_prediction_log_waits",
            "Batch answers that waited for the log's writer to catch up (backpressure).",
            value=stats.waits,
        )
        yield CounterMetricFamily(
            "tabship_prediction_log_wait_seconds",
            "Seconds batch answers waited for the log's writer to catch up (backpressure).",
            value=stats.wait_seconds,
        )
        yield GaugeMetricFamily(
            "tabship_prediction_log_queue_rows",
            "Prediction rows waiting to be written.",
            value=self.writer.queued_rows,
        )
        yield from self._drift()

    def _drift(self) -> Iterator[Any]:
        report = self.writer.stats.drift
        feature = GaugeMetricFamily(
            "tabship_feature_drift",
            "Drift of this process's recent inputs from the training profile.",
            labels=["feature", "statistic"],
        )
        alert = GaugeMetricFamily(
            "tabship_drift_alert",
            f"1 when a feature's drift status is alert (PSI at least {ALERT} and the "
            f"difference past sampling noise, p < {SIGNIFICANCE}), else 0.",
            labels=["feature"],
        )
        prediction = GaugeMetricFamily(
            "tabship_prediction_drift",
            "Drift of this process's recent predictions from training's.",
            labels=["statistic"],
        )
        if report is not None:
            for item in report.features:
                for name, value in item.statistics.items():
                    feature.add_metric([item.name, name], value)
                if item.statistics:
                    alert.add_metric([item.name], 1.0 if item.status == "alert" else 0.0)
            for name, value in report.prediction.statistics.items():
                prediction.add_metric([name], value)
        yield feature
        yield alert
        yield prediction


def _check_fields(item: object, where: str) -> None:
    """A feedback item is {"id": ..., "actual": ...}: the message names what is missing or
    not a field (a key shown cut to 40 characters)."""
    shape = '{"id": ..., "actual": ...}'
    if not isinstance(item, dict):
        raise MalformedBodyError(f"body{where[:-1]}: must be an object {shape}")
    missing = [name for name in ("id", "actual") if name not in item]
    if missing:
        raise MalformedBodyError(f"{where}{missing[0]}: missing; each item is {shape}")
    extra = sorted(str(key) for key in item if key not in ("id", "actual"))
    if extra:
        raise MalformedBodyError(
            f"body{where[:-1]}: {extra[0][:40]!r} is not a field; each item is {shape} and "
            "nothing else"
        )
