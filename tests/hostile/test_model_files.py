"""Hostile model folders: graphs that read other files, answer the wrong shape, or do not load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tabship import artifact as art
from tabship.errors import ArtifactError, EngineError, RecordError
from tabship.onnx_safety import check_self_contained
from tabship.predictor import Predictor
from tabship.workflow import TrainedModel

PATIENT = {"age": 40, "bmi": 31.5, "children": 2, "smoker": "yes", "region": "south"}


def replace_onnx(folder: Path, model: bytes) -> None:
    """Swap model.onnx and reseal tabship.json, as someone with write access could."""
    (folder / art.ONNX_FILE).write_bytes(model)
    meta = json.loads((folder / art.METADATA).read_text())
    meta.pop("metadata_sha256")
    meta["files"][art.ONNX_FILE] = art.sha256_bytes(model)
    (folder / art.METADATA).write_bytes(art._seal(meta))


@pytest.fixture
def folder(tiny_model: TrainedModel, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model.artifact.directory, copy)
    return copy


def external(tensor: TensorProto, location: str) -> TensorProto:
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    return tensor


def test_an_initializer_stored_as_external_data_is_refused_before_loading(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = onnx.load_from_string((folder / art.ONNX_FILE).read_bytes())
    initializers = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT]
    if not initializers:  # tree ensembles keep weights in attributes; add one to attack with
        model.graph.initializer.append(helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0]))
        initializers = [model.graph.initializer[-1]]
    external(initializers[0], "secret.bin")
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 4096)
    monkeypatch.chdir(tmp_path)  # where ONNX Runtime would resolve the relative path
    replace_onnx(folder, model.SerializeToString())
    with pytest.raises(ArtifactError, match="stores a tensor as external data"):
        Predictor.load(folder)


def test_external_data_deep_in_a_subgraph_constant_is_refused() -> None:
    constant = helper.make_node(
        "Constant",
        [],
        ["c"],
        value=external(helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]), "/etc/passwd"),
    )
    branch = helper.make_graph(
        [constant], "b", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])]
    )
    node = helper.make_node("If", ["x"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ArtifactError, match="external data"):
        check_self_contained(helper.make_model(graph).SerializeToString(), "model.onnx")


def test_garbage_and_unloadable_graphs_are_artifact_errors(folder: Path) -> None:
    replace_onnx(folder, b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        Predictor.load(folder)
    node = helper.make_node("NoSuchOperator", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    replace_onnx(folder, helper.make_model(graph).SerializeToString())
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load the model"):
        Predictor.load(folder)


def constant_graph(values: list[float]) -> bytes:
    """A graph with the tiny model's five inputs that answers `values`, whatever it is given."""
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1])
        for name in ("age", "bmi", "children")
    ] + [
        helper.make_tensor_value_info(name, TensorProto.STRING, [None, 1])
        for name in ("smoker", "region")
    ]
    shape = [len(values), 1]
    tensor = helper.make_tensor("v", TensorProto.FLOAT, shape, values)
    node = helper.make_node("Constant", [], ["variable"], value=tensor)
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("variable", TensorProto.FLOAT, shape)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_an_answer_of_the_wrong_length_is_refused(folder: Path) -> None:
    """A graph that ignores its rows and answers three values fails cleanly, never silently."""
    replace_onnx(folder, constant_graph([1.0, 2.0, 3.0]))
    predictor = Predictor.load(folder)
    with pytest.raises(EngineError, match="answered 3 predictions for 1 rows"):
        predictor.predict([PATIENT])
    assert np.isfinite(predictor.predict([PATIENT] * 3).values).all()


def test_a_non_finite_prediction_is_refused_naming_the_row(folder: Path) -> None:
    """JSON has no NaN or Infinity: a row the model cannot compute is a 422, not a bad answer."""
    replace_onnx(folder, constant_graph([1.0, float("inf")]))
    with pytest.raises(RecordError) as caught:
        Predictor.load(folder).predict([PATIENT, PATIENT])
    assert [(p.field, p.row) for p in caught.value.problems] == [("(record)", 1)]
    assert "no finite prediction" in str(caught.value)


def test_a_model_that_refuses_the_warm_up_example_still_starts(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warm-up record is made up: a model that gives it no finite answer (here a graph
    answering infinity) still serves its other rows, so start-up says so and goes on; it
    used to exit with a traceback."""
    import asyncio

    from tabship.serve.app import create_app

    replace_onnx(folder, constant_graph([float("inf")]))
    app = create_app(Predictor.load(folder))

    async def start_up() -> list[str]:
        inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        outbox: list[str] = []

        async def send(message: dict[str, str]) -> None:
            outbox.append(message["type"])

        for message in ("lifespan.startup", "lifespan.shutdown"):
            await inbox.put({"type": message})
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
        return outbox

    assert asyncio.run(start_up()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert "warm-up: the example record was refused" in capsys.readouterr().err
