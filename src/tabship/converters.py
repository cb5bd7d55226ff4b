"""ONNX converters skl2onnx lacks or gets wrong, registered once before the first conversion."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

Converter = Callable[[Any, Any, Any], None]

# skl2onnx's classifier converters accept these options; ours must too, or convert() refuses
# the `zipmap` option export sets on every classifier pipeline.
_CLASSIFIER_OPTIONS: dict[str, Any] = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
}

_registered = False


class _IntegerAttributes:
    """A container whose add_node hands ONNX plain ints where a converter built numpy flags.

    skl2onnx 1.20 fills TreeEnsemble's `nodes_missing_value_tracks_true` with scikit-learn
    1.9's per-node uint8 flags mixed with Python booleans, which protobuf refuses as ints.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, list) and value and all(_is_flag(v) for v in value):
                attrs[key] = [int(v) for v in value]
        return self._container.add_node(*args, **attrs)


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool | int | np.bool_ | np.integer)


def _with_integer_attributes(convert: Converter) -> Converter:
    def wrapped(scope: Any, operator: Any, container: Any) -> None:
        convert(scope, operator, _IntegerAttributes(container))

    return wrapped


def _register_hist_gradient_boosting() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    update_registered_converter(
        HistGradientBoostingRegressor,
        "SklearnHistGradientBoostingRegressor",
        calculate_linear_regressor_output_shapes,
        _with_integer_attributes(convert_sklearn_random_forest_regressor_converter),
        options={"raw_scores": [True, False]},
    )
    update_registered_converter(
        HistGradientBoostingClassifier,
        "SklearnHistGradientBoostingClassifier",
        calculate_linear_classifier_output_shapes,
        _with_integer_attributes(convert_sklearn_random_forest_classifier),
        options={
            **_CLASSIFIER_OPTIONS,
            "raw_scores": [True, False],
            "output_class_labels": [False, True],
        },
    )


def _convert_pooled_one_hot(scope: Any, operator: Any, container: Any) -> None:
    """OneHotEncoder with infrequent levels on one input, which skl2onnx 1.20 refuses.

    Each column gets an ai.onnx.ml OneHotEncoder over its kept levels followed by its pooled
    ones (`zeros=1`, so an unseen value is all zeros, as `handle_unknown="ignore"` gives);
    the pooled columns are then summed into the one "infrequent" column scikit-learn emits.
    """
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.one_hot_encoder import convert_sklearn_one_hot_encoder
    from skl2onnx.proto import onnx_proto

    encoder = operator.raw_operator
    source = operator.inputs[0]
    if (
        len(operator.inputs) > 1
        or not encoder._infrequent_enabled
        or not isinstance(source.type, StringTensorType)
        or encoder.handle_unknown != "ignore"
        or encoder.drop is not None
    ):
        convert_sklearn_one_hot_encoder(scope, operator, container)
        return
    outputs: list[str] = []
    width = 0
    last_axis = scope.get_unique_variable_name("last_axis")
    container.add_initializer(last_axis, onnx_proto.TensorProto.INT64, [1], [-1])
    for index, levels in enumerate(encoder.categories_):
        kept = [str(level) for level in encoder._compute_transformed_categories(index)]
        pooled = kept[-1] == "infrequent_sklearn"
        if pooled:
            kept = kept[:-1]
        ordered = kept + [str(v) for v in levels if str(v) not in set(kept)]
        column = scope.get_unique_variable_name("column")
        position = scope.get_unique_variable_name("position")
        container.add_initializer(position, onnx_proto.TensorProto.INT64, [1], [index])
        container.add_node("Gather", [source.full_name, position], column, axis=1)
        encoded = scope.get_unique_variable_name("encoded")
        container.add_node(
            "OneHotEncoder",
            column,
            encoded,
            op_domain="ai.onnx.ml",
            cats_strings=[level.encode("utf-8") for level in ordered],
            zeros=1,
            name=scope.get_unique_operator_name("OneHotEncoder"),
        )
        if pooled and len(ordered) > len(kept):
            sizes = scope.get_unique_variable_name("sizes")
            container.add_initializer(
                sizes, onnx_proto.TensorProto.INT64, [2], [len(kept), len(ordered) - len(kept)]
            )
            head = scope.get_unique_variable_name("head")
            tail = scope.get_unique_variable_name("tail")
            container.add_node("Split", [encoded, sizes], [head, tail], axis=-1)
            summed = scope.get_unique_variable_name("summed")
            container.add_node("ReduceSum", [tail, last_axis], summed, keepdims=1)
            joined = scope.get_unique_variable_name("joined")
            container.add_node("Concat", [head, summed], joined, axis=-1)
            encoded = joined
            width += len(kept) + 1
        else:
            width += len(ordered)
        outputs.append(encoded)
    together = scope.get_unique_variable_name("together")
    container.add_node("Concat", outputs, together, axis=-1)
    shape = scope.get_unique_variable_name("shape")
    container.add_initializer(shape, onnx_proto.TensorProto.INT64, [2], [-1, width])
    container.add_node("Reshape", [together, shape], operator.outputs[0].full_name)


def _register_one_hot() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.one_hot_encoder import (
        calculate_sklearn_one_hot_encoder_output_shapes,
    )
    from sklearn.preprocessing import OneHotEncoder

    update_registered_converter(
        OneHotEncoder,
        "SklearnOneHotEncoder",
        calculate_sklearn_one_hot_encoder_output_shapes,
        _convert_pooled_one_hot,
    )


def _register_lightgbm() -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (  # type: ignore[import-untyped]
        convert_lightgbm,
    )
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )
    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options=_CLASSIFIER_OPTIONS,
    )


def _register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import (  # type: ignore[import-untyped]
        convert_xgboost,
    )
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(
        XGBRegressor,
        "XGBoostXGBRegressor",
        calculate_linear_regressor_output_shapes,
        convert_xgboost,
    )
    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options=_CLASSIFIER_OPTIONS,
    )


def installed(module: str) -> bool:
    """Whether an optional library can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def register_converters() -> None:
    """Register our converters with skl2onnx; idempotent, and cheap after the first call."""
    global _registered
    if _registered:
        return
    _register_hist_gradient_boosting()
    _register_one_hot()
    if installed("onnxmltools"):
        if installed("lightgbm"):
            _register_lightgbm()
        if installed("xgboost"):
            _register_xgboost()
    _registered = True
