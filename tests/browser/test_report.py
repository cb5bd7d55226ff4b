"""The training report in a real browser: reached from the form, every plot drawn, sortable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tabship.report import CLASSIFICATION_PLOTS, REGRESSION_PLOTS
from tabship.workflow import TrainedModel

from ..servers import Server

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def drawn_plots(page: Any) -> dict[str, int]:
    """Each figure's id and the width its image decoded to (0 when it failed to load)."""
    return dict(
        page.eval_on_selector_all(
            "figure[id^=plot-] img",
            "images => images.map(i => [i.closest('figure').id, i.naturalWidth])",
        )
    )


def column(page: Any, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr",
        f"rows => rows.map(r => r.cells[{index}].dataset.value)",
    )


def test_report_from_the_form_shows_every_plot_and_sorts(
    browser: Any, server: Server, shots: Path, insurance_model: TrainedModel
) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(server.url + "/")
    page.click("text=training report")
    page.wait_for_selector("#leaderboard")
    assert page.title() == "Training report: charges"
    assert drawn_plots(page) == {f"plot-{name}": 600 for name in REGRESSION_PLOTS}
    assert page.inner_text("#chosen-model") == insurance_model.result.chosen.label
    assert "not kept" in page.inner_text("#chosen-scores")
    page.screenshot(path=str(shots / "5-report.png"), full_page=True)

    rows = len(insurance_model.result.leaderboard)
    mae = 2  # "#", "model", then the metrics in display order: mae first
    page.click("#leaderboard th:nth-child(3) button")
    ascending = [float(v) for v in column(page, mae)]
    assert len(ascending) == rows and ascending == sorted(ascending)
    assert page.get_attribute("#leaderboard th:nth-child(3)", "aria-sort") == "ascending"
    page.click("#leaderboard th:nth-child(3) button")
    assert [float(v) for v in column(page, mae)] == sorted(ascending, reverse=True)
    page.click("#leaderboard th:nth-child(2) button")
    initials = [name[0].casefold() for name in column(page, 1)]
    assert initials == sorted(initials)
    page.close()


def test_classification_report_opens_from_disk_with_its_curves(
    browser: Any, shots: Path, cancer_model: TrainedModel
) -> None:
    report = cancer_model.artifact.directory / "report.html"
    # Offline by design: a request anywhere but the file itself would fail this test.
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri())
    assert drawn_plots(page) == {f"plot-{name}": 600 for name in CLASSIFICATION_PLOTS}
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    assert "with classes benign, malignant" in page.inner_text("body")
    page.screenshot(path=str(shots / "6-report-classification.png"), full_page=True)
    page.close()
