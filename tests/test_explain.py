"""Shapley contributions and what-if curves: checked against shap, additivity, both engines."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabship.background import Background
from tabship.config import ServeSettings
from tabship.explain import Explainer, Outputs, exact_masks, shapley_weights
from tabship.predictor import Predictor
from tabship.report import SUMMARY_PLOTS
from tabship.schema import Schema
from tabship.serve.explain import model_outputs
from tabship.train import TrainOptions
from tabship.whatif import what_if
from tabship.workflow import TrainedModel, train_model
from tests.conftest import make_tiny_table

with warnings.catch_warnings():
    # shap 0.51 sets a colormap's "bad" colour the way matplotlib now warns about.
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import shap  # type: ignore[import-untyped]

PATIENT = {"age": 40, "bmi": 35.0, "children": 1, "smoker": "yes", "region": "north"}


def explainer(predictor: Predictor, **options: Any) -> Explainer:
    background = predictor.card.explanation
    assert background is not None
    return Explainer(predictor.schema, background, model_outputs(predictor), **options)


def records(table: pd.DataFrame, schema: Schema, count: int) -> list[dict[str, Any]]:
    rows = table[schema.names].head(count).to_dict(orient="records")
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in rows]


class ShapAdapter:
    """The same model and background for shap: categories as integer codes of their levels."""

    def __init__(self, predictor: Predictor) -> None:
        self.schema = predictor.schema
        self.outputs = model_outputs(predictor)
        self.levels = {
            f.name: [*f.levels, "\x00unseen"]
            for f in self.schema.features
            if f.kind == "categorical"
        }

    def encode(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        return np.column_stack(
            [
                np.array([self.levels[name].index(v) for v in columns[name].ravel()], float)
                if text
                else columns[name].ravel().astype(float)
                for name, text in self.schema.inputs
            ]
        )

    def model(self, output: int) -> Any:
        def run(matrix: np.ndarray) -> np.ndarray:
            columns = {
                name: (
                    np.array(self.levels[name], dtype=object)[matrix[:, i].astype(int)]
                    if text
                    else matrix[:, i]
                ).reshape(-1, 1)
                for i, (name, text) in enumerate(self.schema.inputs)
            }
            return self.outputs(columns, len(matrix))[:, output]

        return run

    def background(self, background: Background, trained_rows: int) -> np.ndarray:
        """The weighted centroids as shap takes them: each repeated by its cluster's size."""
        rows = self.encode({k: v.reshape(-1, 1) for k, v in background.arrays(self.schema).items()})
        weights = np.asarray(background.weights)
        counts = np.round(weights * trained_rows).astype(int)
        assert np.allclose(counts / counts.sum(), weights, atol=1e-12), "weights are counts"
        return np.repeat(rows, counts, axis=0)


def test_shapley_weights_sum_to_the_efficiency_property() -> None:
    for players in (1, 2, 5, 8):
        matrix = shapley_weights(players)
        # sum_i phi_i = v(full) - v(empty): the column sums are -1 at empty, +1 at full, 0 else.
        sums = matrix.sum(axis=0)
        expected = np.zeros(1 << players)
        expected[0], expected[-1] = -1.0, 1.0
        assert np.allclose(sums, expected, atol=1e-12)
        assert exact_masks(players).shape == (1 << players, players)


def test_baseline_is_sealed_centroids_of_real_levels(tiny_model: TrainedModel) -> None:
    card = tiny_model.artifact.card
    background = card.explanation
    assert background is not None and background.kind == "centroids"
    assert background.rows == 10 and abs(sum(background.weights) - 1) < 1e-12
    for feature in card.schema.features:
        values = background.columns[feature.name]
        if feature.kind == "categorical":
            assert set(values) <= set(feature.levels)
        else:
            assert all(feature.minimum <= v <= feature.maximum for v in values)  # type: ignore[operator]
        if feature.integer:
            assert all(float(v).is_integer() for v in values)  # type: ignore[arg-type]
    low, high = background.ranges["bmi"]
    bmi = make_tiny_table()["bmi"]
    assert (low, high) == pytest.approx((bmi.quantile(0.01), bmi.quantile(0.99)))
    # Sealed: the card on disk holds it, covered by the folder's digest.
    document = json.loads((tiny_model.artifact.directory / "tabship.json").read_text())
    assert document["explanation"]["background"] == "centroids"


def test_keep_background_seals_training_rows(tmp_path: Path) -> None:
    table = make_tiny_table()
    table.to_csv(tmp_path / "t.csv", index=False)
    options = TrainOptions(target="charges", folds=3, models=["ridge"])
    trained = train_model(str(tmp_path / "t.csv"), options, tmp_path / "m", keep_background=25)
    background = trained.artifact.card.explanation
    assert background is not None and background.kind == "rows" and background.rows == 25
    kept = pd.DataFrame({k: list(v) for k, v in background.columns.items()})
    merged = kept.merge(table, on=list(kept.columns), how="left", indicator=True)
    assert (merged["_merge"] == "both").all()


@pytest.mark.parametrize("engine", ["onnx", "sklearn"])
def test_equal_to_shap_exact_explainer(tiny_model: TrainedModel, engine: str) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory, engine=engine)
    ours = explainer(predictor)
    batch = predictor.schema.validate(records(make_tiny_table(), predictor.schema, 5))
    found = ours.explain(batch)
    adapter = ShapAdapter(predictor)
    background = adapter.background(ours.background, predictor.card.training.rows)
    masker = shap.maskers.Independent(background, max_samples=len(background))
    theirs = shap.explainers.Exact(adapter.model(0), masker)(adapter.encode(batch.columns))
    scale = np.abs(found.prediction).max()
    np.testing.assert_allclose(found.contributions[:, :, 0], theirs.values, atol=1e-6 * scale)
    np.testing.assert_allclose(found.base[:, 0], theirs.base_values, atol=1e-6 * scale)


def test_additivity_for_every_record(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    rows = records(make_tiny_table(rows=300, seed=3), predictor.schema, 300)
    found = explainer(predictor).explain(predictor.schema.validate(rows))
    predicted = np.asarray(predictor.predict(rows).values)
    total = found.base[:, 0] + found.contributions[:, :, 0].sum(axis=1)
    # The engine's own answer, not a weighted mean of copies of it (off in the last digit).
    np.testing.assert_array_equal(found.prediction[:, 0], predicted)
    np.testing.assert_allclose(total, predicted, rtol=1e-6)


def test_onnx_and_sklearn_give_the_same_contributions(tiny_model: TrainedModel) -> None:
    assert tiny_model.engine == "onnx"
    rows = records(make_tiny_table(), tiny_model.artifact.card.schema, 40)
    found = {}
    for engine in ("onnx", "sklearn"):
        predictor = Predictor.load(tiny_model.artifact.directory, engine=engine)
        found[engine] = explainer(predictor).explain(predictor.schema.validate(rows))
    # ONNX Runtime computes trees in float32: the export's own parity tolerance applies.
    scale = np.abs(found["sklearn"].prediction).mean()
    np.testing.assert_allclose(
        found["onnx"].contributions, found["sklearn"].contributions, atol=1e-4 * scale
    )


def test_sampled_orders_are_additive_and_near_exact_within_their_error(
    tiny_model: TrainedModel,
) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    batch = predictor.schema.validate(records(make_tiny_table(), predictor.schema, 10))
    exact = explainer(predictor).explain(batch)
    sampled = explainer(predictor, exact_max=2, pairs=64).explain(batch)
    assert sampled.method == "permutation" and (sampled.error >= 0).all()
    total = sampled.base[:, 0] + sampled.contributions[:, :, 0].sum(axis=1)
    np.testing.assert_allclose(total, exact.prediction[:, 0], rtol=1e-6)
    gap = np.abs(sampled.contributions - exact.contributions)
    assert (gap <= 5 * sampled.error + 1e-6 * np.abs(exact.prediction).max()).all()


def test_wide_classifier_is_sampled_with_an_error_and_explains_the_predicted_class(
    cancer_model: TrainedModel, cancer_csv: Path
) -> None:
    predictor = Predictor.load(cancer_model.artifact.directory)
    ours = explainer(predictor)
    assert ours.method == "permutation" and len(predictor.schema.features) == 30
    rows = records(pd.read_csv(cancer_csv), predictor.schema, 3)
    found = ours.explain(predictor.schema.validate(rows))
    probabilities = predictor.predict(rows).probabilities
    assert probabilities is not None
    for row, shares in enumerate(probabilities):
        np.testing.assert_allclose(found.prediction[row], list(shares.values()), rtol=1e-9)
        total = found.base[row] + found.contributions[row].sum(axis=0)
        np.testing.assert_allclose(total, found.prediction[row], rtol=1e-6, atol=1e-9)
    assert (found.error > 0).any()


def counting(outputs: Outputs, calls: list[int]) -> Outputs:
    def run(columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
        calls.append(rows)
        return outputs(columns, rows)

    return run


def test_exact_explanation_of_one_record_is_one_engine_call(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    calls: list[int] = []
    background = predictor.card.explanation
    assert background is not None
    ours = Explainer(predictor.schema, background, counting(model_outputs(predictor), calls))
    batch = predictor.schema.validate([PATIENT])
    ours.explain(batch)
    # Rows that coincide go once: per baseline row, 2 ** (features where it differs).
    differing = [
        sum(background.columns[name][row] != PATIENT[name] for name in PATIENT)
        for row in range(background.rows)
    ]
    assert calls == [sum(2**count for count in differing)]
    assert calls[0] < 32 * 10


def test_what_if_spans_the_training_percentiles_in_one_call(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    schema, background = predictor.schema, predictor.card.explanation
    assert background is not None
    batch = schema.validate([PATIENT])
    calls: list[int] = []
    outputs = counting(model_outputs(predictor), calls)
    bmi = next(f for f in schema.features if f.name == "bmi")
    curve = what_if(schema, outputs, background, batch, bmi, 50)
    assert calls == [51] and len(curve.values) == 50
    assert (curve.values[0], curve.values[-1]) == pytest.approx(background.ranges["bmi"], abs=1e-3)
    assert curve.current[0] == pytest.approx(predictor.predict([PATIENT]).values[0])
    expected = predictor.predict([{**PATIENT, "bmi": v} for v in curve.values]).values
    np.testing.assert_allclose(curve.outputs[:, 0], expected)
    region = next(f for f in schema.features if f.name == "region")
    levels = what_if(schema, outputs, background, batch, region, 50)
    assert levels.values == list(region.known_levels)
    age = next(f for f in schema.features if f.name == "age")
    whole = what_if(schema, outputs, background, batch, age, 200)
    assert all(isinstance(v, int) for v in whole.values) and len(whole.values) <= 47


def test_report_has_the_global_summary(tiny_model: TrainedModel) -> None:
    html = (tiny_model.artifact.directory / "report.html").read_text()
    for plot in SUMMARY_PLOTS:
        assert f'id="plot-{plot}"' in html
    table = html[html.index('id="mean-contribution"') :]
    first = re.search(r"<tbody><tr><td>([^<]+)</td>", table)
    assert first is not None and first.group(1) == "smoker"  # it adds 20,000 in the table


def test_engine_calls_are_split_by_cells_with_the_same_answer(
    tiny_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)
    batch = predictor.schema.validate(records(make_tiny_table(), predictor.schema, 3))
    whole = explainer(predictor).explain(batch)
    monkeypatch.setattr("tabship.explain.ENGINE_CELLS", 5 * 40)
    calls: list[int] = []
    background = predictor.card.explanation
    assert background is not None
    split = Explainer(predictor.schema, background, counting(model_outputs(predictor), calls))
    found = split.explain(batch)
    assert max(calls) == 40 and len(calls) > 3
    np.testing.assert_allclose(found.contributions, whole.contributions, rtol=1e-12)


def test_wide_additive_model_is_sampled_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = [f"col_{i:02d}" for i in range(60)]
    frame = pd.DataFrame(rng.normal(size=(300, 60)), columns=names)
    frame["target"] = frame.to_numpy() @ np.linspace(-3, 3, 60) + rng.normal(size=300)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    options = TrainOptions(target="target", folds=3, models=["ridge"])
    trained = train_model(str(tmp_path / "wide.csv"), options, tmp_path / "m")
    assert 'id="plot-contributions"' in (trained.artifact.directory / "report.html").read_text()
    predictor = Predictor.load(trained.artifact.directory)
    ours = explainer(predictor)
    assert ours.method == "permutation" and ours.rows_per_record <= 100_000
    record = {name: float(v) for name, v in zip(names, rng.normal(size=60), strict=True)}
    found = ours.explain(predictor.schema.validate([record]))
    # A linear model has no interactions: every order gives each feature the same share,
    # its mean effect over the baseline rows, so the sample is exact and its error zero.
    background = predictor.card.explanation
    assert background is not None
    base_rows = [
        {name: background.columns[name][k] for name in names} for k in range(background.rows)
    ]
    weights = np.asarray(background.weights)
    before = np.asarray(predictor.predict(base_rows).values)
    for index in (0, 17, 59):
        moved = [{**row, names[index]: record[names[index]]} for row in base_rows]
        effect = weights @ (np.asarray(predictor.predict(moved).values) - before)
        assert found.contributions[0, index, 0] == pytest.approx(effect, rel=1e-4, abs=1e-4)
    assert np.abs(found.error).max() < 1e-3
    # The form draws what-if charts for the twelve features that move this record most.
    from tabship.serve.explain import ExplainApi
    from tabship.serve.insight import build_insight

    api = ExplainApi(predictor, ServeSettings(), ThreadPoolExecutor(1))
    insight = build_insight(api, record)
    charted = [chart["name"] for chart in insight["whatifs"]]
    biggest = np.argsort(-np.abs(found.contributions[0, :, 0]))[:12]
    assert sorted(charted) == sorted(names[i] for i in biggest)
    assert len(insight["waterfall"]["bars"]) == 20  # the rest folded into one row


def test_a_malformed_baseline_is_refused_naming_it(
    tiny_model: TrainedModel, tmp_path: Path
) -> None:
    from tabship.artifact import METADATA, _seal
    from tabship.errors import ArtifactError

    folder = tmp_path / "bad"
    shutil.copytree(tiny_model.artifact.directory, folder)
    document = json.loads((folder / METADATA).read_text())
    del document["metadata_sha256"]
    document["explanation"]["columns"]["bmi"] = [1.0]
    (folder / METADATA).write_bytes(_seal(document))
    with pytest.raises(ArtifactError, match=r"explanation.columns\['bmi'\] must hold 10 values"):
        Predictor.load(folder)


def test_every_centroid_stands_for_several_rows_so_no_outlier_is_stored() -> None:
    from tabship.background import MIN_MEMBERS, build_background
    from tabship.profile import infer_schema

    table = make_tiny_table(rows=60)
    table.loc[0, ["age", "bmi", "children"]] = [64, 80.0, 3]  # one patient far from the rest
    schema, _ = infer_schema(table, "charges")
    frame = pd.DataFrame(
        {name: column.ravel() for name, column in schema.validate_frame(table).columns.items()}
    )
    background = build_background(frame, schema, seed=1)
    counts = np.asarray(background.weights) * len(frame)
    assert (counts >= MIN_MEMBERS - 1e-9).all()
    assert 80.0 not in background.columns["bmi"]


def test_every_class_equals_shap_for_a_classifier(tmp_path: Path) -> None:
    make_tiny_table().to_csv(tmp_path / "t.csv", index=False)
    options = TrainOptions(target="region", folds=3, models=["logistic"])
    trained = train_model(str(tmp_path / "t.csv"), options, tmp_path / "m")
    predictor = Predictor.load(trained.artifact.directory)
    ours = explainer(predictor)
    batch = predictor.schema.validate(records(make_tiny_table(), predictor.schema, 4))
    found = ours.explain(batch)
    adapter = ShapAdapter(predictor)
    background = adapter.background(ours.background, predictor.card.training.rows)
    masker = shap.maskers.Independent(background, max_samples=len(background))
    for output, _ in enumerate(predictor.classes):
        theirs = shap.explainers.Exact(adapter.model(output), masker)(adapter.encode(batch.columns))
        np.testing.assert_allclose(found.contributions[:, :, output], theirs.values, atol=1e-6)
        np.testing.assert_allclose(found.base[:, output], theirs.base_values, atol=1e-6)
    # Probabilities as /v1/predict gives them: never past 1 (1.0000000000000002 was).
    answered = predictor.predict(records(make_tiny_table(), predictor.schema, 4)).probabilities
    given = [[one[label] for label in predictor.classes] for one in answered or []]
    np.testing.assert_array_equal(found.prediction, np.asarray(given))
