"""The form in a real browser: fill a patient, submit, read the prediction; warnings; errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tabship.predictor import Predictor
from tabship.workflow import TrainedModel

from ..servers import Server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PATIENT = {"age": "52", "bmi": "31.4", "children": "2"}
CHOICES = {"sex": "female", "smoker": "yes", "region": "northeast"}


def fill(page: Any, numbers: dict[str, str], choices: dict[str, str]) -> None:
    for name, value in numbers.items():
        page.fill(f"input[name={name}]", value)
    for name, value in choices.items():
        page.select_option(f"select[name={name}]", value)


def test_fill_submit_and_read_the_prediction(
    browser: Any, server: Server, shots: Path, insurance_model: TrainedModel
) -> None:
    page = browser.new_page(java_script_enabled=False)
    page.goto(server.url + "/")
    assert page.title().startswith("Expected yearly charges")
    page.screenshot(path=str(shots / "1-empty-form.png"), full_page=True)
    fill(page, PATIENT, CHOICES)
    page.click("button[type=submit]")
    page.wait_for_selector("#prediction")
    shown = page.inner_text("#prediction")
    page.screenshot(path=str(shots / "2-prediction.png"), full_page=True)
    assert "Expected yearly charges will be" in page.inner_text("#result")
    assert "USD" in page.inner_text("#result")
    record = {"age": 52, "bmi": 31.4, "children": 2, **CHOICES}
    expected = Predictor.load(insurance_model.artifact.directory).predict([record]).values[0]
    assert shown == f"{expected:,.2f}"
    assert page.input_value("input[name=age]") == "52"  # the form keeps what was entered
    page.close()


def test_out_of_range_bmi_shows_a_warning(browser: Any, server: Server, shots: Path) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    fill(page, {**PATIENT, "bmi": "62"}, CHOICES)
    page.click("button[type=submit]")
    page.wait_for_selector("#warnings")
    page.screenshot(path=str(shots / "3-out-of-range-warning.png"), full_page=True)
    assert "bmi: 62 is outside the training range 15.96 to 53.13" in page.inner_text("#warnings")
    assert page.is_visible("#prediction")
    page.close()


def test_emptied_field_shows_the_error_beside_it(browser: Any, server: Server, shots: Path) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    fill(page, {**PATIENT, "age": ""}, CHOICES)
    page.click("button[type=submit]")
    page.wait_for_selector(".error")
    page.screenshot(path=str(shots / "4-field-error.png"), full_page=True)
    error = page.locator(".field.invalid .error")
    assert error.count() == 1
    assert error.get_attribute("data-field") == "age"
    assert error.inner_text() == "is required; it cannot be empty"
    assert page.locator(".field.invalid input[name=age]").count() == 1
    assert not page.is_visible("#prediction")
    page.close()
