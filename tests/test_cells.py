"""Predicting once per decision cell gives every row exactly what ONNX Runtime gives it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabship.batch import predict_file
from tabship.cells import Cells
from tabship.engines import CELL_MIN_ROWS
from tabship.predictor import Predictor
from tabship.train import TrainOptions
from tabship.workflow import train_model

from .conftest import make_tiny_table

ROWS = CELL_MIN_ROWS + 5_000


def _train(folder: Path, target: str, model: str, missing: bool = False) -> Predictor:
    table = make_tiny_table(rows=200, seed=3)
    if missing:
        table.loc[::7, "bmi"] = np.nan  # numbers with gaps: an Imputer before the trees
    table.to_csv(folder / "train.csv", index=False)
    options = TrainOptions(target=target, folds=3, models=[model])
    trained = train_model(str(folder / "train.csv"), options, folder / "model")
    return Predictor.load(trained.artifact.directory, threads=2)


def _fresh_rows(predictor: Predictor) -> pd.DataFrame:
    """New rows: continuous numbers, empty cells, an unseen region, values on thresholds."""
    rows = make_tiny_table(rows=ROWS, seed=11).drop(columns=predictor.target)
    rows["bmi"] = rows["bmi"].astype(float)
    if predictor.schema.features[1].allow_missing:
        rows.loc[::13, "bmi"] = np.nan
    if "region" in rows:
        rows.loc[::17, "region"] = "atlantis"
    cells = predictor.engine.memo()
    if cells is not None:
        edges = cells.cells.thresholds[1]
        assert edges is not None
        rows.loc[: len(edges) - 1, "bmi"] = edges.astype(np.float64)  # exactly on a split
    return rows


CASES = [
    ("charges", "gradient_boosting", True),
    ("charges", "hist_gradient_boosting", True),
    ("charges", "lightgbm", False),
    ("charges", "xgboost", False),
    ("smoker", "gradient_boosting", False),
    ("region", "decision_tree", False),
]


@pytest.mark.parametrize(("target", "model", "missing"), CASES)
def test_cells_match_the_graph_bit_for_bit(
    tmp_path: Path, target: str, model: str, missing: bool
) -> None:
    predictor = _train(tmp_path, target, model, missing)
    assert predictor.engine.memo() is not None, f"{model}: its trees should have cells"
    batch = predictor.schema.validate_frame(_fresh_rows(predictor))
    by_cell = predictor.predict_batch(batch)  # a big table: keyed by cell
    assert predictor.engine.memo() is not None  # the first answers' check kept the cells
    by_row = predictor.engine.run(batch.columns, batch.rows)  # no codes: every row run
    assert np.array_equal(by_cell[0], by_row[0])
    if by_row[1] is None:
        assert by_cell[1] is None
    else:
        assert by_cell[1] is not None
        assert np.array_equal(by_cell[1], by_row[1])


# No trees; or a forest over a continuous number (charges) with more cells than MAX_CELLS.
@pytest.mark.parametrize(("target", "model"), [("charges", "ridge"), ("smoker", "random_forest")])
def test_models_without_cells_run_row_by_row(tmp_path: Path, target: str, model: str) -> None:
    predictor = _train(tmp_path, target, model)
    assert predictor.engine.memo() is None
    batch = predictor.schema.validate_frame(_fresh_rows(predictor))
    assert np.array_equal(
        predictor.predict_batch(batch)[0], predictor.engine.run(batch.columns, batch.rows)[0]
    )


def test_cells_that_disagree_with_the_graph_are_dropped_not_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = _train(tmp_path, "charges", "gradient_boosting")
    # A misread graph, at its worst: every row keyed to one cell.
    monkeypatch.setattr(Cells, "keys", lambda self, feeds: np.zeros(len(feeds[0]), np.int64))
    batch = predictor.schema.validate_frame(_fresh_rows(predictor))
    answered = predictor.predict_batch(batch)[0]
    assert np.array_equal(answered, predictor.engine.run(batch.columns, batch.rows)[0])
    assert len(np.unique(answered)) > 1
    assert predictor.engine.memo() is None  # the model lost its cells for good


def test_a_file_keeps_cells_between_chunks(tmp_path: Path) -> None:
    predictor = _train(tmp_path, "charges", "gradient_boosting", missing=True)
    rows = _fresh_rows(predictor)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predict_file(predictor, tmp_path / "rows.csv", tmp_path / "out.csv", chunk_rows=3_000)
    written = pd.read_csv(tmp_path / "out.csv")["predicted_charges"].to_numpy()
    batch = predictor.schema.validate_frame(pd.read_csv(tmp_path / "rows.csv"))
    by_row = predictor.engine.run(batch.columns, batch.rows)[0]
    assert np.array_equal(written, by_row)


def _stump_graph(middle: list[Any]) -> bytes:
    """A one-split tree on `x` (x <= 2.5), after the given nodes turn `x` into `features`."""
    from onnx import TensorProto, helper

    tree = helper.make_node(
        "TreeEnsembleRegressor",
        ["features"],
        ["y"],
        domain="ai.onnx.ml",
        n_targets=1,
        nodes_treeids=[0, 0, 0],
        nodes_nodeids=[0, 1, 2],
        nodes_featureids=[0, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_values=[2.5, 0.0, 0.0],
        nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0],
        target_treeids=[0, 0],
        target_nodeids=[1, 2],
        target_ids=[0, 0],
        target_weights=[1.0, 2.0],
    )
    graph = helper.make_graph(
        [*middle, tree],
        "stump",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    return bytes(model.SerializeToString())


def test_cells_only_where_numbers_reach_the_trees_unchanged() -> None:
    from onnx import helper

    from tabship.cells import read_cells

    inputs = [("x", False, 0)]
    same = read_cells(_stump_graph([helper.make_node("Identity", ["x"], ["features"])]), inputs)
    assert same is not None and same.sizes == [3]
    assert same.thresholds[0] is not None and same.thresholds[0].tolist() == [2.5]
    # x = 2.5 is on the split (LEQ: left), just above it is not; missing is a cell of its own.
    keys = same.keys([np.array([[2.5], [2.5000002], [-9.0], [np.nan]], dtype=np.float32)])
    assert keys.tolist() == [0, 1, 0, 2]

    def imputer(replaced: float) -> Any:
        return helper.make_node(
            "Imputer",
            ["x"],
            ["features"],
            domain="ai.onnx.ml",
            imputed_value_floats=[1.0],
            replaced_value_float=replaced,
        )

    assert read_cells(_stump_graph([imputer(float("nan"))]), inputs) is not None
    scaled = helper.make_node("Mul", ["x", "two"], ["features"])
    rows_mixed = helper.make_node("Concat", ["x", "x"], ["features"], axis=0)
    for node in (scaled, rows_mixed, imputer(0.0)):  # 0 imputed: 0 and 0.1 part ways
        assert read_cells(_stump_graph([node]), inputs) is None, node.op_type
