"""The protected form in a real browser: asked for the key once per tab, then used as usual."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tabship.workflow import TrainedModel

from ..servers import Server, serving

pytestmark = [pytest.mark.slow, pytest.mark.browser]

KEY = "browser-test-key-5f0c1d"
NUMBERS = {"age": "52", "bmi": "31.4", "children": "2"}
CHOICES = {"smoker": "yes", "region": "north"}


@pytest.fixture(scope="module")
def locked(tiny_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Keys on, and a prediction log so /monitor is served too."""
    folder = tmp_path_factory.mktemp("browser-keys")
    keys = folder / "api-keys"
    keys.write_text(f"{KEY}\n")
    log = f"sqlite:///{folder / 'log.db'}"
    yield from serving(
        tiny_model.artifact.directory, folder, "--api-keys-file", str(keys), "--log-db", log
    )


def watched(browser: Any) -> tuple[Any, Any, list[str]]:
    """A new tab, and the Content-Security-Policy complaints its console will show."""
    context = browser.new_context()
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    return context, page, blocked


def test_the_form_asks_for_the_key_once_per_tab(browser: Any, locked: Server, shots: Path) -> None:
    context, page, blocked = watched(browser)
    page.goto(locked.url + "/")
    page.wait_for_selector("#key-form")
    assert not page.locator("input[name=smoker], select[name=smoker]").count()
    page.fill("#api-key", "not-the-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-error:not([hidden])")
    page.fill("#api-key", KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("select[name=smoker]")
    page.screenshot(path=str(shots / "keys-1-form-after-key.png"), full_page=True)
    for name, value in NUMBERS.items():
        page.fill(f"input[name={name}]", value)
    for name, value in CHOICES.items():
        page.select_option(f"select[name={name}]", value)
    page.click("form[action='/predict'] button[type=submit]")
    page.wait_for_selector("#prediction")
    assert page.inner_text("#prediction").replace(",", "").replace(".", "").isdigit()
    # Same tab: a reload and a link need no second prompt.
    page.goto(locked.url + "/")
    page.wait_for_selector("select[name=smoker]")
    page.goto(locked.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    page.screenshot(path=str(shots / "keys-2-docs-with-key.png"), full_page=True)
    # Nothing persists outside the tab: no cookie, and a new tab asks again.
    assert context.cookies() == []
    other = context.new_page()
    other.goto(locked.url + "/")
    other.wait_for_selector("#key-form")
    assert blocked == []
    context.close()


def test_the_monitor_page_asks_for_the_key_then_shows(
    browser: Any, locked: Server, shots: Path
) -> None:
    context, page, blocked = watched(browser)
    page.goto(locked.url + "/monitor")
    page.wait_for_selector("#key-form")
    page.fill("#api-key", KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#drift")
    page.screenshot(path=str(shots / "keys-3-monitor-after-key.png"), full_page=True)
    assert blocked == []
    context.close()
