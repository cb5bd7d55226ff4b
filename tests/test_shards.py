"""Sharded batch scoring: 4 shard processes equal one, re-runs are byte-identical, kills leave nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tabship.batch import predict_file
from tabship.errors import ConfigError, DatasetError, OutputExistsError
from tabship.predictor import Predictor
from tabship.shards import Shard, Store, plan, predict_shard
from tabship.workflow import TrainedModel

from .conftest import make_tiny_table

TABSHIP = [sys.executable, "-c", "from tabship.cli import main; main()"]


@pytest.fixture
def predictor(tiny_model: TrainedModel) -> Predictor:
    return Predictor.load(tiny_model.artifact.directory, threads=1)


def _rows(count: int, seed: int) -> pd.DataFrame:
    frame = make_tiny_table(rows=count, seed=seed).drop(columns="charges")
    if seed % 2:
        frame.loc[0, "region"] = "atlantis"  # an unseen value: predicted as unknown, counted
    return frame


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Five files of different sizes: three CSV, two Parquet with several row groups."""
    folder = tmp_path / "in"
    folder.mkdir()
    for number, rows in enumerate([300, 120, 450, 80, 260]):
        frame = _rows(rows, seed=number)
        if number % 2:
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False),
                folder / f"batch-{number}.parquet",
                row_group_size=50,
            )
        else:
            frame.to_csv(folder / f"batch-{number}.csv", index=False)
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.txt").write_text("not a table")
    return folder


def _single_process(predictor: Predictor, folder: Path, out: Path) -> pd.DataFrame:
    parts = []
    for source in sorted(folder.glob("batch-*")):
        target = out / f"{source.stem}.parquet"
        predict_file(predictor, source, target)
        parts.append(pd.read_parquet(target))
    return pd.concat(parts, ignore_index=True)


def _union(out: Path, count: int) -> pd.DataFrame:
    files = [out / Shard(i, count).filename("parquet") for i in range(count)]
    return pd.concat([pd.read_parquet(f) for f in files if f.exists()], ignore_index=True)


@pytest.mark.slow
def test_four_shard_processes_equal_one(
    tiny_model: TrainedModel, predictor: Predictor, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    model = str(tiny_model.artifact.directory)
    procs = [
        subprocess.Popen(
            [*TABSHIP, "predict", model, str(inputs), "-o", str(out), "--shards", "4"],
            env={**os.environ, "JOB_COMPLETION_INDEX": str(index)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    assert all(f"shard {i}/4: predicted" in results[i][0] for i in range(4))
    expected = _single_process(predictor, inputs, tmp_path / "single")
    pd.testing.assert_frame_equal(_union(out, 4), expected)
    summaries = [
        pd.read_json(out / f"part-{i:05d}-of-00004.summary.json", typ="series") for i in range(4)
    ]
    assert sum(int(s["rows"]) for s in summaries) == len(expected) == 1210
    assert sum(s["unseen"].get("region", 0) for s in summaries) == 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_plan_is_contiguous_balanced_and_covers_every_row_group(tmp_path: Path) -> None:
    big = tmp_path / "big.parquet"
    pq.write_table(
        pa.Table.from_pandas(_rows(1000, 2), preserve_index=False), big, row_group_size=100
    )
    shards = plan(Store(str(big)), [str(big)], 4)
    groups = [g for pieces in shards for piece in pieces for g in piece.row_groups or ()]
    assert groups == list(range(10))
    assert [sum(len(p.row_groups or ()) for p in pieces) for pieces in shards] in (
        [3, 2, 3, 2],
        [2, 3, 2, 3],
        [3, 3, 2, 2],
        [2, 2, 3, 3],
    )
    # More shards than row groups: the extra shards get nothing and say so.
    assert sum(1 for pieces in plan(Store(str(big)), [str(big)], 16) if not pieces) == 6


def test_rerun_gives_identical_bytes_and_needs_force(
    predictor: Predictor, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shard = Shard.parse("1/3")
    for fmt in ("parquet", "csv"):
        first = predict_shard(predictor, str(inputs), str(out), shard, fmt=fmt)
        assert first.output is not None
        data = Path(first.output).read_bytes()
        summary = (out / "part-00001-of-00003.summary.json").read_bytes()
        with pytest.raises(OutputExistsError, match="--force"):
            predict_shard(predictor, str(inputs), str(out), shard, fmt=fmt)
        predict_shard(predictor, str(inputs), str(out), shard, fmt=fmt, force=True)
        assert Path(first.output).read_bytes() == data
        assert (out / "part-00001-of-00003.summary.json").read_bytes() == summary


def test_single_big_file_splits_by_row_group(predictor: Predictor, tmp_path: Path) -> None:
    big = tmp_path / "big.parquet"
    frame = _rows(900, 4)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), big, row_group_size=100)
    out = tmp_path / "out"
    summaries = [
        predict_shard(predictor, str(big), str(out), Shard(i, 3), fmt="csv") for i in range(3)
    ]
    assert [s.rows for s in summaries] == [300, 300, 300]
    whole = predict_file(predictor, big, tmp_path / "whole.csv")
    union = pd.concat(
        [pd.read_csv(out / Shard(i, 3).filename("csv")) for i in range(3)], ignore_index=True
    )
    pd.testing.assert_frame_equal(union, pd.read_csv(whole.output))


def test_fsspec_url_input_and_output(predictor: Predictor, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "url-out"
    summary = predict_shard(predictor, f"file://{inputs}/batch-*.csv", f"file://{out}", Shard(0, 1))
    assert summary.output == f"file://{out}/part-00000-of-00001.parquet"
    assert summary.rows == 300 + 450 + 260
    assert [p["source"] for p in summary.to_dict()["inputs"]] == [
        f"file://{inputs}/batch-{n}.csv" for n in (0, 2, 4)
    ]


@pytest.mark.slow
def test_killed_shard_leaves_no_partial_file(tiny_model: TrainedModel, tmp_path: Path) -> None:
    source = tmp_path / "many.csv"
    pd.concat([_rows(4000, 6)] * 50, ignore_index=True).to_csv(source, index=False)
    out = tmp_path / "out"
    out.mkdir()
    command = [
        *TABSHIP,
        "predict",
        str(tiny_model.artifact.directory),
        str(source),
        "-o",
        str(out),
        "--shard",
        "0/1",
        "--chunk-rows",
        "500",
    ]
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120

    def written() -> int:
        parts = [p for p in out.iterdir() if p.name.startswith(".part-00000-of-00001.parquet.")]
        return parts[0].stat().st_size if parts else 0

    # Mid-write: some row groups are in the temporary file, most are still to come.
    while written() < 100_000:
        assert victim.poll() is None, "the shard finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)  # the process this test started
    victim.wait()
    assert not (out / "part-00000-of-00001.parquet").exists()
    assert not (out / "part-00000-of-00001.summary.json").exists()
    # The retry (what a Job's backoffLimitPerIndex does) sweeps the leftovers and finishes.
    subprocess.run(command, check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "part-00000-of-00001.parquet",
        "part-00000-of-00001.summary.json",
    ]
    assert len(pd.read_parquet(out / "part-00000-of-00001.parquet")) == 200_000


@pytest.mark.parametrize(
    ("text", "message"), [("4", "is not I/N"), ("4/4", "need 0 <= index"), ("a/b", "is not I/N")]
)
def test_bad_shard_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Shard.parse(text)


def test_folder_without_tables_is_refused(predictor: Predictor, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"no table to predict; allowed: \.parquet, \.pq, \.csv"):
        predict_shard(predictor, str(tmp_path / "in"), str(tmp_path / "out"), Shard(0, 2))


def test_an_output_inside_the_input_is_refused(predictor: Predictor, inputs: Path) -> None:
    """The next run would read the predictions (and their summaries) as input."""
    for output in (inputs, inputs / "scored"):
        with pytest.raises(ConfigError, match="is inside the input .*a folder of their own"):
            predict_shard(predictor, str(inputs), str(output), Shard(0, 1), fmt="csv")
    assert not (inputs / "scored").exists()


def test_files_of_other_columns_are_not_scored_into_one_output(
    predictor: Predictor, inputs: Path, tmp_path: Path
) -> None:
    """One output has one header: a CSV's rows slid under the wrong names."""
    table = pd.read_csv(sorted(inputs.glob("*.csv"))[0])
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    table.to_csv(mixed / "a.csv", index=False)
    table.assign(extra="zz").to_csv(mixed / "b.csv", index=False)
    for fmt in ("csv", "parquet"):
        with pytest.raises(DatasetError, match="b.csv does not have the columns .*extra 'extra'"):
            predict_shard(predictor, str(mixed), str(tmp_path / fmt), Shard(0, 1), fmt=fmt)


def test_file_name_as_sharded_output_is_refused(predictor: Predictor, inputs: Path) -> None:
    with pytest.raises(ConfigError, match="names a file; sharded output goes to a folder"):
        predict_shard(predictor, str(inputs), "scored.csv", Shard(0, 2))


def test_shards_without_job_index_is_refused(
    tiny_model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tabship.cli import app

    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tiny_model.artifact.directory),
            str(tmp_path),
            "-o",
            "out",
            "--shards",
            "2",
        ],
    )
    assert result.exit_code == 1
    assert "JOB_COMPLETION_INDEX" in result.output


def test_cloud_url_without_its_filesystem_says_what_to_install() -> None:
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    with pytest.raises(ConfigError, match=r"cannot use gs://bucket/in/: .*tabship\[remote\]"):
        Store("gs://bucket/in/")


def test_a_missing_single_file_is_named(tiny_model: TrainedModel, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tabship.cli import app

    result = CliRunner().invoke(
        app,
        ["predict", str(tiny_model.artifact.directory), str(tmp_path / "nope.csv"), "-o",
         str(tmp_path / "out.csv")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no file" in result.output and "nope.csv" in result.output


def test_labelled_csv_and_parquet_files_share_one_typed_target_column(
    predictor: Predictor, tmp_path: Path
) -> None:
    # The CSV's charges became numbers; a Parquet file's text charges then did not fit them.
    rows = make_tiny_table(rows=4, seed=3)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    rows.to_csv(mixed / "a.csv", index=False)
    rows.assign(charges=["1200.5", "n/k", "", "980"]).to_parquet(mixed / "b.parquet", index=False)
    summary = predict_shard(
        predictor, str(mixed), str(tmp_path / "out"), Shard(0, 1), fmt="parquet"
    )
    assert summary.output is not None
    out = pd.read_parquet(summary.output)
    assert out["charges"].dtype == "float64" and out["charges"].isna().sum() == 2
    (note,) = [w for w in summary.warnings if "left empty" in w]
    assert note.startswith("the input's 'charges' column is written as number values")
    assert "(row 2 of " in note and "b.parquet 'n/k')" in note  # which file, when several
