"""The inference engine used by predict, serve and the container."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tabship.artifact import Artifact
from tabship.engines import Engine, OnnxEngine, SklearnEngine
from tabship.errors import ArtifactError
from tabship.schema import Batch, Schema


@dataclass(frozen=True)
class Prediction:
    """Predictions for a list of records, in order, with the validation warnings."""

    values: list[Any]
    probabilities: list[dict[str, float]] | None = None
    warnings: list[str] = field(default_factory=list)


class Predictor:
    """A verified model folder, ready to predict records or validated batches."""

    def __init__(self, artifact: Artifact, engine: Engine) -> None:
        meta = artifact.metadata
        self.artifact = artifact
        self.engine = engine
        self.schema = Schema.from_dict(meta["schema"])
        self.task: str = meta["task"]
        self.target: str = meta["target"]
        self.classes: list[str] = list(meta.get("classes", []))

    @classmethod
    def load(cls, directory: Path | str, engine: str | None = None, threads: int = 1) -> Predictor:
        """Open and verify a model folder; `engine` forces 'onnx' or 'sklearn' over the recorded one."""
        artifact = Artifact.open(directory)
        meta = artifact.metadata
        chosen = engine or meta["engine"]
        schema = Schema.from_dict(meta["schema"])
        if chosen == "onnx":
            if "model.onnx" not in meta["files"]:
                raise ArtifactError(
                    f"{directory} has no model.onnx ({meta['onnx']['reason']}); use the sklearn engine"
                )
            return cls(artifact, OnnxEngine(artifact.load_onnx(), schema, meta["task"], threads))
        if chosen == "sklearn":
            return cls(artifact, SklearnEngine(artifact.load_pipeline(), schema, meta["task"]))
        raise ArtifactError(f"unknown engine {chosen!r}; choose onnx or sklearn")

    @property
    def metadata(self) -> dict[str, Any]:
        """The artifact's tabship.json content."""
        return self.artifact.metadata

    def predict(self, records: Sequence[Mapping[str, Any]]) -> Prediction:
        """Validate JSON-like records and predict them; raises RecordError naming bad fields."""
        batch = self.schema.validate(records)
        values, proba = self.predict_batch(batch)
        if self.task == "classification":
            assert proba is not None
            labels = [self.classes[int(i)] for i in values]
            probabilities = [dict(zip(self.classes, map(float, row), strict=True)) for row in proba]
            return Prediction(labels, probabilities, batch.warnings)
        return Prediction(values.tolist(), None, batch.warnings)

    def predict_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw engine output for validated columns: values or class indices, and probabilities."""
        return self.engine.run(batch.columns)
