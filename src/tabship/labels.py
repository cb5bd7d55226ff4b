"""The target as the model learns it: the task, the classes, their order, type and weight.

Classes are text in the card; how they are spelled, ordered and answered is decided here
once, from the column as the file wrote it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tabship.candidates import Task
from tabship.classes import class_text
from tabship.errors import DataError
from tabship.feature import BOOL_SPELLINGS, listed, rows_text

CLASSIFICATION_MAX_INTEGER_LEVELS = 10
# Below this ratio of the rarest to the commonest class, classes are weighted by inverse
# frequency where the model allows, so the majority cannot win by being ignored.
IMBALANCE_RATIO = 0.5


def infer_task(target: pd.Series) -> Task:
    """Regression for numbers with many values, classification for labels and small codes."""
    kind = target.dtype.kind
    if kind not in "iuf":
        return "classification"
    values = target.dropna().to_numpy(dtype=np.float64)
    integral = bool(np.all(values == np.round(values)))
    distinct = len(np.unique(values))
    if integral and distinct <= CLASSIFICATION_MAX_INTEGER_LEVELS:
        return "classification"
    return "regression"


def text_numbers_problem(
    y_raw: pd.Series, target: str, file_rows: np.ndarray, regression: bool
) -> str | None:
    """Why a text target that is numbers to the eye cannot be a regression target, naming the
    cells in the way, or None. Inferred, such a column was a classification with one class
    per row ("class '33.14' has 2 rows"), so it is said when it has many distinct values;
    with --task regression it is always said. `file_rows` numbers each row as the file does.
    """
    from tabship.profile import DRESSED_NUMBER, NUMBER_SHARE, plain_numbers

    if y_raw.dtype.kind in "iufb":
        return None
    text = y_raw.astype(str)
    if not regression and text.nunique() <= CLASSIFICATION_MAX_INTEGER_LEVELS:
        return None  # a few codes and labels: classes
    # A decimal comma is a number here too: a German file's `12,57` beside its `#NV`.
    plain = plain_numbers(text, ",").to_numpy(dtype=bool)
    advice = "; or pass --task classification to predict its text as labels" if regression else ""
    if plain.mean() >= NUMBER_SHARE:
        odd = np.flatnonzero(~plain)
        cells = ", ".join(f"row {file_rows[i] + 1} {text.iloc[i][:20]!r}" for i in odd[:3])
        more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
        return (
            f"target column {target!r} holds numbers but for {len(odd)} cells ({cells}{more}): "
            f"empty those cells (their rows are then left out) or write the numbers{advice}"
        )
    if text.str.fullmatch(DRESSED_NUMBER.pattern).mean() >= NUMBER_SHARE:
        return (
            f"target column {target!r} holds numbers written with signs or separators (such "
            f"as {text.iloc[0][:20]!r}): write them as plain numbers (1234.5){advice}"
        )
    if regression:
        first = int(np.flatnonzero(~plain)[0])
        return (
            f"target column {target!r} is not numeric (row {file_rows[first] + 1} holds "
            f"{text.iloc[first][:40]!r}), so it cannot be a regression target; use --task "
            "classification to predict it as a label"
        )
    return None


_POSITIVE_WORDS = frozenset({"1", "yes", "y", "true", "t"})
_YES_NO_PAIRS = ({"-1", "1"}, {"yes", "no"}, {"y", "n"}, {"true", "false"}, {"t", "f"})


def _positive_second(classes: list[str], text: pd.Series, positive: str | None) -> list[str]:
    """Two classes with the positive one second, the one F1, precision and recall score
    (scikit-learn's binary average): as asked, else 1 or True (sorted second already), else
    the yes of a yes/no pair (`1` of -1/1, `Yes`, `y`), else the rarer: "fraud" sorted before
    "ok" and F1 scored the 99% of rows that were fine."""
    if positive is None:
        if set(classes) in ({"0", "1"}, {"False", "True"}):
            return classes
        # The yes of a pair written as one: 1 of -1/1, Yes of Yes/No, y of y/n.
        yes = [c for c in classes if c.strip().casefold() in _POSITIVE_WORDS]
        if len(yes) == 1 and {c.strip().casefold() for c in classes} in _YES_NO_PAIRS:
            return [classes[0] if yes[0] == classes[1] else classes[1], yes[0]]
        counts = text.value_counts()
        rarer = str(counts.idxmin())
        positive = classes[1] if counts[classes[0]] == counts[classes[1]] else rarer
    return [classes[0] if positive == classes[1] else classes[1], positive]


def encode_target(
    y_raw: pd.Series, task: Task, target: str, folds: int, positive: str | None = None
) -> tuple[np.ndarray, list[str]]:
    """The target as numbers to fit (class indexes for classification) and the classes."""
    if task == "regression":
        if positive is not None:
            raise DataError(f"--positive-class is for two classes; {target!r} is a regression")
        if y_raw.dtype.kind not in "iuf":
            example = y_raw.iloc[0]
            raise DataError(
                f"target column {target!r} is not numeric (e.g. {example!r}), so it cannot be "
                f"a regression target; use --task classification to predict it as a label"
            )
        return y_raw.to_numpy(dtype=np.float64), []
    text = _label_text(y_raw)
    classes = sorted(text.unique(), key=_class_order(y_raw))
    if positive is not None and positive not in classes:
        # 20.0 for a class 20, true for a class True: as feedback reads a class.
        positive = class_text(positive, label_type(y_raw)) or positive
        positive = BOOL_SPELLINGS.get(positive, positive)
    if positive is not None and positive not in classes:
        raise DataError(
            f"--positive-class {positive!r} is not a class of {target!r}; the classes are "
            f"{listed(classes)}"
        )
    if len(classes) == 2:
        classes = _positive_second(classes, text, positive)
    elif positive is not None:
        raise DataError(
            f"--positive-class is for two classes; {target!r} has {len(classes)}, whose F1, "
            "precision and recall are averaged by class size"
        )
    if len(classes) < 2:
        raise DataError(
            f"target column {target!r} has one class ({classes[0]!r}); classification needs at least two"
        )
    counts = text.value_counts()
    rare = counts[counts < folds]
    if len(rare):
        raise DataError(
            f"class {rare.index[0]!r} of {target!r} has {rows_text(int(rare.iloc[0]))}, fewer than "
            f"the {folds} CV folds; add rows, merge rare classes, or lower --folds"
        )
    return text.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64), classes


# A regression target whose standard deviation is below this is said to be: a tree's node
# stops splitting when its variance is under float64's epsilon (scikit-learn's criterion),
# so every tree model answers one constant and a linear one wins by default.
SMALL_SPREAD = 1e-6


def small_spread_note(values: np.ndarray, target: str) -> list[str]:
    """A note when a regression target varies too little for tree models to split on."""
    spread = float(np.std(values))
    if not 0 < spread < SMALL_SPREAD:
        return []
    return [
        f"{target!r} varies by about {spread:.1g} (its standard deviation): tree models cannot "
        f"split on differences this small and answer one constant; multiply it (by "
        f"{10 ** -math.floor(math.log10(spread)):.0e}, say) and divide the predictions to use them"
    ]


# A regression target's value this many times its interquartile range from its median is
# said: six values of 1e9 to 1e12 among values near 10 made every prediction about -1e9.
EXTREME_IQRS = 100


def extreme_values_note(values: np.ndarray, target: str) -> list[str]:
    """A note when a few regression target values lie far outside the rest."""
    finite = values[np.isfinite(values)]
    if len(finite) < 10:
        return []
    low, median, high = np.percentile(finite, [25, 50, 75])
    distance = np.abs(finite - median)
    far = int(np.sum(distance > EXTREME_IQRS * (high - low))) if high > low else 0
    if not far:
        return []
    farthest = float(finite[np.argmax(distance)])
    return [
        f"{far} value{'s' if far != 1 else ''} of {target!r} lie more than {EXTREME_IQRS} times "
        f"the spread of its middle half from its median ({median:.4g}; the farthest "
        f"{farthest:.4g}): such values dominate squared error and every model's fit; check "
        "them for typos or unit mix-ups"
    ]


_YES = frozenset({"yes", "y", "true", "t", "1", "1.0"})
_NO = frozenset({"no", "n", "false", "f", "0", "0.0"})


def class_spellings_note(classes: list[str], target: str) -> list[str]:
    """A note when classes differ only in case or spaces (`Cat`, `cat`, `cat `) or are yes
    and no written several ways (`Y`, `TRUE`, `1`): kept apart, as written, but said, since
    a two-class problem became one of twelve without a word."""
    keys = [str(label).strip().casefold() for label in classes]
    # A word among them (`yes`, `TRUE`): `F`, `N` and `T` alone may be three real classes.
    worded = any(len(key) > 1 and not key.replace(".", "").isdigit() for key in keys)
    if (
        len(classes) > 2
        and worded
        and set(keys) <= _YES | _NO
        and set(keys) & _YES
        and set(keys) & _NO
    ):
        shown = ", ".join(repr(str(label)[:20]) for label in classes[:8])
        return [
            f"{target!r} is yes or no written {len(classes)} ways ({shown}"
            f"{', ...' if len(classes) > 8 else ''}), each its own class: write it one way "
            "(yes/no) for a two-class model"
        ]
    groups: dict[str, list[str]] = {}
    for key, label in zip(keys, classes, strict=True):
        groups.setdefault(key, []).append(str(label))
    alike = [group for group in groups.values() if len(group) > 1]
    if not alike:
        return []
    shown = "; ".join(", ".join(repr(label[:20]) for label in group[:4]) for group in alike[:3])
    more = f" and {len(alike) - 3} more groups" if len(alike) > 3 else ""
    return [
        f"classes of {target!r} that differ only in case or spaces are kept apart ({shown}"
        f"{more}): write each class one way if they are one"
    ]


def label_type(y_raw: pd.Series) -> str:
    """The JSON type a class is answered as: a 0/1 target's classes are 0 and 1, a boolean
    target's true and false (they were "1" and "True": `y == predicted_y` never held)."""
    kind = y_raw.dtype.kind
    if kind in "iu" and len(y_raw) and np.abs(y_raw.to_numpy()).max() >= 2**53:
        # Codes past a float's whole numbers (9007199254740993): as text, exact; as numbers
        # two codes became one class, and a third one no row held.
        return "string"
    if kind in "iuf":
        values = y_raw.dropna().to_numpy(dtype=np.float64)
        whole = np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53)
        return "integer" if whole else "number"
    if kind == "b" or (kind == "O" and all(isinstance(v, bool) for v in y_raw.dropna())):
        return "boolean"
    return "string"


def _label_text(y_raw: pd.Series) -> pd.Series:
    """Each class's text, by `classes.class_text` (a 0/1 column with a gap is read as
    floats, and its classes were "0.0" and "1.0"); whole numbers at once, as numpy."""
    kind = label_type(y_raw)
    if kind == "integer":
        values = y_raw.to_numpy(dtype=np.float64)
        return pd.Series(values.astype(np.int64), index=y_raw.index).astype(str)
    if kind == "number":
        return y_raw.map(lambda value: class_text(value, kind))
    return y_raw.astype(str)


def _class_order(y_raw: pd.Series) -> Callable[[str], Any]:
    """Numbers in numeric order (2 before 10), an ordered category in its own order (lo,
    mid, hi), other classes by their text."""
    if y_raw.dtype.kind in "iuf":
        return float
    if isinstance(y_raw.dtype, pd.CategoricalDtype) and y_raw.dtype.ordered:
        place = {str(level): index for index, level in enumerate(y_raw.dtype.categories)}
        return lambda text: place.get(text, len(place))
    return str


def target_as_written(
    frame: pd.DataFrame, target: str, written: pd.Series | None, notes: list[str]
) -> pd.DataFrame:
    """A text target with the cells pandas read as missing (`NA`, `None`, `null`, ...) back
    as the file wrote them: a class "NA" (North America) was dropped with a third of the
    rows as "empty targets". Said, since such a cell may mean unknown."""
    parsed = frame[target]
    if written is None or parsed.dtype.kind in "iufb" or len(written) != len(parsed):
        return frame
    spelled = parsed.isna().to_numpy() & (written.str.strip() != "").to_numpy()
    if not spelled.any():
        return frame
    kept = written.where(spelled)
    notes.append(
        f"{int(spelled.sum())} rows of {target!r} hold {listed(sorted(kept.dropna().unique()))}, "
        "which pandas reads as missing; kept as classes (blank those cells if they mean unknown)"
    )
    return frame.assign(**{target: parsed.where(~spelled, kept)})


def is_imbalanced(task: Task, labels: np.ndarray) -> bool:
    """Whether the rarest class is under IMBALANCE_RATIO of the commonest."""
    if task != "classification":
        return False
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return bool(counts.min() / counts.max() < IMBALANCE_RATIO)
