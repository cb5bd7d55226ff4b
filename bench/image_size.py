"""Image sizes for an ONNX-engine and a scikit-learn-engine insurance model, built with podman.

Reports the whole image and the layers tabship adds above the base image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tabship.train import TrainOptions
from tabship.workflow import train_model

ROOT = Path(__file__).resolve().parents[1]
BASE = os.environ.get("TABSHIP_TEST_BASE_IMAGE", "localhost/debian-python:bookworm")
TABSHIP = str(Path(sys.executable).with_name("tabship"))


def podman_json(*args: str) -> object:
    return json.loads(
        subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout
    )


def size(image: str) -> int:
    return int(podman_json("image", "inspect", image)[0]["Size"])  # type: ignore[index]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tabship-size-"))
    models = {
        "onnx": train_model(
            "insurance",
            TrainOptions(target="charges", models=["gradient_boosting_huber"]),
            work / "onnx",
        ),
        "sklearn": train_model(
            "insurance", TrainOptions(target="charges", models=["knn"]), work / "sklearn"
        ),
    }
    base = size(BASE)
    rows = []
    for engine, trained in models.items():
        assert trained.engine == engine, f"expected the {engine} engine, got {trained.engine}"
        tag = f"localhost/tabship-size-{engine}:bench"
        subprocess.run(
            [
                TABSHIP,
                "build",
                str(trained.artifact.directory),
                "-t",
                tag,
                "--builder",
                "podman",
                "--base-image",
                BASE,
                "--wheelhouse",
                str(ROOT / ".pytest_cache" / "tabship-wheels"),
            ],
            check=True,
            capture_output=True,
        )
        total = size(tag)
        rows.append((engine, total, total - base))
        subprocess.run(["podman", "rmi", "--force", tag], check=True, capture_output=True)
    subprocess.run(
        ["podman", "image", "prune", "--force", "--filter", "label=io.tabship.stage=builder"],
        check=True,
        capture_output=True,
    )
    print(f"base image {BASE}: {base / 1e6:.1f} MB")
    print("| engine | image MB | tabship layers MB |")
    print("|---|---:|---:|")
    for engine, total, added in rows:
        print(f"| {engine} | {total / 1e6:.1f} | {added / 1e6:.1f} |")


if __name__ == "__main__":
    main()
