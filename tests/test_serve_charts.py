"""The form's chart helpers: bars measured from zero where predictions never go below it."""

from __future__ import annotations

import pytest


def test_level_bars_of_amounts_start_at_zero() -> None:
    from tabship.serve.charts import levels

    bars = levels(["north", "south"], [12_000.0, 12_400.0], "north")
    widths = [bar["width"] for bar in bars]
    # Lengths in proportion to the predictions (it was 20 against 100 of a 100 span).
    assert widths[0] / widths[1] == pytest.approx(12_000 / 12_400, rel=1e-3)
    assert [bar["current"] for bar in bars] == [True, False]
    signed = [bar["width"] for bar in levels(["a", "b"], [-3.0, 1.0], "a")]
    assert 0 < signed[0] < signed[1]
