"""CSV injection: text cells a spreadsheet would run as formulas, prefixed with `'`.

`predict` and `log export` write CSV through `guard_formulas` unless told not to
(`--no-formula-guard`, for a program reading the file rather than a person).
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from tabship.config import NUMBER_TEXT

# OWASP's CSV-injection list: a spreadsheet runs a cell starting with one of these as a formula.
FORMULA_START = r"^[=+\-@\t\r]"
# "-3", "+1.5e3" or "-1.234,5" (a number as a CSV with decimal commas writes it, copied as
# written) is a number to a spreadsheet, not a formula: it stays as it is.
PLAIN_NUMBER = f"^(?:{NUMBER_TEXT}|[+-]?[0-9]+(?:[.,][0-9]+)*)$"


def guard_text(text: str) -> str:
    """One header cell with the same rule as `guard_formulas`."""
    flagged = re.match(FORMULA_START, text) and not re.match(PLAIN_NUMBER, text)
    return f"'{text}" if flagged else text


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _guard_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    flagged = pc.match_substring_regex(column, FORMULA_START)
    if not pc.any(flagged).as_py():  # the common case costs one vectorised scan
        return column
    flagged = pc.and_kleene(flagged, pc.invert(pc.match_substring_regex(column, PLAIN_NUMBER)))
    quote, nothing = pa.scalar("'", column.type), pa.scalar("", column.type)
    quoted = pc.binary_join_element_wise(quote, column, nothing)
    return pc.if_else(flagged, quoted, column)


def guard_formulas(table: pa.Table) -> pa.Table:
    """Prefix `'` to every string cell and column name a spreadsheet would run as a formula.

    Number columns are never touched, nor text that is a plain number ("-3").
    """
    columns = []
    for column in table.columns:
        kind = column.type
        if (pa.types.is_dictionary(kind) and _is_text(kind.value_type)) or _is_text(kind):
            # One layout for the kernels: dictionaries and string views become plain text.
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                column = column.cast(pa.large_string())
            column = _guard_column(column)
        columns.append(column)
    return pa.table(columns, names=[guard_text(name) for name in table.column_names])
