from __future__ import annotations

import tabship


def test_public_api_is_exactly_all() -> None:
    assert tabship.__all__ == [
        "Artifact",
        "ArtifactError",
        "DataError",
        "DatasetError",
        "OutputExistsError",
        "Prediction",
        "Predictor",
        "RecordError",
        "Schema",
        "TabshipError",
        "TrainOptions",
        "__version__",
        "predict_file",
        "train_model",
    ]
    for name in tabship.__all__:
        assert getattr(tabship, name) is not None


def test_errors_share_one_root() -> None:
    for name in ("ArtifactError", "DataError", "DatasetError", "OutputExistsError", "RecordError"):
        assert issubclass(getattr(tabship, name), tabship.TabshipError)
