"""ONNX export of a fitted pipeline, kept only when it predicts like scikit-learn."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from tabship.engines import onnx_feeds
from tabship.schema import Schema

# ONNX Runtime evaluates tree ensembles in float32, so regression gets a tolerance
# relative to the size of the predictions; classification must agree almost exactly.
REGRESSION_RELATIVE_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = 1e-5
# onnxmltools' LightGBM and XGBoost converters emit TreeEnsemble nodes of ai.onnx.ml opset 3;
# the main domain stays at the newest skl2onnx has tested.
ML_OPSET = 3
PARITY_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Parity:
    """The outcome of comparing ONNX with scikit-learn on the training table."""

    passed: bool
    max_abs_diff: float | None
    tolerance: float | None
    rows: int
    reason: str
    labels_equal: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for tabship.json."""
        return {
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "rows": self.rows,
            "labels_equal": self.labels_equal,
            "reason": self.reason,
        }


def convert(pipeline: Pipeline, schema: Schema, task: str) -> bytes:
    """Serialise the whole pipeline as an ONNX graph with one input per feature."""
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    from tabship.converters import register_converters

    register_converters()
    inputs = [
        (name, StringTensorType([None, 1]) if text else FloatTensorType([None, 1]))
        for name, text in schema.inputs
    ]
    options = {id(pipeline): {"zipmap": False}} if task == "classification" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skl2onnx warns about opset choices it then handles
        model = convert_sklearn(
            pipeline,
            initial_types=inputs,
            options=options,
            target_opset={"": get_latest_tested_opset_version(), "ai.onnx.ml": ML_OPSET},
        )
    return bytes(model.SerializeToString())


def export(
    pipeline: Pipeline, schema: Schema, task: str, features: pd.DataFrame
) -> tuple[bytes | None, Parity]:
    """The ONNX bytes if conversion works and matches scikit-learn on `features`, with the evidence."""
    import onnxruntime as ort

    rows = len(features)
    try:
        model = convert(pipeline, schema, task)
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as exc:
        message = str(exc).splitlines()[0][:200] if str(exc) else ""
        return None, Parity(
            False, None, None, rows, f"conversion failed: {type(exc).__name__}: {message}"
        )
    input_names = [node.name for node in session.get_inputs()]
    regression = task == "regression"
    diff, total, wrong_labels = 0.0, 0.0, 0
    # Every row is compared, a chunk at a time, so a million-row table never holds both
    # engines' inputs and outputs for all rows at once.
    for first in range(0, rows, PARITY_CHUNK_ROWS):
        chunk = features.iloc[first : first + PARITY_CHUNK_ROWS]
        columns = {name: chunk[name].to_numpy().reshape(-1, 1) for name in schema.input_names}
        outputs = session.run(None, onnx_feeds(schema, input_names, columns))
        if regression:
            expected = np.asarray(pipeline.predict(chunk), dtype=np.float64)
            actual = np.asarray(outputs[0], dtype=np.float64).ravel()
            diff = max(diff, float(np.max(np.abs(actual - expected))))
            total += float(np.sum(np.abs(expected)))
        else:
            expected_proba = np.asarray(pipeline.predict_proba(chunk), dtype=np.float64)
            actual_proba = np.asarray(outputs[1], dtype=np.float64)
            diff = max(diff, float(np.max(np.abs(actual_proba - expected_proba))))
            expected_labels = np.asarray(pipeline.predict(chunk))
            wrong_labels += int(np.sum(np.asarray(outputs[0]).ravel() != expected_labels))
    if regression:
        tolerance = REGRESSION_RELATIVE_TOLERANCE * total / max(rows, 1)
        passed = diff <= tolerance
        reason = (
            "matches scikit-learn" if passed else "differs from scikit-learn beyond the tolerance"
        )
        return (model if passed else None), Parity(passed, diff, tolerance, rows, reason)
    labels_equal = wrong_labels == 0
    passed = labels_equal and diff <= PROBABILITY_TOLERANCE
    if passed:
        reason = "matches scikit-learn"
    elif not labels_equal:
        reason = f"{wrong_labels} labels differ from scikit-learn"
    else:
        reason = "probabilities differ from scikit-learn beyond the tolerance"
    return (model if passed else None), Parity(
        passed, diff, PROBABILITY_TOLERANCE, rows, reason, labels_equal
    )
