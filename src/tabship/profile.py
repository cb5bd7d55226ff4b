"""Profile a training table's columns into features: kinds, ranges, levels, and what to ignore."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from tabship import dates
from tabship.columnar import wall_clock
from tabship.config import NUMBER_TEXT
from tabship.csvformat import COMMA_NUMBER
from tabship.feature import FLOAT32_TINY, shown
from tabship.schema import MISSING_LEVEL, Feature, Schema

if TYPE_CHECKING:
    import pandas as pd

ID_LIKE_MIN_ROWS = 20
# A text column with a distinct value in over half of its rows is a name or a code rather than
# a category: most of its levels are seen once, so they teach nothing and every new row brings
# a new one.
ID_LIKE_DISTINCT_SHARE = 0.5
# A feature with values in fewer than this share of rows is said to be nearly empty.
SPARSE_SHARE = 0.05
# A whole-number column distinct in this share of its rows is an ID when its name's first or
# last word says so (`customer_id`, `ID`, `CustomerID`; not `index` or `key`, which measures
# are called too: `price_index`).
ID_SHARE = 0.9
_ID_WORDS = frozenset({"id", "ids", "uuid", "guid"})
# A text column is a date column when this share of its values parse as dates; the rest
# (typos, "unknown") become missing dates rather than a reason to ignore the column.
DATE_SHARE = 0.95
# Values tried before parsing a whole column, so a plain text column costs little.
DATE_PROBE = 200


# Text that is a plain number, and one written with a currency sign, thousands separators or
# a percent sign.
PLAIN_NUMBER = re.compile(rf"\s*{NUMBER_TEXT}\s*")
DRESSED_NUMBER = re.compile(r"\s*[-+(]?\s*[$€£¥]?\s*[0-9][0-9,. ]*\s*(%|[$€£¥]|[A-Z]{3})?\)?\s*")
# A number and a unit after it (`57.3 kg`, `12mm`, `3.5 h`; not a code such as `12A`): the
# space before the unit is group 1, the unit group 2.
_WITH_UNIT = re.compile(
    r"\s*[-+]?[0-9]+(?:[.,][0-9]+)?(\s*)([A-Za-zµ°]{1,5}\.?(?:/[A-Za-z]{1,3})?)\s*"
)
# A text column this share of whose values are numbers is a number column with a few bad cells.
NUMBER_SHARE = 0.9


def plain_numbers(text: pd.Series, decimal: str) -> pd.Series:
    """Which cells are plain numbers as their file writes them: `1234.5`, or `1.234,5` in a
    file of decimal commas (where pandas leaves a column text at its first `abc`)."""
    plain = text.str.fullmatch(PLAIN_NUMBER.pattern)
    if decimal == ",":
        plain |= text.str.strip().str.fullmatch(COMMA_NUMBER.pattern)
    return plain


def _numbers_as_text(name: str, present: pd.Series, decimal: str) -> str | None:
    """Why a text column of many distinct numbers is ignored, naming what to fix, or None:
    numbers with a few cells that are not (`?`, `-`, `n/a`), or numbers written with `$`, `,`
    or `%`. Said to be "an ID or a name" before, which sent the user looking for the wrong
    thing. (With few distinct values such a column is a category, and stays one.)"""
    text = present.astype(str)
    plain = plain_numbers(text, decimal)
    if plain.mean() >= NUMBER_SHARE and not plain.all():
        odd = text[~plain]
        values = list(dict.fromkeys(odd))
        shown = ", ".join(repr(value[:20]) for value in values[:3])
        more = f" and {len(values) - 3} other values" if len(values) > 3 else ""
        return (
            f"column {name!r} holds numbers but for {len(odd)} cells ({shown}{more}); "
            "ignored: empty those cells (or write the numbers) to use it"
        )
    found = text[text.str.fullmatch(_WITH_UNIT.pattern)].str.extract(_WITH_UNIT.pattern)
    units = found[1][(found[0] != "") | (found[1].str.len() > 1)]
    if len(units) >= NUMBER_SHARE * len(text) and units.nunique() <= 3:
        return (
            f"column {name!r} holds numbers with a unit (such as {text.iloc[0][:20]!r}); "
            "ignored: write the numbers alone (57.3) and name the unit in the header to use it"
        )
    if not plain.any() and text.str.fullmatch(DRESSED_NUMBER.pattern).mean() >= NUMBER_SHARE:
        return (
            f"column {name!r} holds numbers written with signs or separators (such as "
            f"{text.iloc[0][:20]!r}); ignored: write them as plain numbers (1234.5) to use it"
        )
    return None


_TIME_OF_DAY = re.compile(r"\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*([AaPp][Mm])?\s*")


def _times_of_day(name: str, present: pd.Series) -> str | None:
    """Why a column of times without dates (`14:37`, a Parquet time64) is ignored, or None:
    called "an ID or a name" before."""
    import datetime

    timed = [
        isinstance(v, datetime.time) or (isinstance(v, str) and _TIME_OF_DAY.fullmatch(v))
        for v in present.iloc[:DATE_PROBE]
    ]
    if not timed or sum(map(bool, timed)) < DATE_SHARE * len(timed):
        return None
    return (
        f"column {name!r} holds times of day without dates (such as {str(present.iloc[0])[:20]!r}), "
        "which tabship does not read; ignored: add the date (2024-05-31 14:37) or give the "
        "hour as a number column to use it"
    )


def _dates_that_disagree(name: str, present: pd.Series) -> str | None:
    """Why a column of dates in several formats is ignored (`02/15/2022` beside `13/07/2021`:
    no one order reads both), naming a date it cannot read, or None. It was called "an ID or
    a name"."""
    text = [value for value in present.iloc[:DATE_PROBE] if isinstance(value, str)]
    either = ~np.isnat(dates.parse(text, True)) | ~np.isnat(dates.parse(text, False))
    if not text or either.mean() < DATE_SHARE:
        return None
    unread = np.isnat(dates.parse(text, dates.day_first(text)))
    shown = text[int(np.flatnonzero(unread)[0])] if unread.any() else text[0]
    return (
        f"column {name!r} holds dates written in formats that disagree (such as "
        f"{shown[:20]!r}, which its other dates' day/month order cannot read); ignored: "
        "write them one way (2024-05-31) to use it"
    )


_SIGN = re.compile(r"[%$€£¥]")


def dressed_levels_note(name: str, levels: list[str], decimal: str = ".") -> str | None:
    """A note for a category whose levels are numbers written with %, $ or separators
    (`12%`), or numbers but for a few (`0,2` among whole numbers): kept as a category, sorted
    as text (`10%` before `2%`); said so it is a choice."""
    if len(levels) < 3:
        return None
    import pandas as pd

    is_plain = plain_numbers(pd.Series(levels, dtype=object), decimal).tolist()
    plain = [level for level, number in zip(levels, is_plain, strict=True) if number]
    if plain:
        odd = [level for level, number in zip(levels, is_plain, strict=True) if not number]
        if len(plain) < NUMBER_SHARE * len(levels):
            return None
        shown = ", ".join(repr(level[:20]) for level in odd[:3])
        return (
            f"column {name!r} holds numbers but for {len(odd)} of its {len(levels)} values "
            f"({shown}{', ...' if len(odd) > 3 else ''}); used as a category, not as numbers: "
            "empty those cells or write the numbers plainly (0.2) to use their size"
        )
    # A sign somewhere: version numbers (1.2.3) and phone numbers are dressed digits too.
    dressed = sum(1 for level in levels if DRESSED_NUMBER.fullmatch(level))
    if dressed < NUMBER_SHARE * len(levels) or not any(_SIGN.search(level) for level in levels):
        return None
    return (
        f"column {name!r} holds numbers written with signs or separators (such as "
        f"{levels[0][:20]!r}); used as a category of {len(levels)} values, not as numbers: "
        "write them as plain numbers (12 or 0.12) to use their size"
    )


def _words(name: str) -> list[str]:
    """A column name's words: `customer_id`, `CustomerID` and `customer id` alike."""
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", name)


def _flat(value: object) -> bool:
    """Whether a cell is one value (Parquet's lists, structs and maps come as arrays, dicts and
    lists of pairs, which no category or number can be)."""
    return not isinstance(value, (list, dict, tuple, set, np.ndarray))


def stamps(column: pd.Series) -> np.ndarray | None:
    """The column as datetime64[s] if it holds dates (a datetime dtype or date text), else None."""
    if column.dtype.kind == "M":
        return wall_clock(column)
    if column.dtype.kind in "iufb":
        return None
    present = [value for value in column.dropna().to_numpy(dtype=object) if isinstance(value, str)]
    if not present:
        return None
    first = dates.day_first(present)
    probe = dates.parse(present[:DATE_PROBE], first)
    if np.mean(~np.isnat(probe)) < DATE_SHARE:
        return None
    parsed = dates.parse(column.to_numpy(dtype=object), first)
    if np.sum(~np.isnat(parsed)) < DATE_SHARE * len(present):
        return None
    return parsed


def _date_feature(name: str, column: pd.Series, parsed: np.ndarray) -> Feature | str:
    present = parsed[~np.isnat(parsed)]
    if len(np.unique(present)) == 1:
        return f"column {name!r} has the single date {present[0]} in every row; ignored"
    text: list[object] = [] if column.dtype.kind == "M" else list(column.dropna())
    seconds = present.astype(np.int64)
    return Feature(
        name=name,
        kind="date",
        dtype="datetime" if dates.has_time(present) else "date",
        allow_missing=bool(len(present) < len(parsed)),
        fills_gaps=True,
        # The range seen, in seconds since 1970: the form's bounds and the range warning.
        minimum=float(seconds.min()),
        maximum=float(seconds.max()),
        day_first=dates.slash_order(v for v in text if isinstance(v, str)),
    )


def _numeric_feature(
    name: str, column: pd.Series, present: pd.Series, distinct: int, allow_missing: bool
) -> Feature | str:
    """A number column, or why it is ignored (it numbers the rows; float32 reads it as 0)."""
    values = present.to_numpy(dtype=np.float64)
    integer = bool(np.all(values == np.round(values)))
    numbers_rows = values.max() - values.min() + 1 == len(column)
    if integer and distinct == len(column) >= ID_LIKE_MIN_ROWS and numbers_rows:
        return f"column {name!r} numbers the rows (a different value in each); ignored"
    # Real IDs have gaps (deleted rows) or a repeat (a duplicated row): fitted as a number
    # they only memorise, and every request must send one. Told by the name: a year, a speed
    # or a rank with gaps is as distinct and as run-like.
    named = _ID_WORDS & {word.lower() for word in _words(name)[:1] + _words(name)[-1:]}
    if named and integer and len(column) >= ID_LIKE_MIN_ROWS and distinct >= ID_SHARE * len(column):
        return (
            f"column {name!r} looks like an ID (a different whole number in nearly every row, "
            "and its name says so); ignored: rename it if it is a measure"
        )
    tiny = values[(values != 0) & (np.abs(values) < FLOAT32_TINY)]
    if len(tiny) and len(np.unique(np.where(np.abs(values) < FLOAT32_TINY, 0, values))) == 1:
        # The model computes in float32, where these are 0: one value in every row.
        return (
            f"column {name!r} holds numbers too small for the model's 32-bit floats (such "
            f"as {tiny[0]:.3g}, read as 0); ignored: rescale it (multiply by 1e30, say)"
        )
    return Feature(
        name=name,
        kind="numeric",
        dtype=str(column.dtype),
        allow_missing=allow_missing,
        fills_gaps=True,
        integer=integer,
        minimum=float(values.min()),
        maximum=float(values.max()),
    )


def infer_feature(name: str, column: pd.Series, decimal: str = ".") -> Feature | str:
    """Describe one column, or return the reason it cannot be a feature. `decimal` is the
    mark its CSV file writes numbers with."""
    present = column.dropna()
    if present.empty:
        return f"column {name!r} is empty in every row; ignored"
    if column.dtype == object and not all(map(_flat, present)):
        return (
            f"column {name!r} holds nested values (lists, records or arrays), which tabship "
            "does not use; ignored"
        )
    distinct = present.nunique()
    if distinct == 1:
        return _single_value(name, present, len(column))
    allow_missing = bool(len(present) < len(column))
    kind_code = column.dtype.kind
    if kind_code in "iuf":
        return _numeric_feature(name, column, present, distinct, allow_missing)
    parsed = stamps(column)
    if parsed is not None:
        return _date_feature(name, column, parsed)
    if kind_code == "m":
        return f"column {name!r} holds durations ({column.dtype}), which tabship does not use yet; ignored"
    levels = sorted({str(value) for value in present})
    if len(column) >= ID_LIKE_MIN_ROWS and len(levels) > ID_LIKE_DISTINCT_SHARE * len(column):
        return (
            _numbers_as_text(name, present, decimal)
            or _times_of_day(name, present)
            or _dates_that_disagree(name, present)
            or (
                f"column {name!r} looks like an ID or a name ({len(levels)} distinct values in "
                f"{len(column)} rows, over {ID_LIKE_DISTINCT_SHARE:.0%}); ignored"
            )
        )
    if MISSING_LEVEL in levels:  # a Parquet file's empty text: missing, as a CSV's empty cell
        levels.remove(MISSING_LEVEL)
        allow_missing = True
    if allow_missing:
        levels.insert(0, MISSING_LEVEL)
    return Feature(
        name=name,
        kind="categorical",
        dtype="bool" if kind_code == "b" else "string",
        allow_missing=allow_missing,
        fills_gaps=True,
        levels=tuple(levels),
    )


def _single_value(name: str, present: pd.Series, rows: int) -> str:
    """Why a column of one value (and maybe gaps) is left out."""
    value = present.iloc[0]
    value = value.item() if isinstance(value, np.generic) else value  # 7, not np.int64(7)
    if len(present) < rows:  # "in every row" was said of a column 3 % filled
        return (
            f"column {name!r} has the single value {shown(value)} in {len(present) / rows:.0%} "
            "of its rows and is empty in the rest; ignored (add a column saying whether it is "
            "filled, if that matters)"
        )
    return f"column {name!r} has the single value {shown(value)} in every row; ignored"


def infer_schema(frame: pd.DataFrame, target: str) -> tuple[Schema, list[str]]:
    """The schema of every usable column but the target, and a warning per ignored column."""
    features: list[Feature] = []
    warnings: list[str] = []
    from tabship.datasets import MARKS

    names = {str(name) for name in frame.columns}
    decimal = frame.attrs.get(MARKS, (".", None))[0]
    for name in frame.columns:
        if name == target:
            continue
        described = infer_feature(str(name), frame[name], decimal)
        if isinstance(described, Feature) and described.kind == "date":
            taken = sorted(set(described.inputs) & names)
            if taken:  # the model's inputs would be named twice
                described = (
                    f"date column {name!r} ignored: its calendar part {taken[0]!r} is also a "
                    "column of the table; rename that column to use both"
                )
        if isinstance(described, Feature):
            features.append(described)
            present = int(frame[name].notna().sum())
            if present < SPARSE_SHARE * len(frame):
                warnings.append(
                    f"column {str(name)!r} is empty in {1 - present / len(frame):.0%} of rows "
                    f"(a value in {present:,} of {len(frame):,}); used, though it can teach "
                    "the model little"
                )
            if described.kind == "categorical" and described.dtype == "string":
                note = dressed_levels_note(described.name, list(described.known_levels), decimal)
                warnings.extend([note] if note else [])
        else:
            warnings.append(described)
    return Schema(tuple(features)), warnings
