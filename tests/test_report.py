"""The training report: each plot per task, the CV/holdout labelling, served and opened."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from tabship.cli import app as cli
from tabship.predictor import Predictor
from tabship.report import CLASSIFICATION_PLOTS, REGRESSION_PLOTS
from tabship.serve.app import create_app
from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model

from .conftest import FAST_MODELS

PNG = b"\x89PNG\r\n\x1a\n"


def figures(html: str) -> dict[str, bytes]:
    """Each embedded figure's id and its decoded image bytes."""
    found = re.findall(
        r'<figure id="plot-([a-z-]+)"><img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html
    )
    return {name: base64.b64decode(data) for name, data in found}


def report_of(model: TrainedModel) -> str:
    return (model.artifact.directory / "report.html").read_text(encoding="utf-8")


def test_regression_report_has_its_plots_leaderboard_and_data(tiny_model: TrainedModel) -> None:
    html = report_of(tiny_model)
    plots = figures(html)
    assert tuple(plots) == REGRESSION_PLOTS
    assert all(image.startswith(PNG) and len(image) > 5000 for image in plots.values())
    rows = re.findall(r'<tr class="(chosen)?" data-name="([a-z_]+)"', html)
    assert [name for _, name in rows] == [row.name for row in tiny_model.result.leaderboard]
    assert [name for chosen, name in rows if chosen] == [tiny_model.result.best]
    assert "out-of-fold predictions of 3-fold cross-validation (120 rows)" in html
    assert "rows scored</button>" in html and '<td data-value="120">120</td>' in html
    assert "candidates were raced" not in html  # 120 rows: every candidate saw them all
    assert "none kept (train with <code>--holdout 0.2</code>" in html
    assert html.count("not kept") == 5  # one per metric in the CV-vs-holdout table
    for column in ("age", "bmi", "children", "smoker", "region"):
        assert f"<td>{column}</td>" in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch when viewed


def test_classification_report_has_confusion_roc_and_pr(cancer_model: TrainedModel) -> None:
    html = report_of(cancer_model)
    plots = figures(html)
    assert tuple(plots) == CLASSIFICATION_PLOTS
    assert all(image.startswith(PNG) for image in plots.values())
    # Which class F1, precision and recall score: said in the report, not only the summary.
    positive = cancer_model.artifact.card.classes[1]
    assert f"of the positive class, <code>{positive}</code>" in html


def test_holdout_scores_sit_next_to_cv_and_plots_say_holdout(
    tiny_csv: Path, tmp_path: Path
) -> None:
    options = TrainOptions(target="charges", folds=3, models=FAST_MODELS, holdout=0.25)
    model = train_model(str(tiny_csv), options, tmp_path / "model")
    html = report_of(model)
    holdout = model.result.holdout
    assert holdout is not None
    assert "the holdout (30 rows no fit or tuning trial saw)" in html
    assert "25 % of the table (30 rows" in html and "not kept" not in html
    assert f"{holdout.scores['r2']:.4f}" in html
    written = json.loads((model.artifact.directory / "tabship.json").read_text())
    meta = written["model"]["holdout"]
    assert meta["rows"] == 30 and meta["scores"]["r2"] == pytest.approx(holdout.scores["r2"])


def test_multiclass_report_draws_one_curve_per_class(
    tiny_table: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "regions.csv"
    tiny_table.to_csv(path, index=False)
    options = TrainOptions(target="region", folds=3, models=["logistic", "decision_tree"])
    model = train_model(str(path), options, tmp_path / "model")
    html = report_of(model)
    assert tuple(figures(html)) == CLASSIFICATION_PLOTS
    assert "with classes east, north, south" in html
    assert 'averaged weighted by its rows (scikit-learn\'s <code>average="weighted"</code>)' in html


def test_the_server_serves_the_report_and_the_form_links_it(tiny_model: TrainedModel) -> None:
    predictor = Predictor.load(tiny_model.artifact.directory)

    async def fetch() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(predictor))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/report"), await client.get("/")

    report, page = asyncio.run(fetch())
    assert report.status_code == 200
    assert report.headers["content-type"] == "text/html; charset=utf-8"
    assert report.content == (tiny_model.artifact.directory / "report.html").read_bytes()
    assert '<a href="/report">training report</a>' in page.text


def test_report_command_prints_the_verified_path(tiny_model: TrainedModel, tmp_path: Path) -> None:
    outcome = CliRunner().invoke(cli, ["report", str(tiny_model.artifact.directory)])
    assert outcome.exit_code == 0
    assert outcome.output.strip() == str((tiny_model.artifact.directory / "report.html").resolve())
    copy = tmp_path / "model"
    shutil.copytree(tiny_model.artifact.directory, copy)
    page = copy / "report.html"
    page.write_text(page.read_text(encoding="utf-8").replace("Leaderboard", "Leaderb0ard"))
    tampered = CliRunner().invoke(cli, ["report", str(copy)])
    assert tampered.exit_code == 1
    assert f"{page} was modified: sha256 expected" in tampered.output
