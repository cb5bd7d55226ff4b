"""Dates as numbers a model can use: parse text to datetime64, split it into calendar parts.

Pure numpy, so the serving path computes the same parts as training without pandas.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

# The parts every date gives; a column with times of day adds the hour.
DATE_PARTS = ("year", "month", "day", "day_of_week", "day_of_year")
TIME_PARTS = ("hour",)

# Formats tried in order after ISO 8601. Day-first and month-first slashes are ambiguous
# ("03/04/2024"), so only the one a whole column agrees with is used (see `parse`).
_SLASHED = re.compile(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
# RFC 3339 (what OpenAPI's date-time names) allows a lower-case t and z.
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$"
)
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
# English month names, as spreadsheets and reports write them: `25 Dec 2020`, `25-Dec-2020`,
# `December 25, 2020`, `Dec 25th 2020` (called "an ID or a name" before).
_DAY_MONTH = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?[ \-./]+([A-Za-z]{3,9})\.?[ \-./,]+(\d{4})$")
_MONTH_DAY = re.compile(r"^([A-Za-z]{3,9})\.?[ \-]+(\d{1,2})(?:st|nd|rd|th)?,?[ \-]+(\d{4})$")
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
            ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip


def part_names(with_time: bool) -> tuple[str, ...]:
    """The parts a date column expands into."""
    return DATE_PARTS + TIME_PARTS if with_time else DATE_PARTS


def parts(values: np.ndarray, with_time: bool) -> dict[str, np.ndarray]:
    """Each calendar part of datetime64 `values` as float64; NaT gives NaN in every part."""
    stamps = np.asarray(values, dtype="datetime64[s]").ravel()
    missing = np.isnat(stamps)
    days = stamps.astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    found = {
        "year": years.astype(np.int64) + 1970,
        "month": (months - years.astype("datetime64[M]")).astype(np.int64) + 1,
        "day": (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
        # 1970-01-01 was a Thursday; Monday is 0 as in Python's weekday().
        "day_of_week": (days.astype(np.int64) + 3) % 7,
        "day_of_year": (days - years.astype("datetime64[D]")).astype(np.int64) + 1,
        "hour": (stamps - days.astype("datetime64[s]")).astype(np.int64) // 3600,
    }
    out: dict[str, np.ndarray] = {}
    for name in part_names(with_time):
        column = found[name].astype(np.float64)
        column[missing] = np.nan
        out[name] = column
    return out


def _stamp(year: str, month: str, day: str, hour: str | None, minute: str | None) -> np.datetime64:
    text = f"{year}-{int(month):02d}-{int(day):02d}"
    if hour is not None:
        text += f"T{int(hour):02d}:{int(minute or 0):02d}"
    return np.datetime64(text, "s")


def _one(text: str, day_first: bool | None) -> np.datetime64:
    """One text as a datetime64, NaT when it is not a real date in a known format. With
    `day_first` None (the training column wrote no slashed dates) a slashed date is read only
    when it reads one way (`25/12/2020`); `03/04/2020` is NaT (`ambiguous` says why)."""
    text = text.strip()
    try:
        if match := _ISO.match(text):
            year, month, day, hour, minute = match.groups()[:5]
            return _stamp(year, month, day, hour, minute)
        if match := _COMPACT.match(text):
            year, month, day = match.groups()
            return _stamp(year, month, day, None, None)
        if (match := _DAY_MONTH.match(text)) and match[2].lower() in _MONTHS:
            return _stamp(match[3], str(_MONTHS[match[2].lower()]), match[1], None, None)
        if (match := _MONTH_DAY.match(text)) and match[1].lower() in _MONTHS:
            return _stamp(match[3], str(_MONTHS[match[1].lower()]), match[2], None, None)
        if match := _SLASHED.match(text):
            first, second, year, hour, minute = match.groups()[:5]
            if day_first is None:
                if (int(first) > 12) == (int(second) > 12):
                    return np.datetime64("NaT", "s")
                day_first = int(first) > 12
            day, month = (first, second) if day_first else (second, first)
            return _stamp(year, month, day, hour, minute)
    except ValueError:  # a date that does not exist, such as 2023-02-30
        pass
    return np.datetime64("NaT", "s")


def day_first(texts: Iterable[str]) -> bool:
    """Whether slashed dates in `texts` put the day first (some first number over 12)."""
    for text in texts:
        match = _SLASHED.match(text.strip())
        if match and int(match.group(1)) > 12:
            return True
    return False


def slash_order(texts: Iterable[str]) -> bool | None:
    """A training column's slashed dates: day first (True), month first (False), or None
    when it wrote none, so a predict file's `03/04/2020` is not guessed at."""
    found = [text for text in texts if _SLASHED.match(text.strip())]
    return day_first(found) if found else None


def ambiguous(text: str) -> bool:
    """Whether a slashed date reads as day/month and month/day alike (`03/04/2020`)."""
    match = _SLASHED.match(text.strip())
    return match is not None and int(match.group(1)) <= 12 and int(match.group(2)) <= 12


def parse(texts: Iterable[object], first_is_day: bool | None = False) -> np.ndarray:
    """Text to datetime64[s]: ISO 8601, YYYYMMDD, d/m/Y or m/d/Y, and English month names
    (`25 Dec 2020`, `Dec 25, 2020`); NaT for anything else."""
    return np.array(
        [
            _one(value, first_is_day) if isinstance(value, str) else np.datetime64("NaT", "s")
            for value in texts
        ],
        dtype="datetime64[s]",
    )


def has_time(values: np.ndarray) -> bool:
    """Whether any present value carries a time of day other than midnight."""
    stamps = np.asarray(values, dtype="datetime64[s]").ravel()
    stamps = stamps[~np.isnat(stamps)]
    return bool(np.any(stamps != stamps.astype("datetime64[D]").astype("datetime64[s]")))
