"""How a CSV file is written: its encoding, separator and decimal mark, found from its start.

Spreadsheets save CSV the way their locale does: a German Excel writes `alter;bmi` with
`29,5` for 29.5, an older one Windows-1252 text, a `.tsv` tabs. Each was refused before
("save it with commas", "save it as UTF-8"); now it is read as written, and said. Training
and predicting read a file through the same `CsvFormat`, so a model trained on one such file
reads the next one alike.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Enough of a file to see its header and a few hundred rows.
SAMPLE_BYTES = 64 * 1024
# What a non-UTF-8 text file most likely is: Excel's "CSV" on Western-European Windows. It
# reads every Latin-1 file too (a superset but for 32 control codes no table holds).
FALLBACK_ENCODING = "cp1252"
# In order of preference: a tie goes to the first.
_SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "bars"}
# Lines looked at to choose the separator: each must split into as many values as the header.
_SNIFF_LINES = 50
_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_DOT_DECIMAL = re.compile(r"[+-]?\d*\.\d+")
_DOT_THOUSANDS = re.compile(r"[+-]?\d{1,3}(\.\d{3})+(,\d+)?")
# A whole column of these is numbers in a file of decimal commas: grouped or not.
_GROUPED = re.compile(r"[+-]?\d{1,3}(\.\d{3})*(,\d+)?|[+-]?\d+(,\d+)?")


@dataclass(frozen=True)
class CsvFormat:
    """The arguments pandas needs to read one CSV file as it was written."""

    separator: str = ","
    decimal: str = "."
    thousands: str | None = None
    encoding: str = "utf-8"

    @property
    def read_args(self) -> dict[str, Any]:
        """Keyword arguments for `pandas.read_csv`. Not its `thousands`: pandas drops that
        character from any cell it then reads as a number, so `31.05.2024` became 31052024;
        `grouped_numbers` reads such columns afterwards."""
        return {"sep": self.separator, "decimal": self.decimal, "encoding": self.encoding}

    def grouped_numbers(self, frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
        """`frame` with each text column of `names` whose every cell is a number written with
        dots between thousands (`1.234,5`, `12.000`) as float64; others as they are."""
        if self.thousands is None:
            return frame
        typed = {}
        for name in names:
            column = frame[name]
            if column.dtype.kind in "iufbM":
                continue
            present = column.dropna().astype(str).str.strip()
            if len(present) and present.str.fullmatch(_GROUPED.pattern).all():
                text = column.astype("string").str.strip().str.replace(".", "", regex=False)
                typed[name] = text.str.replace(",", ".", regex=False).astype("float64")
        return frame.assign(**typed) if typed else frame

    @property
    def note(self) -> str | None:
        """How the file was read, when it was not plain UTF-8 with commas; else None."""
        said = []
        if self.encoding not in ("utf-8", "utf-8-sig"):
            said.append(
                "as UTF-16 text"
                if self.encoding == "utf-16"
                else "as Windows-1252 (Latin-1) text, not being UTF-8"
            )
        if self.separator != ",":
            said.append(f"with {_SEPARATORS[self.separator]} between values")
        if self.decimal != ".":
            said.append(
                "decimal commas (29,5)" + (" and dots between thousands" if self.thousands else "")
            )
        return "read " + ", ".join(said) if said else None

    def as_fallback(self) -> CsvFormat:
        """The same file read as Windows-1252: its UTF-8 failed past the sampled start."""
        return CsvFormat(self.separator, self.decimal, self.thousands, FALLBACK_ENCODING)


def sniff(source: str | Path | IO[bytes], suffix: str = "") -> CsvFormat:
    """The format of a CSV file (a path, or a binary file left where it was found)."""
    if isinstance(source, str | Path):
        source = Path(source)
        packed = source.suffix.lower() == ".gz"  # pandas reads `.csv.gz` unpacked; so here
        suffix = suffix or (Path(source.stem).suffix if packed else source.suffix)
        with gzip.open(source, "rb") if packed else source.open("rb") as file:
            head = file.read(SAMPLE_BYTES)
    else:
        start = source.tell()
        head = source.read(SAMPLE_BYTES)
        source.seek(start)
    encoding, text = _decoded(head)
    lines = text.splitlines(keepends=True)
    separator = "\t" if suffix.lower() == ".tsv" else _separator(lines)
    decimal, thousands = _decimal_mark([line.rstrip("\r\n") for line in lines[1:]], separator)
    return CsvFormat(separator, decimal, thousands, encoding)


def _decoded(head: bytes) -> tuple[str, str]:
    """The encoding of a file's first bytes and their text."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", head.decode("utf-16", errors="replace")
    # Incremental, so a character cut at the sample's end is not a failure.
    try:
        return "utf-8", codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return FALLBACK_ENCODING, head.decode(FALLBACK_ENCODING, errors="replace")


def _separator(lines: list[str]) -> str:
    """The separator that splits the header and the first rows alike into the most values
    (quotes respected); commas on a tie or when none does: a `Cost, USD` column name in a
    tab-separated header is one value, and a one-column file stays one column."""
    sample = [line for line in lines[:_SNIFF_LINES] if line.strip()]
    if len(sample) > 1 and not sample[-1].endswith(("\n", "\r")):
        sample = sample[:-1]  # possibly cut at the sample's end
    best, widest = ",", 1
    for candidate in _SEPARATORS:
        counts = {len(row) for row in csv.reader(sample, delimiter=candidate)}
        if len(counts) == 1 and (width := counts.pop()) > widest:
            best, widest = candidate, width
    return best


def _decimal_mark(lines: list[str], separator: str) -> tuple[str, str | None]:
    """Decimal commas (and dots between thousands) when a file that does not separate with
    commas writes its fractions so and none with a dot; else the dot."""
    if separator == ",":
        return ".", None
    commas = dots = grouped = 0
    for line in lines[:500]:
        for cell in line.split(separator):
            cell = cell.strip().strip('"')
            if _DOT_THOUSANDS.fullmatch(cell):
                grouped += 1
                commas += "," in cell  # 1.234,5 has a decimal comma; 1.234 alone could be 1.234
            elif _COMMA_DECIMAL.fullmatch(cell):
                commas += 1
            elif _DOT_DECIMAL.fullmatch(cell):
                dots += 1
    if commas and not dots:
        return ",", "." if grouped else None
    return ".", None
