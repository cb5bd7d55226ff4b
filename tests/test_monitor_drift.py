"""Drift statistics against a profile: PSI, Jensen-Shannon, Wasserstein, status thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from tabship.monitor.drift import (
    INSUFFICIENT,
    MIN_ROWS,
    categorical_drift,
    jensen_shannon,
    numeric_drift,
    psi,
    status_of,
)
from tabship.monitor.profile import profile_levels, profile_numbers


def test_status_thresholds() -> None:
    assert status_of(0.0) == "ok"
    assert status_of(0.0999) == "ok"
    assert status_of(0.1) == "warn"
    assert status_of(0.2499) == "warn"
    assert status_of(0.25) == "alert"


def test_psi_and_jensen_shannon_of_known_vectors() -> None:
    same = np.array([0.25, 0.25, 0.5])
    assert psi(same, same) == pytest.approx(0.0)
    expected = np.array([0.5, 0.5])
    actual = np.array([0.9, 0.1])
    assert psi(expected, actual) == pytest.approx(0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5))
    assert jensen_shannon(same, same) == pytest.approx(0.0)
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    from scipy.spatial.distance import jensenshannon

    assert jensen_shannon(expected, actual) == pytest.approx(
        jensenshannon(expected, actual, base=2)
    )


def test_a_sample_of_the_reference_is_ok_and_a_shift_is_an_alert() -> None:
    rng = np.random.default_rng(1)
    training = rng.normal(30, 5, 5000)
    profile = profile_numbers("bmi", training)
    same = numeric_drift(profile, rng.choice(training, 2000).tolist())
    assert same.status == "ok"
    assert same.statistics["wasserstein_std"] < 0.1
    moved = numeric_drift(profile, (rng.choice(training, 2000) + 10).tolist())
    assert moved.status == "alert"
    assert moved.statistics["wasserstein_std"] == pytest.approx(2.0, abs=0.1)
    from scipy.stats import wasserstein_distance

    live = rng.choice(training, 2000) + 3
    exact = wasserstein_distance(training, live) / training.std()
    assert numeric_drift(profile, live.tolist()).statistics["wasserstein_std"] == pytest.approx(
        exact, abs=0.05
    )


def test_a_category_forced_to_one_level_is_an_alert() -> None:
    rng = np.random.default_rng(2)
    training = rng.choice(["north", "south", "east"], 3000)
    profile = profile_levels("region", training)
    assert categorical_drift(profile, rng.choice(training, 1000).tolist()).status == "ok"
    forced = categorical_drift(profile, ["north"] * 1000)
    assert forced.status == "alert"
    assert 0.4 < forced.statistics["jensen_shannon"] < 1.0
    unseen = categorical_drift(profile, ["west"] * 1000)  # a new level lands in "other"
    assert unseen.status == "alert"
    assert unseen.live[-2] == 1.0


def test_a_level_named_like_a_bucket_keeps_its_own_name_and_bar() -> None:
    training = ["(other)", "(missing)", "a"] * 400 + [f"rare{i}" for i in range(60)] + [None] * 30
    profile = profile_levels("kind", training)
    drift = categorical_drift(profile, ["(other)"] * 500 + ["rare59"] * 100)
    assert len(set(drift.bins)) == len(drift.bins)  # one bar per name on /monitor and in JSON
    assert drift.bins[-2:] == ["(other levels)", "(missing values)"]
    assert drift.live[drift.bins.index("(other)")] == 500 / 600
    assert drift.live[-2] == 100 / 600


def test_windows_of_the_training_table_itself_are_ok_at_a_hundred_rows() -> None:
    # PSI from noise alone is about (bins - 1) / rows: 0.2 here, so by PSI these windows
    # were warn or alert nine times in ten; the status also needs a significant difference.
    rng = np.random.default_rng(5)
    training = rng.choice([f"level{i:02d}" for i in range(20)], 3000)
    numbers = rng.normal(50, 10, 3000)
    levels, spread = profile_levels("kind", training), profile_numbers("x", numbers)
    statuses, psis = [], []
    for _ in range(50):
        picked = rng.choice(3000, 100, replace=False)
        drift = categorical_drift(levels, training[picked].tolist(), training_rows=3000)
        statuses += [drift.status, numeric_drift(spread, numbers[picked].tolist(), 3000).status]
        psis.append(drift.statistics["psi"])
    assert np.median(psis) > 0.1  # what PSI alone would have said
    assert statuses.count("ok") >= 99, statuses
    # A real shift at the same size is still an alert, and says how sure it is.
    forced = categorical_drift(levels, ["level03"] * 100, training_rows=3000)
    moved = numeric_drift(spread, (numbers[:100] + 20).tolist(), 3000)
    assert forced.status == moved.status == "alert"
    assert forced.statistics["p_value"] < 1e-10 and moved.statistics["p_value"] < 1e-10


def test_live_values_are_read_as_the_model_reads_them() -> None:
    flags = profile_levels("flag", np.array(["True", "False"] * 500, dtype=object))
    live = ["true", "FALSE", True, False, "None", "NA", "n/a", None, "maybe"] * 20
    drift = categorical_drift(flags, live, boolean=True)
    shares = dict(zip(drift.bins, drift.live, strict=True))
    assert shares == {"False": 2 / 9, "True": 2 / 9, "(other)": 1 / 9, "(missing)": 4 / 9}
    # A text feature's `true` is a level training never saw (the model reads it so).
    answers = profile_levels("answer", np.array(["True", "False", "Unknown"] * 300, dtype=object))
    texts = categorical_drift(answers, ["true", "false"] * 250, training_rows=900)
    assert texts.live[texts.bins.index("(other)")] == 1.0 and texts.status == "alert"
    # A code that is a level (North America's NA) stays that level.
    codes = profile_levels("region", np.array(["NA", "EU"] * 500, dtype=object))
    coded = categorical_drift(codes, ["NA"] * 100)
    assert coded.live[coded.bins.index("NA")] == 1.0


def test_too_few_rows_give_no_number() -> None:
    profile = profile_numbers("age", np.arange(100, dtype=float))
    few = numeric_drift(profile, [1.0] * (MIN_ROWS - 1))
    assert few.status == INSUFFICIENT
    assert few.statistics == {}


def test_missing_and_non_numbers_count_as_missing() -> None:
    profile = profile_numbers("age", np.arange(1000, dtype=float))
    drift = numeric_drift(profile, [None] * 500 + [5.0] * 500)
    assert drift.live[-1] == 0.5
    assert drift.status == "alert"


def test_two_rows_of_a_rare_level_are_not_an_alert_by_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tabship.monitor import drift

    rng = np.random.default_rng(5)
    levels = [f"l{i:02d}" for i in range(19)]
    profile = profile_levels("k", np.array([*rng.choice(levels, 2997), *["rare"] * 3], object))
    windows = [[*rng.choice(levels, 98), "rare", "rare"] for _ in range(40)]

    def alerted() -> int:
        found = [categorical_drift(profile, window, 3000).status for window in windows]
        return sum(status != "ok" for status in found)

    # Tested alone, the rare level's bin (0.1 rows expected) made 7 windows of 40 warn or
    # alert; bins expecting under five rows are tested as one.
    assert alerted() == 0
    monkeypatch.setattr(drift, "MIN_EXPECTED", 0.0)
    assert alerted() >= 3


def test_the_chi_square_tail_is_scipys_without_importing_it() -> None:
    from scipy.special import chdtrc

    from tabship.monitor.drift import chi2_survival

    for dof in [*range(1, 45), 999, 2000]:  # a thousand classes: no underflow
        for x in [*np.linspace(0.001, 90, 60), 300.0, 1000.0, dof * 1.05]:
            assert chi2_survival(dof, float(x)) == pytest.approx(
                chdtrc(dof, x), rel=1e-9, abs=1e-300
            )
