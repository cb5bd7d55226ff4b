"""The JSON data plane: /predict_api, /v1/predict and /v1/model translate JSON to the predictor.

They never validate or predict on their own: records go to `Predictor.predict`, errors are
raised as TabshipError and mapped to answers by the one mapper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from functools import partial
from typing import Any

from tabship.config import ServeSettings
from tabship.errors import BodyTooLargeError, MalformedBodyError, RecordError, RequestTimeoutError
from tabship.monitor.ids import ColumnRecords
from tabship.predictor import Prediction, Predictor
from tabship.schema import Schema
from tabship.serve import contract
from tabship.serve.http import Answer, Request, json_answer
from tabship.serve.prometheus import Metrics

# A single record is a few hundred bytes and predicts in microseconds: answer it inline.
INLINE_MAX_BYTES = 16 * 1024


async def in_thread(
    pool: Executor, timeout: float, work: Callable[[], Answer], advice: str
) -> Answer:
    """`work` in the pool, answered within `timeout` seconds or refused with 504 and `advice`.

    At the timeout the thread finishes on its own and its result is dropped.
    """
    future = asyncio.get_running_loop().run_in_executor(pool, work)
    try:
        return await asyncio.wait_for(future, timeout=timeout)
    except TimeoutError:
        raise RequestTimeoutError(
            f"request: took longer than the {timeout:g} s request timeout; {advice}"
        ) from None


def model_info(predictor: Predictor) -> dict[str, Any]:
    """What /v1/model and every /v1/predict answer say about the model."""
    card = predictor.card
    return {
        "name": card.model.name,
        "task": card.task,
        "target": card.target,
        "engine": predictor.engine.name,
        "sha256": card.sha256,
    }


def as_first_row(exc: RecordError) -> RecordError:
    """A batch of one record's problems, each in row 0.

    The schema reads a lone record without a row, as /predict_api's record has none; in a
    batch the record is row 0, and /v1/predict's loc says so (`instances`, 0, the field)
    as it does for a batch of two.
    """
    problems = [
        p if p.row is not None or p.field == "instances" else replace(p, row=0)
        for p in exc.problems
    ]
    return RecordError(problems, exc.more)


class RowBatcher:
    """Single records that arrive in the same event-loop turn, predicted in one engine call.

    Under load several connections' requests are read in one turn of the loop; each waits only
    for the end of that turn, never for a timer. The engine's fixed cost per call (validation
    set-up, the ONNX run) is then paid once for all of them. Each record still gets exactly
    the answer it would get alone: a turn whose batch has an error, a warning or an unseen
    category is predicted again record by record, so every message, warning and metric is
    that record's own.

    Only for a model whose answer for a row does not depend on the rows around it, bit for
    bit (`batch_invariant`): tree ensembles are; a linear model's matrix product rounds
    differently for one row than for several, so it is never batched and a record's answer
    never depends on who else asked in the same turn.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.pending: list[tuple[dict[str, Any], asyncio.Future[Prediction]]] = []
        self.enabled = batch_invariant(predictor)

    def predict(self, record: dict[str, Any]) -> asyncio.Future[Prediction]:
        """The prediction for `record`, ready at the end of this loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        if not self.pending:
            loop.call_soon(self.flush)
        self.pending.append((record, future))
        return future

    def flush(self) -> None:
        """Predict what this turn gathered and hand each request its own part."""
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), MAX_BATCH_ROWS):
            self._predict(pending[start : start + MAX_BATCH_ROWS])

    def _predict(self, pending: list[tuple[dict[str, Any], asyncio.Future[Prediction]]]) -> None:
        if len(pending) > 1:
            try:
                batch = self.predictor.predict([record for record, _ in pending])
            except Exception:  # a record is refused (or worse): each hears its own answer below
                batch = None
            if batch is not None and not batch.warnings and not batch.unseen:
                for row, (_, future) in enumerate(pending):
                    _settle(future, partial(_row, batch, row))
                return
        for record, future in pending:
            _settle(future, partial(self.predictor.predict, [record]))


# Rows predicted alone and in batches of these sizes must agree bit for bit to batch.
# A turn's batch holds at most the requests in flight (--max-concurrency, 64 by default); it is
# predicted in parts of at most the largest size tried.
_PROBE_SIZES = (2, 3, 5, 8, 13, 16, 64)
MAX_BATCH_ROWS = _PROBE_SIZES[-1]
# Distinct probe rows; bigger batches repeat them, each copy at another position.
_PROBE_ROWS = 16


def batch_invariant(predictor: Predictor) -> bool:
    """Whether each row's prediction is the same, bit for bit, alone or within a batch.

    Tried once at load on rows spread over the training ranges and levels: a model whose
    numbers depend on the batch's size (a matrix product's blocking) shows it at once. Only
    for the ONNX engine (about 2 ms): the scikit-learn fallback builds a DataFrame per call,
    which would make this check cost a quarter of a second of start-up.
    """
    if predictor.engine.name != "onnx":
        return False
    records = probe_records(predictor.schema, _PROBE_ROWS)
    try:
        alone = [predictor.predict([record]) for record in records]
        for size in _PROBE_SIZES:
            batch = predictor.predict([records[row % _PROBE_ROWS] for row in range(size)])
            for row in range(size):
                expected = alone[row % _PROBE_ROWS]._replace(warnings=[], unseen={})
                if _row(batch, row) != expected:
                    return False
    except Exception:  # a model that refuses its own probe rows is simply not batched
        return False
    return True


def probe_records(schema: Schema, count: int) -> list[dict[str, Any]]:
    """`count` valid records, their numbers spread over each range, their levels cycled."""
    example = contract.example_record(schema)
    records = []
    for index in range(count):
        record = dict(example)
        for position, feature in enumerate(schema.features):
            if feature.kind == "numeric" and feature.minimum is not None:
                share = ((index * 7 + position * 3) % 23) / 22
                low, high = feature.minimum, feature.maximum or feature.minimum
                value = low + (high - low) * share
                record[feature.name] = round(value) if feature.integer else value
            elif feature.kind == "categorical" and feature.known_levels:
                levels = feature.known_levels
                record[feature.name] = levels[(index + position) % len(levels)]
        records.append(record)
    return records


def _row(batch: Prediction, row: int) -> Prediction:
    """One row of a batch's prediction that had no warnings and no unseen categories."""
    probabilities = batch.probabilities
    return Prediction(
        batch.values[row : row + 1],
        None if probabilities is None else probabilities[row : row + 1],
        [],
        {},
    )


def _settle(future: asyncio.Future[Prediction], work: Callable[[], Prediction]) -> None:
    """Resolve `future` with what `work` gives or raises (unless its request went away)."""
    if future.done():
        return
    try:
        future.set_result(work())
    except Exception as exc:  # the request's own layers map it, as they would inline
        future.set_exception(exc)


class JsonApi:
    """Parse, predict and shape the answer; raises TabshipError for bad input."""

    def __init__(
        self, predictor: Predictor, settings: ServeSettings, metrics: Metrics, pool: Executor
    ) -> None:
        self.predictor = predictor
        self.settings = settings
        self.metrics = metrics
        self.pool = pool
        self.info = model_info(predictor)
        self.rows = RowBatcher(predictor)

    async def predict_one(self, request: Request) -> Answer:
        """The tutorial's route: one record in, the bare prediction out.

        A small body is predicted together with the others of this loop turn (RowBatcher).
        """
        if not self.batches(request):
            return await self._run(request, self._one)
        record = self._record(request)
        prediction = await self.rows.predict(record)
        return self._one_answer(request, record, prediction)

    def batches(self, request: Request) -> bool:
        """Whether a single record in this request joins its loop turn's batch (RowBatcher)."""
        return self.rows.enabled and len(request.body) <= INLINE_MAX_BYTES

    async def predict_record(
        self, request: Request, record: dict[str, Any]
    ) -> tuple[Prediction, list[str]]:
        """One record of another protocol, predicted with the others of this loop turn."""
        return self._count(request, [record], await self.rows.predict(record))

    async def predict_many(self, request: Request) -> Answer:
        """{"instances": [...]} in; predictions, warnings and the model out."""
        return await self._run(request, self._many)

    async def answer(self, request: Request, work: Callable[[Request], Answer]) -> Answer:
        """Run another protocol's parse-predict-answer `work` the way this API runs its own."""
        return await self._run(request, work)

    def predict_columns(
        self, request: Request, columns: dict[str, list[Any]], rows: int
    ) -> tuple[Prediction, list[str]]:
        """Predict one column per feature (the V2 protocol's tensors), counted and logged as
        records are (the log reads the columns as records off the event loop)."""
        prediction = self.predictor.predict_columns(columns, rows)
        return self._count(request, ColumnRecords(columns, rows), prediction)

    async def _run(self, request: Request, work: Callable[[Request], Answer]) -> Answer:
        """Answer small bodies inline; parse and predict big ones in a thread, within the timeout.

        Parsing a big batch's JSON takes as long as predicting it: both leave the event loop,
        which keeps answering others (probes, the 503s of a full server). At the timeout the
        client gets 504 and the thread finishes on its own, its result dropped.
        """
        if len(request.body) <= INLINE_MAX_BYTES:
            return work(request)
        return await in_thread(
            self.pool, self.settings.request_timeout, partial(work, request), "send smaller batches"
        )

    def _predict(self, request: Request, records: Any) -> tuple[Prediction, list[str]]:
        return self._count(request, records, self.predictor.predict(records))

    def _count(
        self, request: Request, records: Sequence[Mapping[str, Any]], prediction: Prediction
    ) -> tuple[Prediction, list[str]]:
        """Every protocol's predictions pass here: the log line, the prediction log, the metrics."""
        ids = request.predicted(records, prediction)
        self.metrics.count_prediction(len(records), prediction.unseen)
        return prediction, ids

    def _one(self, request: Request) -> Answer:
        record = self._record(request)
        return self._one_answer(request, record, self.predictor.predict([record]))

    def _record(self, request: Request) -> dict[str, Any]:
        record = contract.read_json(request.headers, request.body, self.settings.max_body_bytes)
        if not isinstance(record, dict):
            raise MalformedBodyError("body: must be one JSON object of field: value")
        return record

    def _one_answer(
        self, request: Request, record: dict[str, Any], prediction: Prediction
    ) -> Answer:
        _, ids = self._count(request, [record], prediction)
        return json_answer(prediction.values[0], extra=((b"x-prediction-id", ids[0].encode()),))

    def _many(self, request: Request) -> Answer:
        payload = contract.read_json(request.headers, request.body, self.settings.max_body_bytes)
        if not isinstance(payload, dict) or "instances" not in payload:
            raise MalformedBodyError('body: must be an object {"instances": [record, ...]}')
        extra = sorted(str(key)[:60] for key in payload if key != "instances")
        if extra:
            raise MalformedBodyError(f"{extra[0]}: is not allowed; the body holds only 'instances'")
        instances = payload["instances"]
        if isinstance(instances, list) and len(instances) > self.settings.max_batch:
            raise BodyTooLargeError(
                f"instances: {len(instances)} records is over the batch limit of {self.settings.max_batch}"
            )
        try:
            prediction, ids = self._predict(request, instances)
        except RecordError as exc:
            if type(instances) is list and len(instances) == 1:
                raise as_first_row(exc) from None
            raise
        answer: dict[str, Any] = {
            "predictions": prediction.values,
            "ids": ids,
            "warnings": prediction.warnings,
            "model": self.info,
        }
        if prediction.probabilities is not None:
            answer["probabilities"] = prediction.probabilities
        return json_answer(answer)

    async def model(self, request: Request) -> Answer:
        """The model card as written, with the engine actually serving and the batch limit."""
        document = dict(self.predictor.card.document)
        background = self.predictor.card.explanation
        if background is not None:
            # How explanations are computed, not the baseline rows: kept training rows
            # (--keep-background) stay in the folder, never in a public answer.
            document["explanation"] = {
                "method": "interventional-shapley",
                "background": background.kind,
                "rows": background.rows,
            }
        return json_answer({**document, **self.info, "max_batch": self.settings.max_batch})
