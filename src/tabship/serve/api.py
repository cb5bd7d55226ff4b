"""The JSON data plane: /predict_api, /v1/predict and /v1/model translate JSON to the predictor.

They never validate or predict on their own: records go to `Predictor.predict`, errors are
raised as TabshipError and mapped to answers by the one mapper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Any

from tabship.config import ServeSettings
from tabship.errors import BodyTooLargeError, MalformedBodyError, RequestTimeoutError
from tabship.monitor.ids import ColumnRecords
from tabship.predictor import Prediction, Predictor
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

    async def predict_one(self, request: Request) -> Answer:
        """The tutorial's route: one record in, the bare prediction out."""
        return await self._run(request, self._one)

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
        record = contract.read_json(request.content_type, request.body)
        if not isinstance(record, dict):
            raise MalformedBodyError("body: must be one JSON object of field: value")
        prediction, ids = self._predict(request, [record])
        return json_answer(prediction.values[0], extra=((b"x-prediction-id", ids[0].encode()),))

    def _many(self, request: Request) -> Answer:
        payload = contract.read_json(request.content_type, request.body)
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
        prediction, ids = self._predict(request, instances)
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
