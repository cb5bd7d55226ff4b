"""The model every benchmark measures: the insurance showcase, trained once and reused."""

from __future__ import annotations

from pathlib import Path

from tabship.datasets import BUILTIN
from tabship.train import TrainOptions
from tabship.workflow import train_model

MODEL = Path(__file__).resolve().parents[1] / "models" / "insurance"


def ensure_model() -> Path:
    """The insurance model folder, trained with the demo's defaults when it is missing."""
    dataset = BUILTIN["insurance"]
    if not (MODEL / "tabship.json").is_file():
        train_model(
            dataset.name,
            TrainOptions(target=dataset.target),
            MODEL,
            target_label=dataset.target_label,
            unit=dataset.unit,
        )
    return MODEL
