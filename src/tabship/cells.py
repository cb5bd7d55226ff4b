"""Predict each decision cell of a tree model once, however many rows fall into it.

A tree ensemble only ever compares each number with its split thresholds, so two rows whose
numbers sit between the same thresholds, and whose categories are the same, follow the same
path in every tree and get the same prediction, to the bit. For a big batch the rows are
keyed by that cell, ONNX Runtime runs once per distinct cell (on a real row of it), and
every row takes its cell's answer. The insurance model has about 400,000 cells; a million
fresh rows fall into about 200,000 of them, a resample of the 1,338 training rows into
fewer than 1,338.

The graph is read once, on the first big batch: which tree columns each numeric input
reaches unchanged (Concat, Reshape, Cast, Imputer, Identity) and the thresholds the trees
compare them with. A graph whose numbers pass through anything else (scaling, products) or
without trees gets no cells, and is run row by row as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tabship.onnx_graph import Node, read_graph

TREE_OPS = frozenset({"TreeEnsembleRegressor", "TreeEnsembleClassifier"})
# Row-wise operators a numeric input may pass through on its way to the trees unchanged.
_SAME = frozenset({"Imputer", "Identity", "Cast"})
# Operators that keep each row to itself (given an axis other than the rows'), as tabship's
# exports use them for categories and after the trees. Anything else: no cells.
_ROW_WISE = (
    frozenset(
        {
            "OneHotEncoder", "LabelEncoder", "ArrayFeatureExtractor", "ZipMap", "Normalizer",
            "Scaler", "Binarizer", "Concat", "Reshape", "Flatten", "Cast", "Identity",
            "Imputer", "Mul", "Add", "Sub", "Div", "Sigmoid", "Softmax", "Abs", "Neg", "Exp",
            "Log", "ArgMax", "Gather", "Equal", "Greater", "Less", "Not", "Where", "Clip",
            "Max", "Min", "Pow", "Sqrt", "Sum",
        }
    )
    | TREE_OPS
)  # fmt: skip
# The axis an operator works along when the attribute is absent (0, the rows, is refused).
_DEFAULT_AXIS = {"Concat": 0, "Gather": 0, "ArgMax": 0, "Flatten": 1, "Softmax": -1}
# A table of this many cells costs 4 bytes a cell per run; larger models are run row by row.
MAX_CELLS = 1 << 22
# Models bigger than this take longer to read here than cells would save.
MAX_MODEL_BYTES = 4 << 20
_FLOAT = 1  # TensorProto.FLOAT, the only Cast a number may take on its way

# A tensor's columns along its last axis: an input name where a number arrives unchanged,
# None for anything else; `open` when more columns of unknown count follow.
Columns = tuple[list[str | None], bool]


class _NotCells(Exception):
    """The graph is not a tree model whose numbers reach the trees unchanged."""


def _has_number(columns: Columns) -> bool:
    return any(name is not None for name in columns[0])


def _concat(node: Node, known: dict[str, Columns]) -> Columns:
    out: list[str | None] = []
    is_open = False
    for name in node.inputs:
        part = known.get(name, ([], True))
        if is_open and _has_number(part):
            raise _NotCells("a number follows columns of unknown count")
        out.extend(part[0])
        is_open = is_open or part[1]
    if node.attributes.get("axis") not in (-1, 1) and _has_number((out, is_open)):
        raise _NotCells("numbers joined along another axis than the features'")
    return out, is_open


def _reshape(node: Node, known: dict[str, Columns], constants: dict[str, list[int]]) -> Columns:
    columns = known.get(node.inputs[0], ([], True))
    shape = constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
    # Rows stay rows only when the shape is (rows, the row's whole width).
    if columns[1] or shape is None or len(shape) != 2 or shape[0] not in (-1, 0):
        raise _NotCells("a reshape may move values between rows")
    if shape[1] != len(columns[0]):
        raise _NotCells("a reshape may move values between rows")
    return columns


def _keeps_numbers(node: Node) -> bool:
    """Whether a Cast, Imputer or Identity leaves every number that is not missing as it is."""
    if node.op == "Cast":
        return bool(node.attributes.get("to") == _FLOAT)
    if node.op == "Imputer":
        # Only NaN may be replaced: an Imputer of, say, zeros would send 0 and 0.1 apart.
        replaced = node.attributes.get("replaced_value_float", 0.0)
        return isinstance(replaced, float) and math.isnan(replaced)
    return True


def _step(node: Node, known: dict[str, Columns], constants: dict[str, list[int]]) -> Columns:
    """The columns of `node`'s first output, given its inputs'."""
    axis = node.attributes.get("axis", _DEFAULT_AXIS.get(node.op))
    if node.op not in _ROW_WISE or axis == 0:
        raise _NotCells(f"operator {node.op} may mix rows")
    if node.op == "Concat":
        return _concat(node, known)
    if node.op == "Reshape":
        return _reshape(node, known, constants)
    first = known.get(node.inputs[0], ([], True)) if node.inputs else ([], True)
    if node.op in _SAME and _keeps_numbers(node):
        return first
    if any(_has_number(known.get(name, ([], True))) for name in node.inputs):
        raise _NotCells(f"numbers pass through {node.op}")
    if node.op == "OneHotEncoder":
        levels = node.attributes.get("cats_strings") or node.attributes.get("cats_int64s") or []
        return [None] * (len(levels) * len(first[0])), first[1]
    picked = constants.get(node.inputs[1]) if node.op == "Gather" else None
    # A category column picked out of its input by a constant index keeps a known width.
    return ([None] * len(picked), False) if picked is not None else ([], True)


@dataclass(frozen=True)
class _Trees:
    columns: list[str | None]
    features: np.ndarray
    thresholds: np.ndarray
    # "left" when splits test x <= t, "right" when x < t, "both" for a mix (then a value equal
    # to a threshold is a cell of its own).
    side: str


def _trees(node: Node, columns: Columns) -> _Trees:
    attributes = node.attributes
    values = attributes.get("nodes_values")
    if not isinstance(values, list) or "nodes_values_as_tensor" in attributes:
        raise _NotCells("thresholds are not float32 values")
    node_modes = [bytes(mode) for mode in attributes.get("nodes_modes", [])]
    modes = set(node_modes)
    if not modes <= {b"BRANCH_LEQ", b"BRANCH_GT", b"BRANCH_LT", b"BRANCH_GTE", b"LEAF"}:
        raise _NotCells("the trees use equality splits")
    features = np.asarray(attributes.get("nodes_featureids", []), dtype=np.int64)
    if not len(features) == len(values) == len(node_modes):
        raise _NotCells("the trees' attributes disagree")
    # A leaf's "feature" and "threshold" are placeholders: only splits count.
    splits = np.array([mode != b"LEAF" for mode in node_modes], dtype=bool)
    # Numbers always sit where they were counted: nothing of unknown width comes before them.
    return _Trees(
        columns[0],
        features[splits],
        np.asarray(values, dtype=np.float32)[splits],
        side=_side(modes),
    )


def _side(modes: set[bytes]) -> str:
    below = bool(modes & {b"BRANCH_LEQ", b"BRANCH_GT"})
    strict = bool(modes & {b"BRANCH_LT", b"BRANCH_GTE"})
    return "both" if below and strict else ("right" if strict else "left")


def _find_trees(
    nodes: list[Node], constants: dict[str, list[int]], inputs: list[tuple[str, bool]]
) -> _Trees:
    known: dict[str, Columns] = {name: ([None if text else name], False) for name, text in inputs}
    found: _Trees | None = None
    for node in nodes:
        if node.op in TREE_OPS:
            if found is not None:
                raise _NotCells("more than one tree ensemble")
            found = _trees(node, known.get(node.inputs[0], ([], True)))
            columns: Columns = ([], True)
        else:
            columns = _step(node, known, constants)
        for output in node.outputs:
            known[output] = columns if output == node.outputs[0] else ([], True)
    if found is None:
        raise _NotCells("no tree ensemble")
    return found


@dataclass(frozen=True)
class Cells:
    """How to key each row by its decision cell: per engine input, its bins or its levels."""

    # Per engine input in order: sorted float32 thresholds (a number) or None (a category).
    thresholds: list[np.ndarray | None]
    # Per engine input: how many distinct keys it has (bins, or levels + missing + unseen).
    sizes: list[int]
    side: str

    @property
    def count(self) -> int:
        """How many cells there are in all."""
        return int(np.prod(self.sizes, dtype=object))

    def keys(self, feeds: list[np.ndarray]) -> np.ndarray:
        """Each row's cell, from the engine's inputs in order (category inputs as codes)."""
        key: np.ndarray | None = None
        for column, edges, size in zip(feeds, self.thresholds, self.sizes, strict=True):
            values = column.ravel()
            if edges is None:
                part = values.astype(np.int64, copy=False)
            else:
                part = self._bins(values, edges, size - 1)
            key = part if key is None else key * size + part
        assert key is not None
        return key

    def _bins(self, values: np.ndarray, edges: np.ndarray, missing: int) -> np.ndarray:
        # x <= t for every threshold t decides a LEQ split; the count of thresholds below x
        # says all of them at once (for < splits, the count of thresholds at or below x).
        if self.side == "both":
            bins = np.searchsorted(edges, values, "left") + np.searchsorted(edges, values, "right")
        else:
            bins = np.searchsorted(edges, values, "left" if self.side == "left" else "right")
        bins[np.isnan(values)] = missing  # a cell of its own
        return bins.astype(np.int64, copy=False)


def read_cells(model: bytes, inputs: list[tuple[str, bool, int]]) -> Cells | None:
    """The cells of `model`, or None when it is not a tree model over unchanged numbers.

    `inputs`: per graph input in order, its name, whether it is text, and (for text) how
    many codes it takes.
    """
    if len(model) > MAX_MODEL_BYTES:
        return None
    try:
        nodes, constants = read_graph(model)
        trees = _find_trees(nodes, constants, [(name, text) for name, text, _ in inputs])
    except (_NotCells, ValueError, IndexError, UnicodeDecodeError):
        return None
    thresholds: list[np.ndarray | None] = []
    sizes: list[int] = []
    for name, text, codes in inputs:
        if text:
            thresholds.append(None)
            sizes.append(codes)
            continue
        positions = [i for i, column in enumerate(trees.columns) if column == name]
        edges = np.unique(trees.thresholds[np.isin(trees.features, positions)])
        thresholds.append(edges)
        # Bins below, between and above the thresholds (and on them, with ties), then missing.
        sizes.append((2 * len(edges) + 2) if trees.side == "both" else (len(edges) + 2))
    cells = Cells(thresholds, sizes, trees.side)
    return cells if cells.count <= MAX_CELLS else None


Outputs = tuple[np.ndarray, np.ndarray | None]


class CellMemo:
    """Predictions per cell, kept across the chunks of one file; one thread uses it at a time."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self._slots = np.full(cells.count, -1, dtype=np.int32)
        self._values: np.ndarray | None = None
        self._proba: np.ndarray | None = None

    def predict(self, keys: np.ndarray, run: Callable[[np.ndarray], Outputs]) -> Outputs:
        """Every row's prediction; `run` predicts the given rows (one per new cell)."""
        slots = self._slots
        fresh = np.flatnonzero(slots[keys] < 0)
        if len(fresh):
            # Any row of a cell stands for it; the last one written wins.
            slots[keys[fresh]] = -2 - fresh
            new_cells = np.flatnonzero(slots < -1)
            values, proba = run(-2 - slots[new_cells])
            start = 0 if self._values is None else len(self._values)
            slots[new_cells] = np.arange(start, start + len(new_cells), dtype=np.int32)
            self._values = _joined(self._values, values)
            self._proba = None if proba is None else _joined(self._proba, proba)
        where = slots[keys]
        assert self._values is not None
        return self._values[where], None if self._proba is None else self._proba[where]


def _joined(kept: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    return new if kept is None else np.concatenate([kept, new])
