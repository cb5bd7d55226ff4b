"""Code columns a CSV reader gets wrong: ZIP codes whose leading zeros it drops (02134 read
as the magnitude 2134), and two-letter codes whose `NA` (North America, Namibia) it reads as
a missing value. Both are read back from the file's text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def codes_as_text(
    path: Path, frame: pd.DataFrame, args: dict[str, Any], rows: int | None = None
) -> pd.DataFrame:
    """Whole-number columns written with leading zeros (ZIP codes, 007) as their text: the
    zeros say the values are codes, and read as numbers 02134 would be a magnitude, 2134."""
    import pandas as pd

    positions = [i for i, kind in enumerate(frame.dtypes) if kind.kind in "iu"]
    if not positions:
        return frame
    text = pd.read_csv(path, usecols=positions, dtype=str, nrows=rows, **args)
    coded = {
        str(frame.columns[i]): text.iloc[:, k]
        for k, i in enumerate(positions)
        if text.iloc[:, k].str.match(r"[+-]?0[0-9]").fillna(False).any()
    }
    return frame.assign(**coded) if coded else frame


# A column of two-letter codes (`EU`, `AS`, `US`), where `NA` is North America or Namibia.
_LETTER_CODE = r"[A-Z]{2}"
# US states' and territories' codes: no NA among them.
_US_STATES = frozenset({
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "PR", "GU", "VI", "AS", "MP",
})  # fmt: skip
# R's write.csv quotes every string and writes a missing value as a bare NA: such a file's
# NA is missing, whatever its column.
_QUOTED_CODE = re.compile(rb'"[A-Z]{2}"')
_BARE_NA = re.compile(rb"(?:^|[,;\t|])NA(?:[,;\t|]|\r?$)", re.MULTILINE)


def na_as_code(
    path: Path, frame: pd.DataFrame, args: dict[str, Any], rows: int | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """`NA` kept as the code it is in a column of two-letter codes (pandas reads it as
    missing: North America became a gap, and the form had no such option), and a note per
    column."""
    import pandas as pd

    from tabship.columnar import is_text  # columnar reads datasets, which reads this

    positions = [
        i
        for i in range(len(frame.columns))
        if is_text(frame.iloc[:, i])
        and frame.iloc[:, i].isna().any()
        and frame.iloc[:, i].dropna().astype(str).str.fullmatch(_LETTER_CODE).all()
        # US states' codes have no NA: there it is missing.
        and not set(frame.iloc[:, i].dropna()) <= _US_STATES
    ]
    if not positions or _r_style(path):
        return frame, []
    text = pd.read_csv(
        path, usecols=positions, dtype=str, keep_default_na=False, nrows=rows, **args
    )
    kept, notes = {}, []
    for k, i in enumerate(positions):
        name = frame.columns[i]
        coded = frame.iloc[:, i].isna() & (text.iloc[:, k].str.strip() == "NA").to_numpy()
        if coded.any():
            kept[name] = frame.iloc[:, i].where(~coded, "NA")
            notes.append(
                f"{int(coded.sum())} rows of {str(name)!r} hold 'NA' among letter codes; kept "
                "as the code NA (North America, Namibia), not missing: blank those cells if "
                "they mean unknown"
            )
    return (frame.assign(**kept) if kept else frame), notes


def _r_style(path: Path) -> bool:
    """Whether a CSV quotes its codes and writes NA bare, as R does (its NA is missing)."""
    import gzip

    packed = path.suffix.lower() == ".gz"
    with gzip.open(path, "rb") if packed else path.open("rb") as file:
        head = file.read(1 << 16)
    return bool(_QUOTED_CODE.search(head) and _BARE_NA.search(head))
