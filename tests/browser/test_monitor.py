"""/monitor in Chromium: drift table, both distributions, traffic and live scores, offline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tabship.monitor.store import LogStore
from tabship.monitor.tables import Entry, entry_text
from tabship.predictor import Predictor
from tabship.train import TrainOptions
from tabship.workflow import TrainedModel, train_model

from ..conftest import FAST_MODELS
from ..servers import Server, start_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]
FEATURES = ["age", "sex", "bmi", "children", "smoker", "region"]
# The id prefix of the pod that served the backfilled hours (ids are `prefix-counter`).
EARLIER_POD = "0e0e0e0e0e0e"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, insurance_csv: Path) -> TrainedModel:
    folder = tmp_path_factory.mktemp("monitor-model")
    options = TrainOptions(target="charges", folds=3, models=FAST_MODELS)
    return train_model(
        str(insurance_csv), options, folder / "model", target_label="Expected yearly charges"
    )


def sample(table: pd.DataFrame, count: int, seed: int) -> list[dict[str, Any]]:
    rows = table.sample(count, replace=True, random_state=seed)[FEATURES].to_dict("records")
    return [{k: v.item() if isinstance(v, np.generic) else v for k, v in r.items()} for r in rows]


def backfill(model: TrainedModel, url: str, table: pd.DataFrame) -> None:
    """Six hours of earlier traffic from another pod: real predictions of sampled rows,
    written with past times."""
    predictor = Predictor.load(model.artifact.directory)
    store = LogStore(url)
    now = time.time()
    entries: list[Entry] = []
    for hour in range(6, 0, -1):
        records = sample(table, 120, seed=hour)
        values = predictor.predict(records).values
        for index, (record, value) in enumerate(zip(records, values, strict=True)):
            pid = f"{EARLIER_POD}-{len(entries) + 1:010x}"
            ts = now - hour * 3600 + index * 20
            latency = 0.4 + 0.05 * (index % 7)
            fields = (pid, ts, f"past-{hour}", "/v1/predict", record, value, None, [], latency)
            entries.append((pid, ts, entry_text(fields)))
    store.insert(entries, model.artifact.sha256, "earlier")
    answered = [(pid, json.loads(text)[5] * 1.1) for pid, _, text in entries[::4]]
    store.add_feedback(answered, store.batches_of([pid for pid, _ in answered]))
    store.close()


@pytest.fixture(scope="module")
def monitored(
    model: TrainedModel, insurance_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("monitor-server")
    url = f"sqlite:///{folder / 'log.db'}"
    table = pd.read_csv(insurance_csv)
    backfill(model, url, table)
    running = start_server(model.artifact.directory, folder, "--log-db", url)
    # Live traffic now: bmi moved two standard deviations, every patient a smoker.
    shifted = [
        {**r, "bmi": r["bmi"] + 2 * float(table["bmi"].std()), "smoker": "yes"}
        for r in sample(table, 600, seed=99)
    ]
    answer = httpx.post(f"{running.url}/v1/predict", json={"instances": shifted}, timeout=30).json()
    feedback = [
        {"id": pid, "actual": value * 0.9}
        for pid, value in zip(answer["ids"][:100], answer["predictions"], strict=False)
    ]
    assert httpx.post(f"{running.url}/v1/feedback", json=feedback, timeout=30).status_code == 200
    yield running
    running.stop()


def test_monitor_page_in_chromium(browser: Any, monitored: Server, shots: Path) -> None:
    page = browser.new_page(java_script_enabled=False)
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(monitored.url + "/monitor?since=8h")
    assert page.title() == "Monitor: Expected yearly charges · tabship"
    rows = {
        row.get_attribute("data-feature"): row.inner_text()
        for row in page.query_selector_all("#drift tbody tr")
    }
    assert set(rows) == {*FEATURES, None}  # the model's answer is not a feature's row
    output = page.query_selector("#drift tbody tr[data-output=prediction]")
    assert output is not None and "(the model's prediction)" in output.inner_text()
    assert "alert" in rows["bmi"] and "alert" in rows["smoker"]
    assert "ok" in rows["age"] and "ok" in rows["region"]
    assert "wasserstein_std" in rows["bmi"] and "jensen_shannon" in rows["smoker"]
    assert len(page.query_selector_all("figure svg")) >= len(FEATURES) + 1 + 2
    assert page.is_visible("#scores")
    assert "mae" in page.inner_text("#scores")
    page.screenshot(path=str(shots / "monitor.png"), full_page=True)
    # Nothing fetched from elsewhere, nothing refused by the page's CSP.
    assert [url for url in requests if not url.startswith(monitored.url)] == []
    assert not [p for p in problems if "Content Security Policy" in p], problems
    page.close()
