"""The log thread's slices: every row read once, the core handed over once a slice has run."""

from __future__ import annotations

import pytest

from tabship.monitor import handover
from tabship.monitor.handover import PIECE_ROWS, SLICE_SECONDS, pieces


@pytest.fixture
def yields(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(handover, "_SCHED_YIELD", lambda: calls.append(1))
    return calls


def test_pieces_cover_every_value_in_order_with_their_starts() -> None:
    values = list(range(2 * PIECE_ROWS + 5))
    seen = [(start, list(piece)) for start, piece in pieces(values)]
    assert [start for start, _ in seen] == [0, PIECE_ROWS, 2 * PIECE_ROWS]
    assert [v for _, piece in seen for v in piece] == values
    assert list(pieces([])) == []


def test_the_core_is_handed_over_only_once_a_slice_has_run(
    monkeypatch: pytest.MonkeyPatch, yields: list[int]
) -> None:
    now = [0.0]
    monkeypatch.setattr(handover, "_CLOCK", lambda: now[0])
    values = list(range(10 * PIECE_ROWS))
    for _ in pieces(values):  # no time passes: the pass keeps the core
        pass
    assert yields == []
    for _ in pieces(values):  # each piece takes a whole slice: handed over after each
        now[0] += SLICE_SECONDS
    assert len(yields) == 10
    yields.clear()
    for _ in pieces(values):  # 0.6 of a slice a piece: after every second piece
        now[0] += SLICE_SECONDS * 0.6
    assert len(yields) == 5
