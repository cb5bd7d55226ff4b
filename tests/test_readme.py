"""A newcomer's path: the README opens with the two commands, and they exist and work."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .servers import TABSHIP, free_port

REPO = Path(__file__).resolve().parents[1]


def test_readme_opens_with_make_demo_and_make_test() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in block[:2]] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo:", "test:", "check:", "bench:"):
        assert f"\n{target}" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_demo_trains_once_then_serves(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    model = str(tmp_path / "m")
    first = subprocess.run(
        [TABSHIP, "demo", "-o", model, "--no-serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr
    assert "Cross-validated leaderboard" in first.stdout and "engine: onnx" in first.stdout
    port = free_port()
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen(
        [TABSHIP, "demo", "-o", model, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and "Expected yearly charges" in page.text
        patient = {"age": 45, "sex": "female", "bmi": 30.5, "children": 2}
        patient |= {"smoker": "no", "region": "southeast"}
        answer = httpx.post(f"http://127.0.0.1:{port}/predict_api", json=patient)
        assert answer.status_code == 200
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0
        log.close()
    output = (tmp_path / "demo.log").read_text()
    assert "already holds a model; serving it" in output and f"http://localhost:{port}" in output
    # The demo logs every prediction to a SQLite file beside the model folder.
    assert "logging predictions to sqlite:///" in output
    with sqlite3.connect(tmp_path / "predictions.db") as db:
        ids = [row[0] for row in db.execute("SELECT id FROM tabship_predictions")]
    assert ids == [answer.headers["x-prediction-id"]]


# Flags added or renamed in issue 12: each is in the command's --help and in the docs (the
# README, or the reference it links to in docs/*.md).
DOCUMENTED_FLAGS = {
    ("train",): ["--keep-background"],
    ("predict",): ["--strict-categories", "--no-formula-guard", "--engine"],
    ("serve",): [
        "--strict-categories",
        "--allowed-hosts",
        "--read-timeout",
        "--max-header-bytes",
        "--engine",
        "--model-name",
        "--log-db",
        "--log-retention-days",
    ],
    ("manifests",): ["--kserve", "--log-db-secret", "--log-db-port", "--log-sqlite"],
    ("build",): ["--builder"],
    ("deploy", "gke"): ["--builder"],
    # Issue 14: the prediction log.
    ("monitor",): ["--log-db", "--since", "--format"],
    ("log", "export"): ["--log-db", "--since"],
}


@pytest.mark.parametrize("command", sorted(DOCUMENTED_FLAGS))
def test_readme_documents_the_flags_the_cli_has(command: tuple[str, ...]) -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) > 1, "docs/*.md holds the reference the README links to"
    documented = "\n".join(page.read_text() for page in pages)
    env = {**os.environ, "COLUMNS": "200"}
    shown = subprocess.run(
        [TABSHIP, *command, "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    for flag in DOCUMENTED_FLAGS[command]:
        assert flag in shown, f"{' '.join(command)} --help lacks {flag}"
        assert f"`{flag}" in documented, f"neither the README nor docs/*.md mentions {flag}"
    if command in (("build",), ("deploy", "gke")):
        assert "--engine" not in shown  # the deprecated alias is hidden
    assert "--engine docker|podman`, `--push" not in documented
