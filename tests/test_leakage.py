from __future__ import annotations

import numpy as np
import pandas as pd

from tabship.train import TrainOptions
from tabship.trainset import prepare


def _table(rows: int = 400, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "kind": rng.choice(list("xyz"), rows)})
    frame["y"] = 3 * frame["a"] + (frame["kind"] == "x") + rng.normal(size=rows)
    return frame


def _notes(frame: pd.DataFrame, target: str) -> list[str]:
    return prepare(frame, TrainOptions(target=target))[5]


def test_a_plain_table_raises_nothing() -> None:
    frame = _table()
    assert _notes(frame, "y") == []
    assert (
        _notes(frame.assign(label=np.where(frame["y"] > 0, "hi", "lo")).drop(columns="y"), "label")
        == []
    )
    insurance_like = _table().assign(band=lambda f: pd.cut(f["y"], 4).astype(str))
    assert _notes(insurance_like, "y") == []  # four coarse bands: strong, not exact


def test_a_column_made_from_a_numeric_target_is_named() -> None:
    frame = _table()
    notes = _notes(frame.assign(y_made=np.exp(frame["y"] / 3)), "y")
    assert notes == [
        "column 'y_made' gives 'y' away (rank correlation 1.0000): if it is not known before "
        "the target is, drop it; cross-validation scores it, service will not have it"
    ]
    noisy = frame.assign(y_noisy=frame["y"] + np.random.default_rng(3).normal(0, 0.2, len(frame)))
    assert _notes(noisy, "y") == []  # close, not the target itself


def test_a_class_given_away_by_a_code_or_a_threshold_is_named() -> None:
    frame = _table()
    frame["label"] = np.where(frame["y"] > 0, "hi", "lo")
    frame["outcome_code"] = np.where(frame["y"] > 0, "P", "N")
    notes = _notes(frame, "label")
    assert any(
        n.startswith("column 'y' gives 'label' away (thresholds on it separate") for n in notes
    )
    assert any(
        n.startswith(
            "column 'outcome_code' gives 'label' away (each value holds one class in 100.0%"
        )
        for n in notes
    )
    assert not any("'a' gives" in n or "'kind' gives" in n for n in notes)


def test_levels_met_once_are_no_evidence_and_imbalance_is_no_leak() -> None:
    frame = _table(500)
    frame["code"] = [f"c{i}" if i < 200 else f"d{i % 50}" for i in range(500)]
    assert _notes(frame, "y") == []
    rare = frame.assign(label=np.where(np.arange(500) < 495, "common", "rare"), flag="f")
    rare.loc[495:, "flag"] = "t"
    # 'flag' marks the rare class exactly: named; a column of one class's majority is not.
    notes = _notes(rare.drop(columns="y"), "label")
    assert any(n.startswith("column 'flag' gives 'label' away") for n in notes)


def test_rows_repeated_in_every_used_column_are_said() -> None:
    from tabship.leakage import repeated_rows_note

    frame = pd.DataFrame({"a": [1, 2, 1, 3], "b": ["x", "y", "x", "z"], "y": [5, 6, 5, 7]})
    assert repeated_rows_note(frame, ["a", "b", "y"])[0].startswith(
        "1 of 4 rows repeat an earlier row in every column used"
    )
    assert repeated_rows_note(frame.assign(y=[5, 6, 9, 7]), ["a", "b", "y"]) == []
