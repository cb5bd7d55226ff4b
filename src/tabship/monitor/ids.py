"""Prediction ids and what a request hands the log: light, so the request path imports no database."""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, overload

# One random prefix per process and a counter: unique across workers and pods, and a few
# hundred nanoseconds to make (a uuid4 per row would cost more than the log itself). The
# counter has a fixed width (ten hex digits, a trillion predictions), so the log's writer
# finds a batch's lowest and highest ids by comparing them as text.
PREFIX = secrets.token_hex(6)
_COUNTER = itertools.count(1)


# An id as this tabship gives them, in any process (another worker's prefix too).
_ID_FORM = re.compile(r"[0-9a-f]{12}-[0-9a-f]{10}")


def is_prediction_id(text: str) -> bool:
    """Whether `text` has the form of the ids `prediction_ids` gives, any process's."""
    return _ID_FORM.fullmatch(text) is not None


def prediction_ids(count: int) -> list[str]:
    """`count` new prediction ids."""
    if count == 1:
        return [f"{PREFIX}-{next(_COUNTER):010x}"]
    return [f"{PREFIX}-{next(_COUNTER):010x}" for _ in range(count)]


class Logged(NamedTuple):
    """What one request predicted, as the request path hands it over (no copies, no JSON).

    A tuple, because it is made once per prediction request on the event loop.
    """

    ids: Sequence[str]
    records: Sequence[Mapping[str, Any]]
    values: Sequence[Any]
    probabilities: Sequence[Mapping[str, float]] | None
    warnings: Sequence[str]


class ColumnRecords(Sequence[Mapping[str, Any]]):
    """Columns (the V2 protocol's tensors) read as records, one row at a time.

    The request path hands the log the columns as they are; rows are made only when the
    writer reads them, off the event loop.
    """

    def __init__(self, columns: Mapping[str, Sequence[Any]], rows: int) -> None:
        self.columns = columns
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.rows))]
        if not -self.rows <= index < self.rows:
            raise IndexError(index)
        return {name: column[index] for name, column in self.columns.items()}


__all__ = ["PREFIX", "ColumnRecords", "Logged", "is_prediction_id", "prediction_ids"]
