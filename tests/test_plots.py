from __future__ import annotations

from pathlib import Path

import numpy as np

from tabship import plots
from tabship.evaluation import Importance
from tabship.train import TrainOptions
from tabship.workflow import train_model

from .conftest import make_tiny_table

# matplotlib reads text between two `$` as a formula: most such names fail to parse, and the
# rest are drawn as something else ("spend $ in $k" as an italic "spend ink").
DOLLARS = "cost_$_per_unit_$_net"
PNG = b"\x89PNG"


def test_every_plot_draws_dollar_signs_in_user_text_as_written() -> None:
    rng = np.random.default_rng(0)
    actual = rng.normal(size=50)
    labels = ["net_$_gain_$", "spend $ in $k"]
    picked = rng.integers(0, 2, 50)
    proba = rng.random((50, 2))
    proba /= proba.sum(axis=1, keepdims=True)
    drawn = [
        plots.predicted_vs_actual(actual, actual + 0.1, DOLLARS),
        plots.residuals(actual, actual + 0.1, DOLLARS),
        plots.confusion(picked, 1 - picked, labels),
        plots.roc(picked, proba, labels),
        plots.precision_recall(picked, proba, labels),
        plots.importance([Importance("disc_$_rate_$", 0.2, 0.01)], "r2"),
        plots.target_distribution(picked, DOLLARS, labels),
        plots.contributions([("tier_$_1_$", 0.5)], DOLLARS),
        plots.dependence("disc_$_rate_$", "numeric", actual, actual * 2),
    ]
    assert all(png.startswith(PNG) for png in drawn)


def test_training_with_dollar_signs_in_names_and_levels_writes_its_report(
    tmp_path: Path,
) -> None:
    table = make_tiny_table().rename(columns={"charges": DOLLARS, "bmi": "disc_$_rate_$"})
    table["region"] = table["region"].map(lambda level: f"tier_${level}_$")
    table.to_csv(tmp_path / "dollars.csv", index=False)
    options = TrainOptions(target=DOLLARS, folds=2, models=["ridge", "decision_tree"])
    trained = train_model(str(tmp_path / "dollars.csv"), options, tmp_path / "model")
    report = (trained.artifact.directory / "report.html").read_text()
    assert "disc_$_rate_$" in report


def test_sixty_classes_and_scripts_the_font_lacks_draw_quietly() -> None:
    import warnings

    rng = np.random.default_rng(0)
    classes = [f"cls_{i:02d}" for i in range(60)]
    classes[3] = "日本"  # DejaVu Sans has no CJK: drawn as boxes, no longer warned 8 times
    actual = rng.integers(0, 60, 3000)
    proba = rng.dirichlet(np.ones(60), 3000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = [
            plots.confusion(actual, proba.argmax(axis=1), classes),
            plots.roc(actual, proba, classes),
            plots.precision_recall(actual, proba, classes),
        ]
    assert all(png.startswith(b"\x89PNG") for png in drawn)
    assert plots._curves_title("ROC curve", classes) == "ROC curve (10 commonest of 60 classes)"
    assert len(plots._one_vs_rest(actual, proba, classes)) == plots.MAX_CURVES
