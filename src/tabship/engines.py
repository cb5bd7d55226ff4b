"""The two inference engines: ONNX Runtime (fast, light) and scikit-learn (the fallback)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from tabship.schema import Schema


class Engine(Protocol):
    """Turns validated input columns into predictions (and class probabilities)."""

    name: str

    def run(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted values (regression) or class indices, and probabilities or None."""
        ...


def onnx_feeds(
    schema: Schema, input_names: list[str], columns: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Engine input: float32 numbers and string categories, one (n, 1) tensor per feature.

    The converter rewrites names it dislikes (spaces become underscores), so inputs are
    matched by position, which it keeps.
    """
    return {
        input_name: columns[feature.name].astype(np.float32)
        if feature.kind == "numeric"
        else columns[feature.name]
        for feature, input_name in zip(schema.features, input_names, strict=True)
    }


class OnnxEngine:
    """ONNX Runtime session over the exported pipeline; no pandas, no scikit-learn."""

    name = "onnx"

    def __init__(self, model: bytes, schema: Schema, task: str, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One request is one small row: threads would only add hand-over latency.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._schema = schema
        self._input_names = [node.name for node in self._session.get_inputs()]
        self._classification = task == "classification"

    def run(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the graph on one batch of validated columns."""
        outputs = self._session.run(None, onnx_feeds(self._schema, self._input_names, columns))
        if self._classification:
            return np.asarray(outputs[0]).ravel(), np.asarray(outputs[1], dtype=np.float64)
        return np.asarray(outputs[0], dtype=np.float64).ravel(), None


class SklearnEngine:
    """The fitted scikit-learn pipeline, for models whose ONNX export missed parity."""

    name = "sklearn"

    def __init__(self, pipeline: Any, schema: Schema, task: str) -> None:
        self._pipeline = pipeline
        self._schema = schema
        self._classification = task == "classification"

    def run(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Build the frame the pipeline was fitted on and predict."""
        import pandas as pd

        frame = pd.DataFrame({name: columns[name].ravel() for name in self._schema.names})
        if self._classification:
            proba = np.asarray(self._pipeline.predict_proba(frame), dtype=np.float64)
            return np.argmax(proba, axis=1), proba
        return np.asarray(self._pipeline.predict(frame), dtype=np.float64), None
