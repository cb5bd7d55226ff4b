from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tabship import datasets
from tabship.config import Settings
from tabship.errors import DatasetError

INSURANCE_SHA = datasets.BUILTIN["insurance"].sha256


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a folder, stopped after the test."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_found_in_data_home_and_verified(data_home: Path, tmp_path: Path) -> None:
    settings = Settings(data_home=data_home, cache_dir=tmp_path / "cache")
    path = datasets.fetch("insurance", settings)
    assert path == data_home / "insurance.csv"
    assert datasets.file_sha256(path) == INSURANCE_SHA


def test_wrong_checksum_in_data_home_is_refused(tmp_path: Path) -> None:
    (tmp_path / "insurance.csv").write_text("age,charges\n1,2\n")
    settings = Settings(data_home=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetError) as caught:
        datasets.fetch("insurance", settings)
    message = str(caught.value)
    assert INSURANCE_SHA in message and "tabship datasets fetch insurance" in message


def test_cache_is_used_when_no_data_home(data_home: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "datasets").mkdir(parents=True)
    shutil.copy(data_home / "insurance.csv", cache / "datasets" / "insurance.csv")
    assert (
        datasets.fetch("insurance", Settings(data_home=None, cache_dir=cache)).parent
        == cache / "datasets"
    )


def test_download_verifies_and_saves(
    file_server: tuple[str, Path], data_home: Path, tmp_path: Path
) -> None:
    url, root = file_server
    shutil.copy(data_home / "insurance.csv", root / "insurance.csv")
    dest = tmp_path / "cache" / "insurance.csv"
    assert datasets.download(f"{url}/insurance.csv", dest, INSURANCE_SHA) == dest
    assert datasets.file_sha256(dest) == INSURANCE_SHA


def test_download_with_wrong_checksum_saves_nothing(
    file_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = file_server
    (root / "insurance.csv").write_text("tampered\n")
    dest = tmp_path / "cache" / "insurance.csv"
    with pytest.raises(DatasetError) as caught:
        datasets.download(f"{url}/insurance.csv", dest, INSURANCE_SHA)
    actual = hashlib.sha256(b"tampered\n").hexdigest()
    assert actual in str(caught.value) and INSURANCE_SHA in str(caught.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_unreachable_network_says_where_to_put_the_file(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    dest = tmp_path / "cache" / "insurance.csv"
    with pytest.raises(DatasetError) as caught:
        datasets.download(f"http://127.0.0.1:{closed_port}/insurance.csv", dest, INSURANCE_SHA)
    assert f"save it as {dest}" in str(caught.value) and "TABSHIP_DATA_HOME" in str(caught.value)


def test_unknown_dataset_and_missing_file() -> None:
    with pytest.raises(DatasetError, match="built-in datasets: insurance"):
        datasets.get_dataset("titanic")
    with pytest.raises(
        DatasetError, match="no file nowhere.csv; give a CSV or Parquet path or one of: insurance"
    ):
        datasets.resolve("nowhere.csv")


def test_reads_csv_and_parquet(tmp_path: Path, tiny_table: pd.DataFrame) -> None:
    tiny_table.to_parquet(tmp_path / "t.parquet")
    tiny_table.to_csv(tmp_path / "t.csv", index=False)
    from_parquet = datasets.read_table(tmp_path / "t.parquet")
    from_csv = datasets.read_table(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(from_parquet, tiny_table)
    assert list(from_csv.columns) == list(tiny_table.columns)


def test_unreadable_tables_give_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(DatasetError, match="unknown file type '.xlsx'"):
        datasets.read_table(tmp_path / "t.xlsx")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="cannot read"):
        datasets.read_table(tmp_path / "empty.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DatasetError, match="cannot read"):
        datasets.read_table(tmp_path / "bad.parquet")


def test_settings_read_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TABSHIP_DATA_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "x")}
    )
    assert settings.data_home == tmp_path
    assert settings.cache_dir == tmp_path / "x" / "tabship"


def test_a_spreadsheets_totals_row_is_left_out_and_said(tmp_path: Path) -> None:
    rows = "".join(f"{x},{'ab'[x % 2]},{3.5 * x:.2f}\n" for x in range(1, 11))
    (tmp_path / "t.csv").write_text("x,g,y\n" + rows + "Total:,,192.50\n")
    frame = datasets.read_table(tmp_path / "t.csv")
    assert len(frame) == 10 and frame["x"].dtype.kind == "i"  # not a category with 'Total:'
    assert frame.attrs[datasets.NOTES] == [
        "row 11 looks like a totals row ('Total:' in column 'x', the last row with values); "
        "left out"
    ]
    (tmp_path / "u.csv").write_text("x,g,y\n" + rows + "11,total,38.5\n")  # a level
    kept = datasets.read_table(tmp_path / "u.csv")
    assert len(kept) == 11 and kept.attrs[datasets.NOTES] == []
    # A level the first column holds elsewhere is a value; a totals row above empty ones is one.
    levels = "".join(f"{['Total', 'Basic'][x % 2]},{x},{3.5 * x}\n" for x in range(1, 11))
    (tmp_path / "v.csv").write_text("plan,x,y\n" + levels)
    assert len(datasets.read_table(tmp_path / "v.csv")) == 10
    (tmp_path / "w.csv").write_text("x,g,y\n" + rows + "Total,,192.5\n,,\n,,\n")
    below = datasets.read_table(tmp_path / "w.csv")
    assert len(below) == 10 and below["x"].dtype.kind == "i"
    assert below.attrs[datasets.NOTES][0].startswith("row 11 looks like a totals row ('Total'")


def test_the_target_as_written_has_the_rows_the_table_kept(tmp_path: Path) -> None:
    # With one row more (the totals row), training's check that keeps an `NA` class was
    # skipped, and the NA class dropped as empty targets.
    rows = "".join(f"{x},{['NA', 'EU', 'AS'][x % 3]}\n" for x in range(1, 31))
    (tmp_path / "t.csv").write_text("x,market\n" + rows + "Total,\n")
    frame = datasets.read_table(tmp_path / "t.csv")
    written = datasets.written_column(tmp_path / "t.csv", "market", len(frame))
    assert written is not None and len(written) == len(frame) == 30
    assert (written == "NA").sum() == 10


def test_columns_with_neither_a_name_nor_a_value_are_left_out_in_one_note(tmp_path: Path) -> None:
    lines = ["a,b,y,,"] + [f"{i},{i % 3},{i * 2},," for i in range(20)]
    (tmp_path / "left.csv").write_text("\n".join(lines) + "\n")
    frame = datasets.read_table(tmp_path / "left.csv")
    assert list(frame.columns) == ["a", "b", "y"] and frame.attrs[datasets.UNNAMED] == []
    assert frame.attrs[datasets.NOTES] == [
        "2 columns with neither a name nor a value (separators past the last column) left out"
    ]
    # An unnamed column holding values stays, and is named as before.
    (tmp_path / "index.csv").write_text(",a,y\n0,1,2\n1,3,4\n")
    assert datasets.read_table(tmp_path / "index.csv").attrs[datasets.UNNAMED] == [
        (1, "Unnamed: 0")
    ]
