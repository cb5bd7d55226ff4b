"""What comes before the model in every candidate pipeline: imputation, scaling, encoding."""

from __future__ import annotations

from typing import Any, Literal

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    OneHotEncoder,
    PolynomialFeatures,
    StandardScaler,
    TargetEncoder,
)

from tabship.candidates import Candidate
from tabship.schema import Feature, Schema

# Degree-2 expansion of w encoded columns gives w + w(w+1)/2 columns; past this width the
# linear models it feeds get slower than the trees they are meant to rival.
EXPAND_MAX_WIDTH = 40

# skl2onnx converts target encodings of these targets only (not multiclass ones).
TargetType = Literal["continuous", "binary"]

# Past this many levels a categorical column is encoded compactly: its commonest levels get a
# column each and the rest share one "infrequent" column, so width and memory stay bounded.
POOLED_LEVELS = 32
# A level seen in fewer training rows than this is pooled with the infrequent ones.
POOLED_MIN_ROWS = 5
# Where tuning looks for the pooled width; CV decides whether more levels are worth it.
POOLED_LEVELS_SPACE = [8, 16, 32, 64]
POOLED_PARAM = "prepare__pooled__max_categories"


def is_pooled(feature: Feature) -> bool:
    """Whether a categorical feature has too many levels to one-hot in full."""
    return feature.kind == "categorical" and len(feature.levels) > POOLED_LEVELS


def encoded_width(schema: Schema) -> int:
    """How many columns the encoder hands the model: one per number, one per (kept) level."""
    return sum(
        min(len(f.levels), POOLED_LEVELS) if f.kind == "categorical" else len(f.inputs)
        for f in schema.features
    )


def build_pipeline(
    schema: Schema,
    candidate: Candidate,
    seed: int,
    *,
    expand: bool | None = None,
    balanced: bool = False,
    target_type: TargetType | None = None,
) -> Pipeline:
    """An unfitted pipeline: impute and (for models that need it) scale numbers, one-hot categories.

    `expand` overrides the candidate's own choice (tuning tries both); `balanced` weights
    classes by inverse frequency where the estimator takes class weights; `target_type`
    ("continuous" or "binary") adds a cross-fitted target encoding of many-valued columns.
    """
    # A date arrives as numeric calendar parts (see Feature.inputs).
    numeric = [f for f in schema.features if f.kind != "categorical"]
    categorical = [f for f in schema.features if f.kind == "categorical" and not is_pooled(f)]
    pooled = [f for f in schema.features if is_pooled(f)]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = []
        if any(f.takes_gaps for f in numeric):
            steps.append(("impute", SimpleImputer(strategy="median")))
        # Trees compare float32 thresholds; scaling before them would break ONNX parity.
        if candidate.scale:
            steps.append(("scale", StandardScaler()))
        numeric_step: Any = Pipeline(steps) if steps else "passthrough"
        parts.append(("numeric", numeric_step, [name for f in numeric for name in f.inputs]))
    if categorical:
        encoder = OneHotEncoder(
            categories=[list(f.levels) for f in categorical],
            handle_unknown="ignore",
            sparse_output=False,
        )
        parts.append(("categorical", encoder, [f.name for f in categorical]))
    if pooled:
        # An unseen value encodes as all zeros, as in the full one-hot: skl2onnx's encoder
        # has no "infrequent_if_exist" path for unknowns, and parity is what ships.
        pooled_encoder = OneHotEncoder(
            categories=[list(f.levels) for f in pooled],
            handle_unknown="ignore",
            min_frequency=POOLED_MIN_ROWS,
            max_categories=POOLED_LEVELS,
            sparse_output=False,
        )
        parts.append(("pooled", pooled_encoder, [f.name for f in pooled]))
        if target_type is not None:
            # The pooled one-hot keeps only the commonest levels; the target's mean per level
            # keeps what the rest know in one column each. fit_transform cross-fits it, so a
            # row's own target never leaks into its encoding. An unseen level gets the
            # overall mean, in ONNX as in scikit-learn.
            target_encoder = TargetEncoder(
                categories=[list(f.levels) for f in pooled],
                target_type=target_type,
                cv=(KFold if target_type == "continuous" else StratifiedKFold)(
                    5, shuffle=True, random_state=seed
                ),
            )
            parts.append(("target", target_encoder, [f.name for f in pooled]))
    steps = [("prepare", ColumnTransformer(parts, remainder="drop"))]
    if candidate.expand if expand is None else expand:
        # Trees gain nothing from squares (a split on x is a split on x squared); products
        # are what they cannot build in one split.
        steps.append(
            (
                "expand",
                PolynomialFeatures(2, interaction_only=not candidate.scale, include_bias=False),
            )
        )
        if candidate.scale:
            steps.append(("rescale", StandardScaler()))
    model = candidate.make(seed)
    if balanced and "class_weight" in model.get_params():
        model.set_params(class_weight="balanced")
    steps.append(("model", model))
    return Pipeline(steps)
