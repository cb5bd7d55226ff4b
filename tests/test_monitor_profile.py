"""The reference profile: sealed at training, shown in the report, optional for old folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tabship.artifact import PROFILE_FILE, REPORT_FILE, Artifact, write_artifact
from tabship.errors import ArtifactError
from tabship.monitor.profile import (
    MAX_LEVELS,
    OTHER,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    load_profile,
    profile_levels,
    profile_numbers,
)
from tabship.workflow import TrainedModel


def test_training_seals_a_profile_of_every_feature_and_the_prediction(
    tiny_model: TrainedModel,
) -> None:
    artifact = tiny_model.artifact
    assert PROFILE_FILE in artifact.card.files  # listed, so its sha256 is checked on open
    profile = load_profile(artifact)
    assert profile is not None
    assert profile.rows == artifact.card.training.rows
    assert [f.name for f in profile.features] == artifact.card.schema.names
    age = profile.feature("age")
    assert isinstance(age, NumericProfile)
    assert 10 <= len(age.shares) <= 20 or len(age.edges) + 1 == len(age.shares)
    assert abs(sum(age.shares) - 1) < 1e-9
    assert age.minimum is not None and age.maximum is not None and age.minimum < age.maximum
    smoker = profile.feature("smoker")
    assert isinstance(smoker, CategoricalProfile)
    assert set(smoker.levels) == {"no", "yes"}
    assert isinstance(profile.prediction, NumericProfile)
    # No training row is stored: the file is a few kilobytes of summaries.
    raw = artifact.read(PROFILE_FILE)
    assert len(raw) < 30_000
    assert ReferenceProfile.from_dict(json.loads(raw)) == profile


def test_the_report_shows_the_profile(tiny_model: TrainedModel) -> None:
    html = tiny_model.artifact.read(REPORT_FILE).decode()
    assert 'id="profile"' in html
    assert "age: training distribution" in html
    assert html.count('class="profile"') == len(tiny_model.artifact.card.schema.names) + 1


def test_a_changed_profile_is_refused(tiny_model: TrainedModel, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model.artifact.directory, copy)
    path = copy / PROFILE_FILE
    path.write_text(path.read_text().replace('"rows": ', '"rows": 1'))
    with pytest.raises(ArtifactError, match="profile.json was modified"):
        Artifact.open(copy)


def test_a_folder_without_a_profile_still_opens(tiny_model: TrainedModel, tmp_path: Path) -> None:
    card = tiny_model.artifact.card
    metadata = {
        k: v
        for k, v in card.document.items()
        if k not in ("format", "format_version", "created", "versions", "files", "metadata_sha256")
    }
    files = {name: tiny_model.artifact.read(name) for name in card.files if name != PROFILE_FILE}
    old = write_artifact(tmp_path / "old", metadata, files)
    assert load_profile(Artifact.open(old)) is None


def test_levels_are_capped_and_missing_counted() -> None:
    values = [f"v{i}" for i in range(60)] * 2 + ["", ""]
    profile = profile_levels("code", np.array(values, dtype=object))
    assert len(profile.levels) == MAX_LEVELS
    assert profile.other == pytest.approx(80 / 122)
    assert profile.missing == pytest.approx(2 / 122)
    assert profile.bins()[-2] == OTHER


def test_few_distinct_numbers_get_one_bin_each() -> None:
    profile = profile_numbers("children", np.array([0, 0, 1, 1, 2, 3, 3, 3, np.nan], dtype=float))
    assert profile.missing == pytest.approx(1 / 9)
    assert len(profile.shares) == len(profile.edges) + 1
    assert sum(profile.shares) == pytest.approx(1.0)
    assert profile.labels()[0].startswith("< ")
    # Each bin holds its low edge, not its high one: "[0, 0.4)", not "0 to 0.4".
    assert all(label.startswith("[") and label.endswith(")") for label in profile.labels()[1:-1])
    assert profile.labels()[1].startswith("[0, ") and profile.labels()[-1].startswith(">= ")


def test_a_newer_profile_version_is_refused() -> None:
    with pytest.raises(ArtifactError, match="install a newer tabship"):
        ReferenceProfile.from_dict({"format": "tabship-profile", "version": 99})


def test_bin_labels_of_huge_numbers_read_as_numbers() -> None:
    profile = profile_numbers("wealth", np.geomspace(1e3, 1e30, 500))
    labels = profile.labels()
    assert labels[0].startswith("< ") and "e+" in labels[-1]
    assert not any("e+" in label and label.rstrip(")").endswith(("k", "M")) for label in labels)
