"""Why and what-if on the form in Chromium: the waterfall, the curves, keyboard and phone width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from ..servers import Server
from .test_form import CHOICES, PATIENT, fill

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PHONE = {"width": 390, "height": 844}


def submitted(browser: Any, server: Server, **options: Any) -> tuple[Any, list[str]]:
    """A page after Predict (no JavaScript: the charts need none), and its console messages."""
    page = browser.new_page(java_script_enabled=False, **options)
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    page.goto(server.url + "/")
    fill(page, PATIENT, CHOICES)
    page.click("button[type=submit]")
    page.wait_for_selector("#explanation")
    return page, messages


def amount(text: str) -> float:
    return float(text.replace(",", "").replace("+", "").strip())


def test_contributions_chart_sums_to_the_prediction(
    browser: Any, server: Server, shots: Path
) -> None:
    page, messages = submitted(browser, server)
    page.locator("#explanation").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "7-explanation.png"), full_page=True)
    rows = page.locator("#contributions tbody tr")
    cells = [rows.nth(i).locator("td").last.inner_text() for i in range(rows.count())]
    base, moves, prediction = amount(cells[0]), [amount(c) for c in cells[1:-1]], cells[-1]
    assert len(moves) == 6
    assert [abs(m) for m in moves] == sorted((abs(m) for m in moves), reverse=True)
    assert amount(prediction) == pytest.approx(base + sum(moves), abs=0.01 * 7)
    assert prediction == page.inner_text("#prediction")
    first = rows.nth(1).locator("th").inner_text()
    assert first == "smoker = yes" and moves[0] > 10_000
    # Every bar is drawn inside its box (SVG from the server, no script, CSP kept).
    widths = page.eval_on_selector_all(
        "#contributions rect", "els => els.map(e => e.getBoundingClientRect().width)"
    )
    assert len(widths) == 6 and all(w > 0 for w in widths)
    assert not [m for m in messages if "Content Security Policy" in m]
    policy = httpx.get(server.url + "/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    page.close()


def test_what_if_charts_at_phone_width_by_keyboard(
    browser: Any, server: Server, shots: Path
) -> None:
    page, messages = submitted(browser, server, viewport=PHONE, device_scale_factor=2)
    figures = page.locator("figure.whatif")
    assert figures.count() == 6
    assert page.locator("figure.whatif polyline").count() == 3  # age, bmi, children
    assert page.locator("figure.whatif circle.marker").count() == 3
    current = page.locator("figure.whatif tr.current th")
    assert sorted(current.all_inner_texts()) == [
        "female this record",
        "northeast this record",
        "yes this record",
    ]
    # Nothing wider than the phone: no sideways scrolling of the page.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    # Keyboard: Tab reaches the contribution table and each what-if chart after the form.
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert "contributions-region" in reached
    assert all(f"whatif-{index}" in reached for index in range(1, 7))
    page.locator("#whatif-3").focus()
    page.locator("#what-if").screenshot(path=str(shots / "8-what-if.png"))
    bmi = page.locator('figure[data-feature="bmi"] figcaption').inner_text()
    assert bmi.startswith("bmi (now 31.4:")
    assert not [m for m in messages if "Content Security Policy" in m]
    page.close()
