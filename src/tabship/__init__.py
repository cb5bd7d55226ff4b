"""tabship: from a table to a served, containerised, deployed model."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Lazy, so `import tabship` (and the CLI's --help, and serving) does not pull in
# scikit-learn or pandas until a name that needs them is used.
_EXPORTS = {
    "ArtifactError": "tabship.errors",
    "DataError": "tabship.errors",
    "DatasetError": "tabship.errors",
    "OutputExistsError": "tabship.errors",
    "RecordError": "tabship.errors",
    "TabshipError": "tabship.errors",
    "Artifact": "tabship.artifact",
    "Prediction": "tabship.predictor",
    "Predictor": "tabship.predictor",
    "Schema": "tabship.schema",
    "TrainOptions": "tabship.train",
    "train_model": "tabship.workflow",
    "predict_file": "tabship.batch",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tabship' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
