"""The inference engine used by predict, serve and the container."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tabship.artifact import ONNX_FILE, Artifact
from tabship.card import ModelCard
from tabship.cells import CellMemo
from tabship.classes import answer_key, typed_label
from tabship.engines import Engine, OnnxEngine, SklearnEngine
from tabship.errors import ArtifactError
from tabship.schema import Batch, Schema


class Prediction(NamedTuple):
    """Predictions for a list of records, in order, with the validation warnings."""

    values: list[Any]
    probabilities: list[dict[str, float]] | None
    warnings: list[str]
    # Rows per feature whose category was not seen in training (predicted as unknown).
    unseen: dict[str, int]


class Predictor:
    """A verified model folder, ready to predict records or validated batches."""

    def __init__(self, artifact: Artifact, engine: Engine, strict_categories: bool = False) -> None:
        self.artifact = artifact
        self.card: ModelCard = artifact.card
        self.engine = engine
        self.schema: Schema = self.card.schema
        self.task = self.card.task
        self.target = self.card.target
        self.classes = list(self.card.classes)
        # Each class as answers give it: 1 for a 0/1 target, true for a boolean one.
        self.labels: list[Any] = [
            typed_label(label, self.card.label_type) for label in self.classes
        ]
        # Each class's name where answers key by it: `true`, the label as JSON writes it.
        self.keys = [answer_key(label, self.card.label_type) for label in self.classes]
        self.strict_categories = strict_categories

    @classmethod
    def load(
        cls,
        directory: Path | str,
        engine: str | None = None,
        threads: int = 1,
        strict_categories: bool = False,
        sealed: str | None = None,
    ) -> Predictor:
        """Open and verify a model folder; `engine` forces 'onnx' or 'sklearn' over the recorded one.

        `sealed`: the seal a signature check vouched for; any other folder is refused before
        its model is deserialised.
        """
        artifact = Artifact.open(directory)
        if sealed is not None and artifact.card.sha256 != sealed:
            raise ArtifactError(
                f"{directory} changed between its signature check and its loading; load it again"
            )
        card = artifact.card
        chosen = card.engine if engine is None else engine  # '' is refused, not the default
        if chosen == "onnx":
            if ONNX_FILE not in card.files:
                raise ArtifactError(
                    f"{directory} has no {ONNX_FILE} ({card.onnx.reason}); use the sklearn engine"
                )
            model = artifact.load_onnx()
            return cls(
                artifact,
                OnnxEngine(model, card.schema, card.task, threads, where=str(directory)),
                strict_categories,
            )
        if chosen == "sklearn":
            pipeline = artifact.load_pipeline()
            return cls(artifact, SklearnEngine(pipeline, card.schema, card.task), strict_categories)
        raise ArtifactError(f"unknown engine {chosen!r}; choose onnx or sklearn")

    def predict(self, records: Sequence[Mapping[str, Any]]) -> Prediction:
        """Validate JSON-like records and predict them; raises RecordError naming bad fields."""
        strict = self.strict_categories
        return self._finish(self.schema.validate(records, strict, self.engine.numbers))

    def predict_columns(self, columns: Mapping[str, list[Any]], rows: int) -> Prediction:
        """Validate one column per feature (the Open Inference Protocol's tensors) and predict."""
        strict = self.strict_categories
        return self._finish(
            self.schema.validate_columns(columns, rows, strict, self.engine.numbers)
        )

    def _finish(self, batch: Batch) -> Prediction:
        values, proba = self.predict_batch(batch)
        if self.task == "classification":
            assert proba is not None
            labels = [self.labels[int(i)] for i in values]
            probabilities = [dict(zip(self.keys, map(float, row), strict=True)) for row in proba]
            return Prediction(labels, probabilities, batch.warnings, batch.unseen)
        return Prediction(values.tolist(), None, batch.warnings, batch.unseen)

    def predict_batch(
        self, batch: Batch, memo: CellMemo | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw engine output for validated columns: values or class indices, and probabilities.

        `memo` (from `engine.memo()`) keeps predictions per decision cell between the
        batches of one file, so a cell met again is not predicted again.
        """
        return self.engine.run(batch.columns, batch.rows, batch.codes, memo)
