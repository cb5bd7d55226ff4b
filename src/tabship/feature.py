"""One input column as the model saw it in training, and the rules its values must follow.

The JSON, form and table paths all ask the feature, so one fault reads the same wherever it
is found. Only numpy here: the serving path never imports pandas or scikit-learn.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tabship import dates
from tabship.config import NUMBER_TEXT
from tabship.errors import shown_field

Kind = Literal["numeric", "categorical", "date"]

# A categorical value the table left empty is encoded as its own level, because the ONNX
# converter cannot impute strings; numeric gaps stay NaN for the pipeline's imputer.
MISSING_LEVEL = ""

# The model computes in 32-bit floats: a larger number would become infinity inside the graph.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The smallest normal float32: below it a value loses precision, below 1.4e-45 it is 0.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
# An unseen category reaches the engine as this text, which no table can hold as a level, so
# every encoder treats it as unknown (one-hot: all zeros), the same in ONNX and scikit-learn.
UNSEEN_LEVEL = "\x00unseen"
MAX_SHOWN_LEVELS = 10
# The texts a CSV reader takes as an empty cell (pandas' read_csv: its default na_values).
# Training read the table that way, so a request's "NA" for a category is missing too, as the
# same row in a predict file is; a level trained as written (from Parquet, say) still wins.
NA_TEXTS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip
# A boolean feature's levels are "False" and "True"; these are the spellings pandas read as
# booleans in training (its default true_values and false_values), so a predict file's text
# column and a request's string say the same thing.
BOOL_SPELLINGS = {
    "true": "True",
    "TRUE": "True",
    "false": "False",
    "FALSE": "False",
}
EMPTY = "is required; it cannot be empty"
# float32's relative rounding (2**-24), doubled: how far a float32 reading of a number may be
# from its float64 one.
_FLOAT32_STEP = 2.0**-23
NOT_A_DATE = "must be a date such as 2024-05-31 or 2024-05-31T14:30 (ISO 8601), got"
_NAT = np.datetime64("NaT", "s")


def shown(value: object) -> str:
    """A value as messages quote it: short, whatever the client sent; text in quotes, and
    JSON's own values as JSON writes them (`true`, `null`, `[29.5]`, `NaN`), not Python's."""
    if value is None or isinstance(value, bool):
        text = json.dumps(value)
    elif isinstance(value, float) and not math.isfinite(value):
        text = json.dumps(value)  # NaN, Infinity, -Infinity: what a lenient client sent
    elif isinstance(value, list | dict):
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def rows_text(count: int) -> str:
    """A count of rows for a message: 1 row, 2,500 rows."""
    return "1 row" if count == 1 else f"{count:,} rows"


def listed(names: list[str]) -> str:
    """Names as messages list them: each quoted and cut, at most MAX_SHOWN_LEVELS, and how many
    there are in all (a wide table's 500 columns are no help in a one-line message)."""
    head = ", ".join(repr(name[:60]) for name in names[:MAX_SHOWN_LEVELS])
    return head + (f", ... ({len(names)} in all)" if len(names) > MAX_SHOWN_LEVELS else "")


def closest(name: str, names: list[str]) -> str | None:
    """The name a user most likely meant: the same but for case and outer spaces, else the
    nearest spelling (difflib), else the one name holding it (`target` for `target_value`),
    else None."""
    import difflib

    wanted = name.strip().casefold()
    folded = {each.strip().casefold(): each for each in reversed(names)}
    if wanted in folded:
        return folded[wanted]
    near = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if near:
        return near[0]
    holding = [each for key, each in folded.items() if wanted and wanted in key]
    return holding[0] if len(holding) == 1 else None


# Infinity and NaN too, so that they get the message a JSON body's Infinity gets.
_DECIMAL = re.compile(f"{NUMBER_TEXT}|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def _bool_level(value: object) -> object:
    """A boolean feature's level for a JSON boolean or a spelling of one; else the value."""
    if type(value) is bool:
        return str(value)
    if isinstance(value, str):
        return BOOL_SPELLINGS.get(value, value)
    return value


def past_float32(value: float) -> str:
    """Why a number outside float32's finite range (NaN, infinite, too large) is refused."""
    bound = f"{FLOAT32_MAX:.3g}"
    return f"must be a finite number between -{bound} and {bound}, got {shown(value)}"


@dataclass(frozen=True)
class Feature:
    """One input column as the model saw it in training, and the rules for its values.

    The JSON, form and table paths all ask the feature, so one fault reads the same
    wherever it is found.
    """

    name: str
    kind: Kind
    dtype: str
    allow_missing: bool
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    levels: tuple[str, ...] = ()
    # Dates: slashed dates put the day first, as the training column did ("31/01/2024");
    # None when it wrote none: then only a slashed date that reads one way is taken.
    day_first: bool | None = False
    # A gap in a feature that had none in training is filled by the pipeline (numbers and
    # dates: the training median; categories: as an unseen value) with a warning, rather
    # than refusing the record. Models trained before the pipeline always imputed refuse it.
    fills_gaps: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_known", frozenset(self.known_levels))
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if self.kind == "numeric":  # float32's rounding: a float32 0.02 is 0.0199999995...
            low, high = low - abs(low) * _FLOAT32_STEP, high + abs(high) * _FLOAT32_STEP
        object.__setattr__(self, "_bounds", (low, high))

    @property
    def bounds(self) -> tuple[float, float]:
        """The training range a value is checked against (every path asks here): for a
        number widened by float32's rounding, so a float32 input equal to the minimum of a
        CSV's float64 training column is not an extrapolation."""
        return self._bounds  # type: ignore[attr-defined,no-any-return]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The engine's input columns for this feature: itself, or one number per date part.

        Dates reach the model as calendar parts computed before the pipeline, so the ONNX
        graph takes only numbers and text, and serving computes the parts with numpy.
        """
        if self.kind != "date":
            return (self.name,)
        return tuple(f"{self.name}.{part}" for part in dates.part_names(self.dtype == "datetime"))

    def date_parts(self, stamps: np.ndarray) -> dict[str, np.ndarray]:
        """The engine's (n, 1) part columns for datetime64 `stamps` of this date feature."""
        found = dates.parts(stamps, self.dtype == "datetime")
        return {
            name: column.reshape(-1, 1)
            for name, column in zip(self.inputs, found.values(), strict=True)
        }

    @property
    def takes_gaps(self) -> bool:
        """Whether an empty value is predicted (training had gaps, or the pipeline fills them)
        rather than refused."""
        return self.allow_missing or self.fills_gaps

    @property
    def known_levels(self) -> tuple[str, ...]:
        """The categories seen in training, without the level that stands for 'missing'."""
        return tuple(level for level in self.levels if level != MISSING_LEVEL)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, as stored in tabship.json."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "allow_missing": self.allow_missing,
            "fills_gaps": self.fills_gaps,
        }
        if self.kind == "numeric":
            out |= {"integer": self.integer, "minimum": self.minimum, "maximum": self.maximum}
        elif self.kind == "date":
            out |= {
                "day_first": self.day_first,
                "parts": list(self.inputs),
                "minimum": self.minimum,
                "maximum": self.maximum,
            }
        else:
            out["levels"] = list(self.levels)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        """Inverse of to_dict."""
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            dtype=str(data["dtype"]),
            allow_missing=bool(data["allow_missing"]),
            integer=bool(data.get("integer", False)),
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            levels=tuple(str(level) for level in data.get("levels", ())),
            day_first=_order(data.get("day_first", False)),
            fills_gaps=bool(data.get("fills_gaps", False)),
        )

    def unseen_message(self, value: object) -> str:
        """'x' is not one of the N values seen in training (e.g. a, b, c, ...)."""
        known = self.known_levels
        # Each cut: a 300-character level was copied whole into every request's warning.
        examples = ", ".join(
            level if len(level) <= 40 else level[:39] + "\u2026"
            for level in known[:MAX_SHOWN_LEVELS]
        ) + (", ..." if len(known) > MAX_SHOWN_LEVELS else "")
        return f"{shown(value)} is not one of the {len(known)} values seen in training (e.g. {examples})"

    @property
    def range_text(self) -> str:
        """The range training saw, as people read it: '18 to 64', '2021-01-01 to 2022-02-04'."""
        shown_bound = self.date_text if self.kind == "date" else _fmt
        return f"{shown_bound(self.minimum)} to {shown_bound(self.maximum)}"

    def outside(self, value: float) -> bool:
        """Whether a number (for dates: seconds since 1970) lies outside the training range."""
        low, high = self.bounds
        return bool(value < low or value > high)

    def range_warning(self, shown_value: str) -> str:
        """The one warning for a value outside what training saw, on every path."""
        return (
            f"{shown_field(self.name)}: {shown_value} is outside the training range {self.range_text}; "
            "the prediction is an extrapolation"
        )

    def read(self, value: object, strict: bool = False) -> tuple[Any, str | None, str | None]:
        """A JSON value as the engine takes it, with the problem (refused) or warning it raises."""
        if value is None:
            missing: Any = {"numeric": math.nan, "date": _NAT}.get(self.kind, MISSING_LEVEL)
            return (missing, *self._gap())
        if self.kind == "numeric":
            return self._number(value)
        if self.kind == "date":
            return self._date(value)
        if self.dtype == "bool":
            value = _bool_level(value)
        if not isinstance(value, str):
            wanted = "true or false" if self.dtype == "bool" else "text"
            return MISSING_LEVEL, f"must be {wanted}, got {shown(value)}", None
        if value in self._known:  # type: ignore[attr-defined]
            return value, None, None
        if value in NA_TEXTS:
            return (MISSING_LEVEL, *self._gap())
        if strict:
            return MISSING_LEVEL, self.unseen_message(value), None
        return (
            UNSEEN_LEVEL,
            None,
            f"{shown_field(self.name)}: {self.unseen_message(value)}; predicted as unknown",
        )

    def _null_hint(self, value: object) -> str:
        """How a request says 'missing', for a text that a file's reader takes as an empty
        cell ("NA", ""): a JSON number or date field takes null, as its schema says."""
        if isinstance(value, str) and value.strip() in NA_TEXTS and self.takes_gaps:
            return "; a missing value is sent as null"
        return ""

    def _gap(self) -> tuple[str | None, str | None]:
        """The problem or warning an empty value raises: none where training had gaps."""
        if self.allow_missing:
            return None, None
        if self.fills_gaps:
            return None, f"{shown_field(self.name)}: {self.gap_note}"
        return EMPTY, None

    @property
    def gap_note(self) -> str:
        """What happens to an empty value of a feature that had no gaps in training."""
        filled = {
            "numeric": "filled with the training median",
            "date": "its calendar parts filled with the training medians",
        }.get(self.kind, "predicted as for a value unseen in training")
        return f"empty, though training had no gaps here; {filled}"

    def read_column(self, values: list[Any], strict: bool = False) -> ColumnRead:
        """`read` over one column of JSON-like values, with problems and warnings by row.

        Whole columns of valid numbers, or of levels seen in training, are checked at once
        (binary tensors and big batches arrive that way); anything else is read value by
        value, so every message is the one `read` gives.
        """
        fast = self._fast_column(values)
        if fast is not None:
            return fast
        out: list[Any] = []
        read = ColumnRead(out, [], [], 0)
        for index, value in enumerate(values):
            engine_value, problem, warning = self.read(value, strict)
            out.append(engine_value)
            if problem is not None:
                read.problems.append((index, problem))
            elif warning is not None:
                read.warnings.append((index, warning))
                if engine_value is UNSEEN_LEVEL:
                    read.unseen += 1
        return read

    def _fast_column(self, values: list[Any]) -> ColumnRead | None:
        """The column read at once when every value is valid as it is, else None."""
        if self.kind == "categorical":
            try:
                known = self._known.issuperset(values)  # type: ignore[attr-defined]
            except TypeError:  # an unhashable value: read one by one
                return None
            return ColumnRead(values, [], [], 0) if known else None
        if (
            self.kind != "numeric"
            or len(values) < NUMPY_MIN_ROWS
            or not _NUMBER_TYPES.issuperset(map(type, values))
        ):
            return None
        try:
            numbers = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer too big for a float: `read` says so
            return None
        with np.errstate(invalid="ignore"):
            # Strictly below the bound: an integer just over it rounds onto it as a float.
            refused = ~(np.abs(numbers) < FLOAT32_MAX)
            if self.integer:
                refused |= numbers != np.round(numbers)
            if refused.any():
                return None
            low, high = self.bounds
            outside = np.flatnonzero((numbers < low) | (numbers > high))
        warnings = [(int(i), self.range_warning(_fmt(float(numbers[i])))) for i in outside]
        return ColumnRead(numbers, [], warnings, 0)

    def read_text(self, text: str, strict: bool = False) -> tuple[Any, str | None, str | None]:
        """Text from a form or a table cell: empty is missing, numbers are parsed first."""
        text = text.strip()
        if text == "":
            return self.read(None, strict)
        if self.kind == "numeric":
            # A number as JSON and CSV write it: Python's float() also reads "4_5" and other
            # scripts' digits ("٤٥"), which no other path here accepts.
            if not _DECIMAL.fullmatch(text):
                return math.nan, f"must be a number, got {shown(text)}", None
            number = float(text)
            if self.integer and number.is_integer() and abs(number) <= FLOAT32_MAX:
                return self.read(int(number), strict)
            return self.read(number, strict)
        return self.read(text, strict)

    def read_cell(self, cell: object, strict: bool = False) -> tuple[Any, str | None, str | None]:
        """A table cell as pandas gives it: text, a numpy number, or a missing marker."""
        if isinstance(cell, str):
            return self.read_text(cell, strict)
        if isinstance(cell, np.generic):
            cell = cell.item()
        if isinstance(cell, float) and math.isnan(cell):
            return self.read(None, strict)
        return self.read(cell, strict)

    def date_text(self, seconds: float | None) -> str:
        """A bound of this date feature as ISO text ('' when training recorded none)."""
        if seconds is None:
            return ""
        stamp = np.datetime64(int(seconds), "s")
        text = str(stamp.astype("datetime64[m]" if self.dtype == "datetime" else "datetime64[D]"))
        return text

    def _date(self, value: object) -> tuple[np.datetime64, str | None, str | None]:
        if not isinstance(value, str):
            return _NAT, f"{NOT_A_DATE} {shown(value)}", None
        stamp = dates.parse([value], self.day_first)[0]
        if np.isnat(stamp) and self.day_first is None and dates.ambiguous(value):
            return (
                _NAT,
                (
                    f"{NOT_A_DATE} {shown(value)}, which reads as day/month and as month/day; "
                    "training's dates did not say which: write it as YYYY-MM-DD"
                ),
                None,
            )
        if np.isnat(stamp):
            return _NAT, f"{NOT_A_DATE} {shown(value)}{self._null_hint(value)}", None
        if self.outside(float(stamp.astype(np.int64))):
            return stamp, None, self.range_warning(value[:40])
        return stamp, None, None

    def _number(self, value: object) -> tuple[float, str | None, str | None]:
        kind = type(value)
        if kind is not float and kind is not int:
            return math.nan, f"must be a number, got {shown(value)}{self._null_hint(value)}", None
        # Compared before float(): an integer of a thousand digits does not fit a float at all.
        if not (-FLOAT32_MAX <= value <= FLOAT32_MAX):  # type: ignore[operator]
            return math.nan, past_float32(value), None  # type: ignore[arg-type]
        number = float(value)  # type: ignore[arg-type]
        if self.integer and not number.is_integer():
            return number, f"must be a whole number, got {shown(value)}", None
        if self.outside(number):
            return number, None, self.range_warning(_fmt(number))
        return number, None, None


@dataclass
class ColumnRead:
    """One column as the engine takes it, with (row, message) problems and warnings."""

    values: Any
    problems: list[tuple[int, str]]
    warnings: list[tuple[int, str]]
    unseen: int


_NUMBER_TYPES = frozenset({int, float})
# Below this many values, numpy's per-call cost is more than reading the values one by one.
NUMPY_MIN_ROWS = 32


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    # Whole numbers as written up to 15 digits; past that a float's digits are not the
    # client's (1e30 read back as 1000000000000000019884624838656).
    whole = float(value).is_integer() and abs(value) < 1e15
    return str(int(value)) if whole else f"{value:g}"


def _order(value: object) -> bool | None:
    """A card's `day_first`: None where training wrote no slashed dates (cards before had a
    boolean only)."""
    return None if value is None else bool(value)
