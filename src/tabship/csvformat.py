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
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Enough of a file to see its header and a few hundred rows.
SAMPLE_BYTES = 64 * 1024
# Read past the sample when its numbers do not say which decimal mark the file uses.
LATER_BYTES = 16 * 1024 * 1024
# What a non-UTF-8 text file most likely is: Excel's "CSV" on Western-European Windows. It
# reads every Latin-1 file too (a superset but for 32 control codes no table holds).
FALLBACK_ENCODING = "cp1252"
# In order of preference: a tie goes to the first.
_SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "bars"}
# A one-column file's separator: the ASCII unit separator, in no spreadsheet's text.
_NO_SEPARATOR = "\x1f"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
# Title lines above a header looked for (a report's name, its date, blank lines).
_MAX_TITLE_LINES = 10
# Lines looked at to choose the separator: each must split into as many values as the header.
_SNIFF_LINES = 50
# The line Excel writes (and reads) before the header to name the separator: `sep=;`.
_EXCEL_SEPARATOR = re.compile(r'"?sep=([,;\t|])"?', re.IGNORECASE)
# A letter outside ASCII as UTF-8 writes it (two to four bytes): Windows-1252 text has none,
# bar by rare chance (`Ã©` as two letters).
_UTF8_LETTER = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
# A number written with a decimal comma (29,5).
COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_DOT_DECIMAL = re.compile(r"[+-]?\d*\.\d+")
# A leading 0 is never thousands grouping: 0.125 is an eighth.
_DOT_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(\.\d{3})+(,\d+)?")
# A number in a file of decimal commas, grouped or not: a whole column of them is numbers.
COMMA_NUMBER = re.compile(r"[+-]?[1-9]\d{0,2}(\.\d{3})*(,\d+)?|[+-]?\d+(,\d+)?")


# The decimal mark and the thousands separator (or None) a file writes its numbers with.
NumberMarks = tuple[str, str | None]
UNKNOWN = ""


@dataclass(frozen=True)
class CsvFormat:
    """The arguments pandas needs to read one CSV file as it was written."""

    separator: str = ","
    decimal: str = "."
    thousands: str | None = None
    encoding: str = "utf-8"
    # "replace" for a UTF-8 file holding a few bytes that are not: each shows as U+FFFD.
    errors: str = "strict"
    # Every row ends with a separator the header does not (some exports): one empty value.
    trailing: bool = False
    # The first row has one value more than the header (and not an empty one): pandas would
    # take each row's first value as its label, silently (a one-column `1,5` read as 5).
    labelled: bool = False
    # Read as Windows-1252, most of its non-ASCII characters are symbols, not letters: the
    # bytes of a Chinese or Japanese encoding (北京 as ±±¾©), said in the note.
    doubtful: bool = False
    # Lines before the header: Excel's `sep=;`, which names the separator, and a title.
    skipped: int = 0
    # The text of the title lines above the header (a report's name, its date), said in the note.
    title: str = ""

    @property
    def read_args(self) -> dict[str, Any]:
        """Keyword arguments for `pandas.read_csv`. Not its `thousands`: pandas drops that
        character from any cell it then reads as a number, so `31.05.2024` became 31052024;
        `grouped_numbers` reads such columns afterwards."""
        return {
            "sep": self.separator,
            "decimal": self.decimal,
            "encoding": self.encoding,
            "encoding_errors": self.errors,
            # Not the first value as a row label, which pandas makes of rows with one value
            # more than the header; only when that value is the trailing separator's empty one
            # (pandas drops any other with a mere warning: `rows_beyond_header` refuses it).
            **({"index_col": False} if self.trailing else {}),
            **({"skiprows": self.skipped} if self.skipped else {}),
        }

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
            if len(present) and present.str.fullmatch(COMMA_NUMBER.pattern).all():
                text = column.astype("string").str.strip().str.replace(".", "", regex=False)
                typed[name] = text.str.replace(",", ".", regex=False).astype("float64")
        return frame.assign(**typed) if typed else frame

    @property
    def marks(self) -> NumberMarks:
        """The decimal mark and thousands separator, as a model card keeps them."""
        return self.decimal, self.thousands

    @property
    def note(self) -> str | None:
        """How the file was read, when it was not plain UTF-8 with commas; else None."""
        said = []
        if self.errors != "strict":
            said.append("as UTF-8 text, its bytes that are not UTF-8 shown as \ufffd")
        elif self.encoding.startswith("utf-16"):
            said.append("as UTF-16 text")
        elif self.encoding != "utf-8":
            said.append("as Windows-1252 (Latin-1) text, not being UTF-8")
            if self.errors == "strict" and self.doubtful:
                said.append(
                    "though its letters look like another encoding's (GBK, Shift-JIS, ...): if "
                    "its text reads wrongly, save the file as UTF-8"
                )
        if self.separator in _SEPARATORS and self.separator != ",":
            said.append(f"with {_SEPARATORS[self.separator]} between values")
        if self.decimal != ".":
            said.append(
                ("decimal commas (29,5)" if said else "with decimal commas (29,5)")
                + (" and dots between thousands" if self.thousands else "")
            )
        if self.title:
            said.append(f"without the lines above its header ({self.title[:60]!r})")
        return "read " + ", ".join(said) if said else None

    def as_fallback(self, path: Path) -> CsvFormat:
        """The same file once its UTF-8 failed past the sampled start: still UTF-8, its stray
        bytes replaced, when it holds UTF-8's own letters (`é` as two bytes: one stray byte
        re-read as Windows-1252 turned every `Köln` into `KÃ¶ln`), else Windows-1252."""
        packed = path.suffix.lower() == ".gz"
        data = gzip.decompress(path.read_bytes()) if packed else path.read_bytes()
        encoding, errors = (
            ("utf-8", "replace") if _mostly_utf8(data) else (FALLBACK_ENCODING, "strict")
        )
        return replace(self, encoding=encoding, errors=errors)


def written_numbers(column: pd.Series, marks: NumberMarks) -> pd.Series:
    """A text column of a model's number feature, read with the marks training read its file
    with: numbers where every cell is one or a missing value (`NA`, blank), else the numbers
    with each other cell's text kept, for the feature to name. pandas gave up on the whole
    column at one `abc`, and every `27,9` beside it was refused as not a number."""
    import pandas as pd

    from tabship.feature import NA_TEXTS

    decimal, thousands = marks
    text = column.str.strip()
    if thousands is not None:  # 1.234,5 -> 1234,5; 0.125 and 31.05.2024 are not grouped
        grouped = text.str.fullmatch(_DOT_THOUSANDS.pattern, na=False)
        text = text.mask(grouped, text.str.replace(thousands, "", regex=False))
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    numbers = pd.to_numeric(text, errors="coerce")
    empty = column.isna() | column.str.strip().isin(NA_TEXTS)
    odd = numbers.isna() & ~empty
    return numbers.astype(object).mask(odd, column) if odd.any() else numbers


def sniff(
    source: str | Path | IO[bytes],
    suffix: str = "",
    trained: NumberMarks = (".", None),
    expected: Collection[str] = (),
) -> CsvFormat:
    """The format of a CSV file (a path, or a binary file left where it was found).

    `trained` are the decimal and thousands marks of the file the model was trained on,
    taken when this one's numbers do not tell (a German file of whole amounts, `1.234`:
    read with dots as decimals it was 1.234, not 1234). `expected` are column names the file
    should have (the target, a model's features): title lines above a header are looked for
    only when the first line names none of them and the header below does.
    """
    packed = False
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
    encoding, errors, text = _decoded(head)
    # Lines as pandas counts them (`splitlines` also breaks at a form feed or U+2028).
    lines = _LINE.findall(text)
    if lines:  # a byte-order mark is not the first line's text (`#`, a quote, a title)
        lines[0] = lines[0].lstrip("\ufeff")
    first = lines[0].rstrip("\r\n") if lines else ""
    named = _EXCEL_SEPARATOR.fullmatch(first)
    if named:  # Excel's first line naming the separator; the header follows
        lines = lines[1:]
    titles = _title_lines(lines, expected)
    title = " ".join(line.strip(';,|\t"# \r\n') for line in lines[:titles]).strip()
    lines = lines[titles:]
    separator = named[1] if named else "\t" if suffix.lower() == ".tsv" else _separator(lines)
    # Commas between the header's names: then no decimal commas. A one-column file's commas
    # separate nothing (its `1,5` is one and a half to a model trained on decimal commas).
    separating = separator == "," and len(next(csv.reader(lines[:1]), [])) > 1
    # The sample's rows, but a last line the sample may have cut (`12.34` read as `12.3`).
    complete = lines if len(head) < SAMPLE_BYTES else lines[:-1]
    body = [line.rstrip("\r\n") for line in complete[1:]]
    # A one-column file's lines are each one cell.
    splitter = None if separator == "," else separator
    decimal, thousands = (".", None) if separating else _decimal_mark(body, splitter)
    if decimal == UNKNOWN and isinstance(source, Path):  # the fractions may come later
        decimal, thousands = _decimal_mark(_later_lines(source, packed, encoding), splitter)
    if decimal == UNKNOWN:  # the training file's marks
        decimal, thousands = trained
    if decimal == separator:  # a one-column file: pandas needs a separator no cell holds
        separator = _NO_SEPARATOR
    parsed = [row for row in csv.reader(complete[:_SNIFF_LINES], delimiter=separator) if row]
    header, data = (parsed[0], parsed[1:]) if parsed else ([], [])
    wider = [row for row in data if len(row) == len(header) + 1]
    # One more value in every row, always empty: a separator ending each line (pandas reads
    # it with index_col=False); one more value otherwise is refused (`rows_beyond_header`).
    trailing = bool(data) and len(wider) == len(data) and all(row[-1] == "" for row in data)
    labelled = bool(data) and len(data[0]) == len(header) + 1 and not trailing
    doubtful = encoding == FALLBACK_ENCODING and _mostly_symbols(text)
    return CsvFormat(
        separator,
        decimal,
        thousands,
        encoding,
        errors,
        trailing,
        labelled,
        doubtful,
        int(bool(named)) + titles,
        title,
    )


def _mostly_utf8(data: bytes) -> bool:
    """Whether most of the bytes past ASCII are UTF-8's own letters: a UTF-8 file with a few
    stray bytes, not a Latin-1 or GBK file whose bytes sometimes happen to pair up so."""
    high = len(data) - len(data.translate(None, _HIGH_BYTES))
    lettered = sum(len(found) for found in _UTF8_LETTER.findall(data))
    return high > 0 and lettered >= 0.8 * high


_HIGH_BYTES = bytes(range(0x80, 0x100))


def _mostly_symbols(text: str) -> bool:
    """Whether most of a text's non-ASCII characters are not letters (Latin-1 words are
    letters: é, ü, ß; another encoding's bytes read as Latin-1 are ±, ¾, ©, ¹ ...)."""
    wide = [char for char in text if ord(char) > 127]
    return len(wide) >= 4 and sum(not char.isalpha() for char in wide) > 0.3 * len(wide)


def rows_beyond_header(form: CsvFormat) -> str | None:
    """Why a file is refused before pandas reads it: its rows have one value more than its
    header, which pandas would silently take as row labels; else None."""
    if not form.labelled:
        return None
    return (
        "its first row has one value more than its header: a value holding the separator "
        'must be in double quotes ("1,5"), or the header lacks a name'
    )


def _later_lines(path: Path, packed: bool, encoding: str) -> list[str]:
    """The lines of a file's first LATER_BYTES past its sample, for a decimal mark the
    sample did not show (a German file of whole amounts for 600 rows, then `3,4`)."""
    with gzip.open(path, "rb") if packed else path.open("rb") as file:
        file.seek(SAMPLE_BYTES)  # a gzip file reads its way there
        data = file.read(LATER_BYTES)
    lines = data.decode(encoding, errors="replace").splitlines()
    return lines[1:-1]  # the first and last may be cut


def _decoded(head: bytes) -> tuple[str, str, str]:
    """The encoding of a file's first bytes, how its errors are taken, and their text."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "strict", head.decode("utf-16", errors="replace")
    if head.count(0) > len(head) // 4:  # UTF-16 without its mark: a NUL beside each ASCII
        encoding = "utf-16-le" if head[1::2].count(0) > head[::2].count(0) else "utf-16-be"
        return encoding, "strict", head.decode(encoding, errors="replace")
    # Incremental, so a character cut at the sample's end is not a failure.
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8", "strict", text
    except UnicodeDecodeError:
        if head.startswith(codecs.BOM_UTF8) or _mostly_utf8(head):
            return "utf-8", "replace", head.decode("utf-8", errors="replace")
        return FALLBACK_ENCODING, "strict", head.decode(FALLBACK_ENCODING, errors="replace")


def _title_lines(lines: list[str], expected: Collection[str]) -> int:
    """How many lines above the header are a title (a report's name, a date, blank lines):
    0 unless the first line names none of the `expected` columns and the first line that is
    not a title (blank, or one value: Excel pads a title cell with separators, `Export;;;`)
    names one. A `#` comment line is a title whatever it holds (`# exported by X, 2024`, even
    `# columns: age, charges`), unless its first value is a column's (`#`, or an expected
    name); a quoted title is one value (`"Sales, 2024"`). A line with an open quote may be
    part of a quoted header cell written over two lines (`"Patient age` / `(years)",bmi`):
    then there are no titles."""
    if not expected or not lines:
        return 0
    if _names_one(lines[0], expected) and not _comment(lines[0], expected):
        return 0
    for start, line in enumerate(lines[:_MAX_TITLE_LINES]):
        if line.count('"') % 2:
            return 0
        if _comment(line, expected):
            continue
        named = _names_one(line, expected)
        cells = max(
            (next(csv.reader([line], delimiter=candidate), []) for candidate in _SEPARATORS),
            key=len,
        )
        if named or any(cell.strip() for cell in cells[1:]):  # the header, if it names one
            return start if start and named else 0
    return 0


def _comment(line: str, expected: Collection[str]) -> bool:
    """Whether a line is a `#` comment: it starts with `#`, and its first value, split by
    any separator, is neither `#` alone nor an expected column's name (`#,age` is a header)."""
    if not line.lstrip().startswith("#"):
        return False
    firsts = {
        next(csv.reader([line], delimiter=candidate), [""])[0].strip() for candidate in _SEPARATORS
    }
    return not firsts & {"#", *expected}


def _names_one(line: str, expected: Collection[str]) -> bool:
    """Whether a line, split by any separator, names one of the `expected` columns."""
    wanted = set(expected)
    return any(
        cell.strip() in wanted
        for candidate in _SEPARATORS
        for cell in next(csv.reader([line], delimiter=candidate), [])
    )


def _separator(lines: list[str]) -> str:
    """The separator that splits the header and most of the first rows (four in five) alike
    into the most values, quotes respected; commas on a tie or when none does. A `Cost, USD`
    name in a tab-separated header is one value; a row with a value too many is the reader's
    to name, not a reason to read the file with commas."""
    sample = [line for line in lines[:_SNIFF_LINES] if line.strip()]
    if len(sample) > 1 and not sample[-1].endswith(("\n", "\r")):
        sample = sample[:-1]  # possibly cut at the sample's end
    best, widest = ",", 1
    for candidate in _SEPARATORS:
        widths = [len(row) for row in csv.reader(sample, delimiter=candidate)]
        if not widths:
            continue
        alike = sum(width == widths[0] for width in widths)
        if alike >= 0.8 * len(widths) and widths[0] > widest:
            best, widest = candidate, widths[0]
    return best


def _decimal_mark(lines: list[str], separator: str | None) -> tuple[str, str | None]:
    """Decimal commas, with dots between thousands, when more columns write their fractions
    with a comma than with a dot (a `2.1` version column beside `73,1` prices is text, not a
    reason to read the prices as text); the dot when more write it; UNKNOWN when no column
    writes a fraction (whole numbers, `1.234` alone)."""
    commas: set[int] = set()
    dots: set[int] = set()
    for line in lines:
        for column, cell in enumerate(line.split(separator) if separator else [line]):
            cell = cell.strip().strip('"')
            if _DOT_THOUSANDS.fullmatch(cell):
                if "," in cell:  # 1.234,5 has a decimal comma; 1.234 alone could be 1.234
                    commas.add(column)
            elif COMMA_DECIMAL.fullmatch(cell):
                commas.add(column)
            elif _DOT_DECIMAL.fullmatch(cell):
                dots.add(column)
    only_commas, only_dots = len(commas - dots), len(dots - commas)
    if only_commas or only_dots:
        return (",", ".") if only_commas >= only_dots else (".", None)
    return UNKNOWN, None
