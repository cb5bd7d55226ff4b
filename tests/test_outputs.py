from __future__ import annotations

from pathlib import Path

import pytest

from tabship.outputs import staged


def test_a_failed_write_leaves_the_old_file_and_no_scraps(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("the user's file")
    with pytest.raises(RuntimeError), staged(out) as partial:
        partial.write_text("half")
        raise RuntimeError("the writer failed half-way")
    assert out.read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_finished_write_takes_the_place_of_a_link_not_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("kept")
    out = tmp_path / "out.txt"
    out.symlink_to(target)
    with staged(out) as partial:  # the caller checked --force
        partial.write_text("new")
    assert out.read_text() == "new" and not out.is_symlink() and target.read_text() == "kept"
