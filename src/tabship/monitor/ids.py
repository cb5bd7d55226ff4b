"""Prediction ids and what a request hands the log: light, so the request path imports no database."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

# One random prefix per process and a counter: unique across workers and pods, and a few
# hundred nanoseconds to make (a uuid4 per row would cost more than the log itself).
_PREFIX = secrets.token_hex(6)
_COUNTER = itertools.count(1)


def prediction_ids(count: int) -> list[str]:
    """`count` new prediction ids."""
    if count == 1:
        return [f"{_PREFIX}-{next(_COUNTER):x}"]
    return [f"{_PREFIX}-{next(_COUNTER):x}" for _ in range(count)]


class Logged(NamedTuple):
    """What one request predicted, as the request path hands it over (no copies, no JSON).

    A tuple, because it is made once per prediction request on the event loop.
    """

    ids: Sequence[str]
    records: Sequence[Mapping[str, Any]]
    values: Sequence[Any]
    probabilities: Sequence[Mapping[str, float]] | None
    warnings: Sequence[str]


__all__ = ["Logged", "prediction_ids"]
