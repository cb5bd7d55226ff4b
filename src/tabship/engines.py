"""The two inference engines: ONNX Runtime (fast, light) and scikit-learn (the fallback)."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any, Protocol

import numpy as np

from tabship.cells import CellMemo, Cells, read_cells
from tabship.errors import ArtifactError, EngineError, Problem, RecordError
from tabship.schema import MAX_LISTED_PROBLEMS, Schema

# Below this many rows one run on one thread is faster than handing chunks to others.
PARALLEL_MIN_ROWS = 20_000
# Rows of the first cell-predicted batch also run plainly, to check the cells (`_checked_cells`).
CELL_CHECK_ROWS = 512
# From this many rows a tree model predicts each decision cell once (see cells.py).
CELL_MIN_ROWS = 20_000


class Engine(Protocol):
    """Turns validated input columns into predictions (and class probabilities)."""

    name: str
    # The float type the engine computes in: validation makes numeric columns in it.
    numbers: type[np.floating[Any]]

    def run(
        self,
        columns: dict[str, np.ndarray],
        rows: int,
        codes: dict[str, np.ndarray] | None = None,
        memo: CellMemo | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted values (regression) or class indices, and probabilities or None.

        `codes`: categorical features as level codes (tables); `memo`: predictions per
        decision cell kept between calls (one file's chunks), from `memo()`.
        """
        ...

    def memo(self) -> CellMemo | None:
        """An empty table of predictions per decision cell, or None if the model has none."""
        ...


def checked_output(
    values: np.ndarray, proba: np.ndarray | None, rows: int, engine: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The engine's answer, refused unless it has one finite prediction per row.

    A graph is data: a crafted or broken one may answer any shape. JSON cannot carry NaN or
    Infinity either, so they are caught here, where the row is still known.
    """
    if len(values) != rows or (proba is not None and len(proba) != rows):
        raise EngineError(
            f"the {engine} engine answered {len(values)} predictions for {rows} rows; the model is broken"
        )
    checked = values if proba is None else proba
    if checked.dtype.kind == "f" and not _all_finite(checked):
        rows_bad = np.flatnonzero(~np.isfinite(checked).reshape(rows, -1).all(axis=1))
        # Finite inputs the model cannot compute (a linear model times 1e38 overflows): the
        # values are the cause, so the client hears about its rows, not a server error.
        raise RecordError(
            [
                Problem(
                    "(record)",
                    "the model gives no finite prediction for these values; they are too far "
                    "outside the training range",
                    int(row) if rows > 1 else None,
                )
                for row in rows_bad[:MAX_LISTED_PROBLEMS]
            ]
        )
    return values, proba


def _all_finite(array: np.ndarray) -> bool:
    """Whether every value is finite; one row (the common request) skips numpy's reduction."""
    if array.size == 1:
        return math.isfinite(array.item())
    return bool(np.isfinite(array).all())


def onnx_feeds(
    schema: Schema, input_names: list[str], columns: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Engine input: float32 numbers and string categories, one (n, 1) tensor per input.

    The converter rewrites names it dislikes (spaces become underscores), so inputs are
    matched by position, which it keeps. A date feature is several numeric inputs.
    """
    return {
        input_name: columns[name] if text else columns[name].astype(np.float32, copy=False)
        for (name, text), input_name in zip(schema.inputs, input_names, strict=True)
    }


class OnnxEngine:
    """ONNX Runtime session over the exported pipeline; no pandas, no scikit-learn."""

    name = "onnx"
    numbers: type[np.floating[Any]] = np.float32

    def __init__(
        self, model: bytes, schema: Schema, task: str, threads: int = 1, where: str = "model.onnx"
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # A request is one small row: threads inside a run would only add hand-over latency.
        # Big batches are split into row chunks run side by side instead (see run()).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad graphs
            raise ArtifactError(f"{where}: ONNX Runtime cannot load the model: {exc}") from None
        self._schema = schema
        self._input_names = [node.name for node in self._session.get_inputs()]
        self._output_names = [node.name for node in self._session.get_outputs()]
        # The binding under InferenceSession.run: the wrapper re-checks, on every call, input
        # names that onnx_feeds builds from the graph itself at load, which costs a small
        # request as much as a tenth of the model. Older or other builds fall back to run().
        binding = getattr(self._session, "_sess", None)
        self._run_graph: Callable[[dict[str, np.ndarray]], list[Any]] = (
            (lambda feeds: binding.run(self._output_names, feeds, None))
            if binding is not None and hasattr(binding, "run")
            else (lambda feeds: self._session.run(self._output_names, feeds))
        )
        if len(self._input_names) != len(schema.inputs):
            raise ArtifactError(
                f"{where}: the graph takes {len(self._input_names)} inputs, the schema lists "
                f"{len(schema.inputs)} inputs; the folder is inconsistent, retrain it"
            )
        self._classification = task == "classification"
        self._model = model
        self._cells: Cells | None = None
        self._cells_read = False  # the graph is read for cells on the first big batch
        self._cells_checked = False  # the first cell answers are checked against a plain run

    def memo(self) -> CellMemo | None:
        """An empty table of predictions per decision cell, or None if the model has none."""
        if not self._cells_read:
            # Read once, lazily: a serving pod that answers small requests never pays for it.
            levels = {f.name: len(f.known_levels) + 2 for f in self._schema.features}
            inputs = [
                (graph_name, text, levels.get(name, 0))
                for (name, text), graph_name in zip(
                    self._schema.inputs, self._input_names, strict=True
                )
            ]
            self._cells, self._cells_read = read_cells(self._model, inputs), True
        return None if self._cells is None else CellMemo(self._cells)

    def run(
        self,
        columns: dict[str, np.ndarray],
        rows: int,
        codes: dict[str, np.ndarray] | None = None,
        memo: CellMemo | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the graph on validated columns; big batches run in row chunks on every thread.

        A big table (with `codes`) of a tree model runs once per decision cell instead.
        """
        try:
            feeds = onnx_feeds(self._schema, self._input_names, columns)
            if codes is not None and rows >= CELL_MIN_ROWS:
                memo = memo or self.memo()
            if codes is not None and memo is not None and self._cells is not None:
                values, proba = self._run_cells(feeds, codes, memo)
                if not self._cells_checked:
                    values, proba = self._checked_cells(feeds, rows, values, proba)
            else:
                values, proba = self._run(feeds, rows)
        except Exception as exc:  # onnxruntime's errors have no common Python base
            raise EngineError(f"the onnx engine failed: {type(exc).__name__}: {exc}") from None
        return checked_output(values, proba, rows, self.name)

    def _run_cells(
        self, feeds: dict[str, np.ndarray], codes: dict[str, np.ndarray], memo: CellMemo
    ) -> tuple[np.ndarray, np.ndarray | None]:
        keyed = [
            codes[name] if text else feeds[graph_name]
            for (name, text), graph_name in zip(self._schema.inputs, self._input_names, strict=True)
        ]
        return memo.predict(
            memo.cells.keys(keyed),
            lambda picked: self._run({k: v[picked] for k, v in feeds.items()}, len(picked)),
        )

    def _checked_cells(
        self,
        feeds: dict[str, np.ndarray],
        rows: int,
        values: np.ndarray,
        proba: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The first cell answers against a plain run of a sample of the same rows.

        The cells rest on reading the graph; a graph shape that reading gets wrong must cost
        speed, never a wrong answer. On any difference the model loses its cells for good and
        this batch is run row by row.
        """
        self._cells_checked = True
        picked = np.random.default_rng(0).choice(rows, min(rows, CELL_CHECK_ROWS), replace=False)
        plain_values, plain_proba = self._run({k: v[picked] for k, v in feeds.items()}, len(picked))
        same = np.array_equal(plain_values, values[picked], equal_nan=True) and (
            proba is None
            or (
                plain_proba is not None
                and np.array_equal(plain_proba, proba[picked], equal_nan=True)
            )
        )
        if same:
            return values, proba
        self._cells = None
        return self._run(feeds, rows)

    def _run(self, feeds: dict[str, np.ndarray], rows: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._threads == 1 or rows < PARALLEL_MIN_ROWS:
            return self._shape(self._run_graph(feeds))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="tabship-onnx")
        bounds = np.linspace(0, rows, self._threads + 1, dtype=np.int64)
        # ONNX Runtime releases the GIL while it runs, so the chunks really run in parallel.
        parts = list(
            self._pool.map(
                lambda span: self._run_graph({k: v[span[0] : span[1]] for k, v in feeds.items()}),
                pairwise(bounds),
            )
        )
        merged = [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]
        return self._shape(merged)

    def _shape(self, outputs: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        if self._classification:
            return np.asarray(outputs[0]).ravel(), np.asarray(outputs[1], dtype=np.float64)
        return np.asarray(outputs[0], dtype=np.float64).ravel(), None


class SklearnEngine:
    """The fitted scikit-learn pipeline, for models whose ONNX export missed parity."""

    name = "sklearn"
    numbers: type[np.floating[Any]] = np.float64

    def __init__(self, pipeline: Any, schema: Schema, task: str) -> None:
        self._pipeline = pipeline
        self._schema = schema
        self._classification = task == "classification"

    def memo(self) -> CellMemo | None:
        """None: the pipeline is run as it is."""
        return None

    def run(
        self,
        columns: dict[str, np.ndarray],
        rows: int,
        codes: dict[str, np.ndarray] | None = None,
        memo: CellMemo | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Build the frame the pipeline was fitted on and predict."""
        import pandas as pd

        frame = pd.DataFrame({name: columns[name].ravel() for name in self._schema.input_names})
        try:
            if self._classification:
                proba = np.asarray(self._pipeline.predict_proba(frame), dtype=np.float64)
                values, out = np.argmax(proba, axis=1), proba
            else:
                values, out = np.asarray(self._pipeline.predict(frame), dtype=np.float64), None
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise EngineError(f"the sklearn engine failed: {type(exc).__name__}: {exc}") from None
        return checked_output(values, out, rows, self.name)
