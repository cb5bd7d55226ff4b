"""A predict file's own target column, typed as the model answers it, for a Parquet output.

A labelled CSV scored into Parquet kept its target as the text it was read as ('0', 'true')
beside the typed `predicted_TARGET` (0, true), so `(y == predicted_y).mean()` was 0 however
good the model. A CSV output has no types and keeps every cell as written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tabship.columnar import is_text
from tabship.csvformat import NumberMarks, written_numbers
from tabship.datasets import MARKS
from tabship.feature import BOOL_SPELLINGS, NA_TEXTS

# Spellings pandas read as booleans when training read the target (its true/false values).
_TRUE = frozenset({"True", *(s for s, level in BOOL_SPELLINGS.items() if level == "True")})
_FALSE = frozenset({"False", *(s for s, level in BOOL_SPELLINGS.items() if level == "False")})


@dataclass
class LeftEmpty:
    """Target cells that are not a value of the answers' type: how many, the first one's row."""

    cells: int = 0
    row: int = 0
    text: str = ""
    source: str | None = None  # the file, when several are scored into one output

    def add(
        self, column: pd.Series, odd: pd.Series, first_row: int, source: str | None = None
    ) -> None:
        if not odd.any():
            return
        if not self.cells:
            at = int(np.flatnonzero(odd.to_numpy())[0])
            self.row, self.text = first_row + at, str(column.iloc[at])
            self.source = source
        self.cells += int(odd.sum())

    def note(self, target: str, kind: str) -> str:
        """The one note a run gives, or '' when every cell was typed."""
        if not self.cells:
            return ""
        shown = self.text if len(self.text) <= 40 else self.text[:40] + "..."
        return (
            f"the input's {target!r} column is written as {kind} values, as the predictions "
            f"are; {self.cells:,} cell{'s' if self.cells != 1 else ''} that "
            f"{'are' if self.cells != 1 else 'is'} not (row {self.row}"
            f"{f' of {self.source}' if self.source else ''} {shown!r}) "
            "left empty there (a CSV output keeps every cell as written)"
        )


class TargetColumn:
    """A model's target column in the chunks scored into one Parquet output: typed as the
    predictions are, each cell that is not such a value left empty and counted."""

    def __init__(self, target: str, task: str, label_type: str) -> None:
        self.target = target
        self.kind = answer_kind(task, label_type)
        self.left = LeftEmpty()

    def typed(self, chunk: pd.DataFrame, first_row: int, source: str | None) -> pd.DataFrame:
        """`chunk` with its target column typed, if it has one as text (a CSV's always)."""
        column = chunk.get(self.target)
        if not isinstance(column, pd.Series) or not is_text(column):
            return chunk
        # A CSV's marks (csv_chunks notes them); a Parquet file's text numbers have dots.
        marks = chunk.attrs.get(MARKS, (".", None))
        typed, odd = typed_target(column, self.kind, marks)
        self.left.add(column, odd, first_row, source)
        return chunk.assign(**{self.target: typed})

    def note(self) -> str:
        """The run's one note on cells left empty, or ''."""
        return self.left.note(self.target, self.kind)


def answer_kind(task: str, label_type: str) -> str:
    """The type a model answers its target in: "number" for a regression, else its labels'."""
    return "number" if task == "regression" else label_type


def typed_target(column: pd.Series, kind: str, marks: NumberMarks) -> tuple[pd.Series, pd.Series]:
    """`column` (text as a CSV reader kept it) in `kind`'s type, and the mask of its cells that
    are not such a value and were left empty. Missing cells (blank, `NA`) stay missing."""
    text = column.astype("string").str.strip()
    empty = text.isna() | text.isin(NA_TEXTS)
    if kind == "boolean":
        typed = pd.Series(pd.NA, index=column.index, dtype="boolean")
        typed[text.isin(_TRUE).fillna(False)] = True
        typed[text.isin(_FALSE).fillna(False)] = False
        return typed, typed.isna() & ~empty
    if kind not in ("number", "integer"):
        return column, pd.Series(False, index=column.index)
    numbers = pd.to_numeric(written_numbers(column.astype(object), marks), errors="coerce")
    numbers = numbers.astype("float64")
    if kind == "integer":
        # Past 2**53 a float is not the integer written; a class is never a fraction.
        whole = (numbers == np.round(numbers)) & (numbers.abs() < 2**53)
        numbers = numbers.where(whole)
        return numbers.astype("Int64"), numbers.isna() & ~empty
    return numbers, numbers.isna() & ~empty
