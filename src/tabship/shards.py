"""Sharded batch scoring: many files, or the row groups of a few big Parquet files, over N shards.

Every shard lists the same inputs and computes the same plan, so N processes (the pods of an
Indexed Job) agree on who scores what without talking to each other. Shards take contiguous
runs of the sorted input, so shard outputs read in shard order are the input in order.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from tabship.batch import DEFAULT_CHUNK_ROWS, Chunk, write_predictions
from tabship.chunks import PARQUET_SUFFIXES, csv_chunks, parquet_frame
from tabship.config import MAX_SHARDS
from tabship.errors import ConfigError, DatasetError, OutputExistsError
from tabship.outputs import publish
from tabship.predictor import Predictor

TABLE_SUFFIXES = (*sorted(PARQUET_SUFFIXES), ".csv")
FORMATS = ("parquet", "csv")
WARNINGS_KEPT = 20
# Bytes of a CSV file read to estimate its rows (for balancing shards; never for results).
CSV_SAMPLE_BYTES = 1 << 16
_SHARD = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based, as JOB_COMPLETION_INDEX counts)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N`, e.g. 0/4 for the first of four."""
        match = _SHARD.fullmatch(text.strip())
        if not match:
            raise ConfigError(f"--shard {text!r} is not I/N, e.g. --shard 0/4")
        return cls.of(int(match[1]), int(match[2]))

    @classmethod
    def of(cls, index: int, count: int) -> Shard:
        """A checked shard: 1 <= count and 0 <= index < count."""
        if not 1 <= count <= MAX_SHARDS:
            raise ConfigError(f"shard {index} of {count}: shards must be from 1 to {MAX_SHARDS}")
        if not 0 <= index < count:
            raise ConfigError(f"shard {index} of {count}: need 0 <= index < shards")
        return cls(index, count)

    def filename(self, fmt: str) -> str:
        """This shard's output file name, e.g. part-00001-of-00004.parquet."""
        return f"part-{self.index:05d}-of-{self.count:05d}.{fmt}"


@dataclass(frozen=True)
class Piece:
    """Part of one input: the whole file, or some of its Parquet row groups."""

    source: str
    row_groups: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the shard summary."""
        return {"source": self.source, "row_groups": list(self.row_groups or []) or None}


class Store:
    """Local files, or any fsspec URL (gs://, s3://, file://) when fsspec is installed."""

    def __init__(self, location: str) -> None:
        self.remote = "://" in location
        self.fs: Any = None
        if self.remote:
            try:
                from fsspec.core import url_to_fs
            except ImportError:
                raise ConfigError(
                    f"{location} is a URL; reading and writing URLs needs fsspec: "
                    "pip install 'tabship[remote]'"
                ) from None
            try:
                self.fs, _ = url_to_fs(location)
            except (ImportError, ValueError) as exc:
                raise ConfigError(
                    f"cannot use {location}: {exc} (pip install 'tabship[remote]' brings gcsfs "
                    "and s3fs)"
                ) from None

    def path(self, location: str) -> str:
        """The store's path of `location` (the URL without its scheme for fsspec)."""
        if not self.remote:
            return location
        from fsspec.core import url_to_fs

        return str(url_to_fs(location)[1])

    def url(self, path: str) -> str:
        """A location to show and to reopen: fsspec paths get their scheme back."""
        return str(self.fs.unstrip_protocol(path)) if self.remote else path

    def list_tables(self, location: str) -> list[str]:
        """The table files a folder, glob or file names, sorted; hidden and _ files skipped."""
        path = self.path(location)
        if any(ch in path for ch in "*?["):
            # A user's pattern may be absolute, which Path.glob does not take.
            found = self.fs.glob(path) if self.remote else glob.glob(path)  # noqa: PTH207
        elif self.fs.isdir(path) if self.remote else Path(path).is_dir():
            found = (
                self.fs.ls(path, detail=False)
                if self.remote
                else [str(p) for p in Path(path).iterdir()]
            )
        else:
            exists = self.fs.exists(path) if self.remote else Path(path).is_file()
            if not exists:
                raise DatasetError(f"no file or folder {location}; give a table, folder or glob")
            found = [path]
        tables = sorted(
            str(p)
            for p in found
            if str(p).lower().endswith(TABLE_SUFFIXES)
            and not Path(str(p)).name.startswith((".", "_"))
        )
        if not tables:
            raise DatasetError(
                f"{location} holds no table to predict; allowed: {', '.join(TABLE_SUFFIXES)} files"
            )
        return tables

    def open(self, path: str) -> IO[bytes]:
        """A binary reader."""
        if self.remote:
            handle: IO[bytes] = self.fs.open(path, "rb")
            return handle
        return Path(path).open("rb")

    def size(self, path: str) -> int:
        """The file's size in bytes."""
        return int(self.fs.size(path)) if self.remote else Path(path).stat().st_size


def _is_parquet(path: str) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def _csv_rows(store: Store, path: str) -> int:
    """Estimated rows of a CSV file from its size and the line length of its first bytes."""
    with store.open(path) as handle:
        sample = handle.read(CSV_SAMPLE_BYTES)
    lines = max(sample.count(b"\n"), 1)
    return max(1, round(store.size(path) * lines / max(len(sample), 1)))


def _units(store: Store, files: list[str], count: int) -> list[tuple[Piece, int]]:
    """Pieces to deal out with their weights (rows): whole files, or row groups if too few."""
    units: list[tuple[Piece, int]] = []
    for path in files:
        if not _is_parquet(path):
            units.append((Piece(path), _csv_rows(store, path)))
            continue
        with store.open(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        if len(files) >= count:
            units.append((Piece(path), meta.num_rows))
        else:
            units += [
                (Piece(path, (g,)), meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
            ]
    return units


def plan(store: Store, files: list[str], count: int) -> list[list[Piece]]:
    """Each shard's pieces: contiguous runs of the inputs, balanced by rows."""
    units = _units(store, files, count)
    total = sum(weight for _, weight in units) or 1
    shards: list[list[Piece]] = [[] for _ in range(count)]
    done = 0
    for piece, weight in units:
        # A unit goes to the shard its middle row falls in, so runs stay contiguous.
        index = min(count - 1, (2 * done + weight) * count // (2 * total))
        done += weight
        pieces = shards[index]
        last = pieces[-1] if pieces else None
        if last and last.source == piece.source and last.row_groups and piece.row_groups:
            pieces[-1] = Piece(piece.source, last.row_groups + piece.row_groups)
        else:
            pieces.append(piece)
    return shards


def _chunks(
    store: Store, pieces: list[Piece], predictor: Predictor, chunk_rows: int, to_parquet: bool
) -> Iterator[Chunk]:
    for piece in pieces:
        name = store.url(piece.source)
        first = 1
        with store.open(piece.source) as handle:
            if _is_parquet(piece.source):
                parquet = pq.ParquetFile(handle)
                groups = list(piece.row_groups) if piece.row_groups else None
                if groups:
                    first += sum(parquet.metadata.row_group(g).num_rows for g in range(groups[0]))
                for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=groups):
                    frame = parquet_frame(batch)
                    yield name, first, frame
                    first += len(frame)
            else:
                marks = predictor.card.number_marks
                for frame in csv_chunks(
                    handle, predictor.schema, chunk_rows, to_parquet, trained=marks
                ):
                    yield name, first, frame
                    first += len(frame)


@dataclass
class ShardSummary:
    """What one shard did; written beside its output as part-...summary.json."""

    shard: Shard
    output: str | None
    pieces: list[Piece]
    rows: int = 0
    unseen: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: no timings, so a re-run writes the same summary too."""
        return {
            "shard": self.shard.index,
            "shards": self.shard.count,
            "output": self.output,
            "sha256": self.sha256,
            "rows": self.rows,
            "inputs": [piece.to_dict() for piece in self.pieces],
            "unseen": dict(sorted(self.unseen.items())),
            "warnings": self.warnings[:WARNINGS_KEPT],
            "warnings_total": len(self.warnings),
        }


def _sweep(directory: Path, name: str) -> None:
    """Remove what an earlier attempt of this shard left when it was killed mid-write."""
    for stale in directory.glob(f".{glob.escape(name)}.*"):
        stale.unlink(missing_ok=True)


def _publish(store: Store, output: str, name: str, local: Path) -> str:
    """Move a finished file to its place in one step: a rename, or one object upload."""
    if store.remote:
        folder = store.path(output).rstrip("/")
        store.fs.makedirs(folder, exist_ok=True)  # object stores have no folders: a no-op there
        target = f"{folder}/{name}"
        store.fs.put_file(str(local), target)
        return store.url(target)
    target_path = Path(output) / name
    publish(local, target_path)
    return str(target_path)


def _scratch(store: Store, output: str, name: str) -> Path:
    directory = Path(tempfile.gettempdir()) if store.remote else Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    _sweep(directory, name)
    descriptor, path = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    os.close(descriptor)
    return Path(path)


def _exists(store: Store, output: str, name: str) -> bool:
    if store.remote:
        return bool(store.fs.exists(f"{store.path(output).rstrip('/')}/{name}"))
    return (Path(output) / name).exists()


def _inside(output: str, output_remote: bool, source: str, source_remote: bool) -> bool:
    """Whether the output folder is the input folder or one inside it."""
    if output_remote != source_remote:
        return False
    if output_remote:
        return (output.rstrip("/") + "/").startswith(source.rstrip("/") + "/")
    folder = Path(source).resolve()
    return folder.is_dir() and Path(output).resolve().is_relative_to(folder)


def predict_shard(
    predictor: Predictor,
    source: str,
    output: str,
    shard: Shard,
    *,
    fmt: str = "parquet",
    force: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    formula_guard: bool = True,
) -> ShardSummary:
    """Score this shard's part of `source` into OUTPUT/part-I-of-N.FMT, atomically.

    The file (and its summary) appear whole or not at all; a shard with no input assigned
    writes only its summary. Re-running a shard writes the same bytes.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    inputs, outputs = Store(source), Store(output)
    if output.lower().endswith(TABLE_SUFFIXES):
        raise ConfigError(
            f"-o {output} names a file; sharded output goes to a folder (or URL prefix) that "
            "gets part-I-of-N files"
        )
    if not outputs.remote and Path(output).is_file():
        raise OutputExistsError(f"{output} is a file; sharded output goes to a folder (or URL)")
    if _inside(output, outputs.remote, source, inputs.remote):
        raise ConfigError(
            f"-o {output} is inside the input {source}: the next run would read the predictions "
            "as input; write them to a folder of their own"
        )
    name = shard.filename(fmt)
    if _exists(outputs, output, name) and not force:
        raise OutputExistsError(f"{output}/{name} already exists; pass --force to replace it")
    pieces = plan(inputs, inputs.list_tables(source), shard.count)[shard.index]
    summary = ShardSummary(shard=shard, output=None, pieces=[])
    summary.pieces = [Piece(inputs.url(p.source), p.row_groups) for p in pieces]
    partial = _scratch(outputs, output, name)
    summary_name = Path(name).stem + ".summary.json"
    notes = _scratch(outputs, output, summary_name)
    try:
        if pieces:
            chunks = _chunks(inputs, pieces, predictor, chunk_rows, fmt == "parquet")
            tally = write_predictions(predictor, chunks, partial, fmt == "parquet", formula_guard)
            summary.rows, summary.unseen, summary.warnings = (
                tally.rows,
                tally.unseen,
                tally.warnings,
            )
            summary.sha256 = hashlib.sha256(partial.read_bytes()).hexdigest()
            summary.output = _publish(outputs, output, name, partial)
        notes.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        _publish(outputs, output, summary_name, notes)
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot predict shard {shard.index}/{shard.count}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
        notes.unlink(missing_ok=True)
    return summary
