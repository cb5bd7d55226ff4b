"""How a class is written: as text in the model card, as its target's type in answers.

Pure Python: the serving path (answers, feedback) reads these without pandas.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tabship.config import NUMBER_TEXT
from tabship.feature import BOOL_SPELLINGS

_NUMBER = re.compile(NUMBER_TEXT)

# The JSON types a class is answered as (the card's `label_type`).
LABEL_TYPES = ("integer", "number", "boolean", "string")


def class_text(value: object, kind: str) -> str | None:
    """`value` as the text of its class in a card whose classes are of `kind`, or None.

    Training writes a whole-number class as `2` (a 0/1 column with a gap is read as floats),
    another number as Python writes a float (`2.5`), a boolean as `True`/`False`; feedback
    and training read a value by this one rule, so 2, 2.0 and "2" are one class.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and kind in ("integer", "number") and _NUMBER.fullmatch(value):
        value = float(value)  # "1.0" or "1e1" is the number a JSON 1.0 or 10 is
    if isinstance(value, int | float) and kind in ("integer", "number"):
        number = float(value)
        if not math.isfinite(number):
            return None
        if kind == "integer":
            return str(int(number)) if number.is_integer() and abs(number) < 2**53 else None
        return repr(number)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return BOOL_SPELLINGS.get(value, value) if kind == "boolean" else value
    return None


def typed_label(text: str, kind: str) -> Any:
    """A class's text as answers give it: 1 for a 0/1 target, true for a boolean one."""
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return text == "True"
    return text


def answer_key(text: str, kind: str) -> str:
    """A class's name where answers key by it (probabilities, columns, V2's classes): its
    label as JSON writes it, so a boolean target's `true` is keyed `true`, not `True`."""
    return text.lower() if kind == "boolean" else text
