"""Built-in datasets (pinned address + sha256) and loading of user tables."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tabship.codes import codes_as_text, na_as_code
from tabship.config import Settings
from tabship.csvformat import CsvFormat, rows_beyond_header, sniff
from tabship.errors import DatasetError

if TYPE_CHECKING:
    import pandas as pd

DOWNLOAD_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Dataset:
    """A table tabship knows how to fetch and verify."""

    name: str
    filename: str
    url: str
    sha256: str
    target: str
    target_label: str
    unit: str
    description: str


BUILTIN: dict[str, Dataset] = {
    "insurance": Dataset(
        name="insurance",
        filename="insurance.csv",
        url="https://raw.githubusercontent.com/pycaret/datasets/main/data/common/insurance.csv",
        sha256="6e3894cf7d9210613f62c866684055decea694345cd4f244ecd7167041578c68",
        target="charges",
        target_label="Expected yearly charges",
        unit="USD",
        description="Medical Cost Personal Datasets: yearly charges from age, sex, bmi, "
        "children, smoker, region (1,338 rows; ODC Database Contents License)",
    ),
}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def get_dataset(name: str) -> Dataset:
    """The built-in dataset called `name`, or an error listing the known ones."""
    try:
        return BUILTIN[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN))
        raise DatasetError(f"unknown dataset {name!r}; built-in datasets: {known}") from None


def _checked(path: Path, dataset: Dataset) -> Path:
    actual = file_sha256(path)
    if actual != dataset.sha256:
        raise DatasetError(
            f"{path} has sha256 {actual}, expected {dataset.sha256}: the file is not the "
            f"published {dataset.name} table; delete it and run `tabship datasets fetch "
            f"{dataset.name}`, or put the right file there"
        )
    return path


def download(url: str, dest: Path, expected_sha256: str) -> Path:
    """Download `url` to `dest` atomically, refusing content whose sha256 differs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as part:
        part_path = Path(part.name)
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as answer:  # noqa: S310 - pinned https address or a test's loopback server
                shutil.copyfileobj(answer, part)
        except (urllib.error.URLError, OSError) as exc:
            part_path.unlink(missing_ok=True)
            reason = getattr(exc, "reason", exc)
            raise DatasetError(
                f"could not download {url} ({reason}); download it by hand and save it as "
                f"{dest}, or set TABSHIP_DATA_HOME to a folder that holds {dest.name}"
            ) from None
    actual = file_sha256(part_path)
    if actual != expected_sha256:
        part_path.unlink(missing_ok=True)
        raise DatasetError(
            f"{url} sent a file with sha256 {actual}, expected {expected_sha256}; nothing was "
            f"saved. Save the published file as {dest} or set TABSHIP_DATA_HOME to its folder"
        )
    part_path.replace(dest)
    return dest


def fetch(name: str, settings: Settings | None = None) -> Path:
    """Path of a verified built-in dataset: TABSHIP_DATA_HOME, else the cache, else download."""
    dataset = get_dataset(name)
    settings = settings or Settings.from_env()
    if settings.data_home is not None:
        candidate = settings.data_home / dataset.filename
        if candidate.is_file():
            return _checked(candidate, dataset)
    cached = settings.cache_dir / "datasets" / dataset.filename
    if cached.is_file():
        return _checked(cached, dataset)
    try:
        return download(dataset.url, cached, dataset.sha256)
    except DatasetError as exc:
        if settings.data_home is None:
            raise
        # Set, and passed over: said, or the advice to set it reads as if it were not.
        raise DatasetError(
            f"TABSHIP_DATA_HOME={settings.data_home} holds no {dataset.filename}; and {exc}"
        ) from None


def resolve(source: str, settings: Settings | None = None) -> Path:
    """A table path from a user's argument: an existing file, or a built-in dataset name."""
    path = Path(source)
    if path.is_file():
        return path
    if source in BUILTIN:
        return fetch(source, settings)
    if path.exists():
        raise DatasetError(f"{source} is not a file; give a CSV or Parquet file")
    known = ", ".join(sorted(BUILTIN))
    raise DatasetError(f"no file {source}; give a CSV or Parquet path or one of: {known}")


def read_table(path: Path, expected: Collection[str] = ()) -> pd.DataFrame:
    """Read a whole CSV or Parquet file into a DataFrame, with one clear error if it cannot.
    `expected` names columns it should have (the target): title lines above a CSV's header
    are left out when the header below them names one."""

    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"} or _parquet_bytes(path):
            import pyarrow.parquet as pq

            from tabship.columnar import frame_of

            frame = frame_of(pq.ParquetFile(path).read())
        elif suffix in {".csv", ".tsv", ".txt", ".gz"} or suffix == "":
            form = sniff(path, expected=expected)
            try:
                frame = _csv_table(path, form)
            except UnicodeDecodeError:  # past the sampled start: the rest is not UTF-8 either
                if form.encoding != "utf-8":
                    raise
                form = form.as_fallback(path)
                frame = _csv_table(path, form)
            if form.note:
                frame.attrs[NOTES] = [form.note, *frame.attrs[NOTES]]
            frame.attrs[MARKS] = form.marks
        else:
            raise DatasetError(
                f"{path}: unknown file type {suffix!r}; give a .csv, .tsv or .parquet file"
            )
    except UnicodeDecodeError:
        raise DatasetError(
            f"cannot read {path}: it is not UTF-8 text; save it as UTF-8 (CSV UTF-8)"
        ) from None
    except (OSError, ValueError) as exc:  # a ParserError is a ValueError
        raise DatasetError(f"cannot read {path}: {parser_message(exc)}") from None
    return frame


def _csv_table(path: Path, form: CsvFormat) -> pd.DataFrame:
    """A whole CSV file as `form` says it is written, its header checked, a totals row left
    out (notes in attrs)."""
    import pandas as pd

    args = form.read_args
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **args)

    beyond = rows_beyond_header(form)
    if beyond:
        raise DatasetError(f"cannot read {path}: {beyond}")

    def read(rows: int | None = None) -> pd.DataFrame:
        frame = pd.read_csv(path, nrows=rows, **args)
        frame = codes_as_text(path, form.grouped_numbers(frame, frame.columns), args, rows)
        frame, said = na_as_code(path, frame, args, rows)
        frame.attrs[NOTES] = said
        return frame

    frame = read()
    totals = totals_row(frame)
    if totals:  # read again without it and below: its text made a number column a category
        frame = read(int(frame.notna().any(axis=1).to_numpy().nonzero()[0][-1]))
    notes = [*frame.attrs.get(NOTES, []), *([totals] if totals else [])]
    unnamed = check_header(header.iloc[0].tolist(), list(frame.columns))
    # Columns with neither a name nor a value: a spreadsheet's separators past its last
    # column (`a,b,,`), left out with one note rather than two warnings each.
    leftovers = [name for _, name in unnamed if frame[name].isna().all()]
    if leftovers:
        frame = frame.drop(columns=leftovers)
        notes.append(
            f"{len(leftovers)} column{'s' if len(leftovers) > 1 else ''} with neither a name "
            "nor a value (separators past the last column) left out"
        )
    frame.attrs[UNNAMED] = [(p, name) for p, name in unnamed if name not in leftovers]
    frame.attrs[NOTES] = notes
    return frame


_TOKENIZING = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def parser_message(exc: Exception) -> str:
    """pandas' parser error in plain words: a row with more values than the header."""
    if str(exc).startswith("No columns to parse from file"):  # pandas' EmptyDataError
        return "it is empty (no header, no rows); give a table with a header line"
    found = _TOKENIZING.search(str(exc))
    if not found:
        return str(exc)
    wanted, line, saw = found.groups()
    return (
        f"line {line} has {saw} values where the header has {wanted}: a value holding the "
        'separator must be in double quotes ("1,5"), or the line has a value too many'
    )


def written_column(path: Path, name: str, rows: int | None = None) -> pd.Series | None:
    """One column of a CSV as the file wrote it (every cell text, none read as missing), its
    first `rows` (those `read_table` kept); None for a Parquet file, whose cells are typed, or
    when the column cannot be read alone."""
    import pandas as pd

    if path.suffix.lower() in {".parquet", ".pq"} or _parquet_bytes(path):
        return None
    try:
        form = sniff(path, expected=[name])
        try:
            text = pd.read_csv(
                path, usecols=[name], dtype=str, keep_default_na=False, nrows=rows, **form.read_args
            )
        except UnicodeDecodeError:  # as read_table falls back
            text = pd.read_csv(
                path,
                usecols=[name],
                dtype=str,
                keep_default_na=False,
                nrows=rows,
                **form.as_fallback(path).read_args,
            )
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None  # read_table has said (or will say) what is wrong with the file
    return text[name] if list(text.columns) == [name] else None


# A Parquet file begins and ends with these bytes, whatever its name.
_PARQUET_MAGIC = b"PAR1"


def _parquet_bytes(path: Path) -> bool:
    """Whether a file is Parquet by its bytes (one named `data` or `table.dat`)."""
    try:
        with path.open("rb") as file:
            head = file.read(4)
            file.seek(-4, 2)
            return head == _PARQUET_MAGIC and file.read(4) == _PARQUET_MAGIC
    except OSError:  # too short to seek back, or unreadable: the reader says which
        return False


# Words a spreadsheet's totals row starts with (English, German, French, Spanish, Dutch,
# Italian), compared case-folded and without a trailing colon.
_TOTAL_WORDS = frozenset(
    {
        "total",
        "totals",
        "grand total",
        "sum",
        "summe",
        "gesamt",
        "totaal",
        "totale",
        "total general",
    }
)


def totals_row(frame: pd.DataFrame) -> str | None:
    """A note when the table's last row is a spreadsheet's totals row (a cell saying `Total`),
    which training would learn from as a patient 50 times the others; else None."""
    import numpy as np

    if len(frame) < 3:
        return None
    # Its first filled cell: where a spreadsheet writes the label (a category's `total`
    # level further along is a value). Past empty rows (`,,` under the table).
    filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    if not len(filled) or filled[-1] < 2:
        return None
    row = int(filled[-1])
    name, cell = next(iter(frame.iloc[row].dropna().items()))
    if not isinstance(cell, str) or cell.strip().rstrip(":").strip().casefold() not in _TOTAL_WORDS:
        return None
    if int((frame[name] == cell).sum()) > 1:
        return None  # a level the column holds elsewhere too: a value, not a label
    return (
        f"row {row + 1} looks like a totals row ({cell.strip()[:20]!r} in column "
        f"{str(name)[:60]!r}, the last row with values); left out"
    )


# A table's attrs entry: notes on how the file was read, said with training's warnings.
NOTES = "tabship_read_notes"
# A CSV table's (or predict chunk's) attrs entry: its decimal mark and thousands separator
# (csvformat.NumberMarks).
MARKS = "tabship_number_marks"


def separator_hint(columns: list[object]) -> str:
    """Advice when a CSV read as one column was written with another separator."""
    if len(columns) == 1:
        for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if separator in str(columns[0]):
                return f" (the file separates its values with {name}; save it with commas)"
    return ""


# A table's attrs entry: the header's unnamed columns, as (position from 1, the name given).
UNNAMED = "tabship_unnamed"


def check_header(written: list[str], named: list[object]) -> list[tuple[int, str]]:
    """Refuse a CSV header that names two columns alike (the reader would call the second
    `a.1`, a name the user never wrote); the unnamed columns and the names they were given."""
    seen: dict[str, int] = {}
    for position, name in enumerate(written, start=1):
        if name and name in seen:
            raise DatasetError(
                f"columns {seen[name]} and {position} are both called {name!r}; give each "
                "column its own name"
            )
        seen.setdefault(name, position)
    return [(p, str(named[p - 1])) for p, name in enumerate(written, start=1) if not name]
