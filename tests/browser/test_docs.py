"""/docs in a real browser: Swagger UI from this server only, under its CSP, every route listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from ..servers import Server

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_docs_render_offline_with_every_route(browser: Any, server: Server, shots: Path) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    spec = httpx.get(server.url + "/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert page.locator(".opblock").count() == operations
    assert "tabship: Expected yearly charges" in page.inner_text(".info")
    assert [url for url in requests if not url.startswith((server.url, "data:"))] == []
    assert not [p for p in problems if "Content Security Policy" in p], problems
    page.screenshot(path=str(shots / "7-docs.png"), full_page=False)
    page.close()


def test_report_served_under_its_csp_still_sorts(browser: Any, server: Server) -> None:
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/report")
    page.click("#leaderboard th:nth-child(3) button")
    assert page.get_attribute("#leaderboard th:nth-child(3)", "aria-sort") == "ascending"
    assert not problems, problems
    page.close()
