"""The library functions behind `tabship monitor` and `tabship log export`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, NamedTuple

from tabship.artifact import Artifact
from tabship.card import ModelCard
from tabship.classes import class_text, typed_label
from tabship.errors import ConfigError
from tabship.feature import shown
from tabship.monitor.logurl import LogDatabaseError, check_sqlite_file
from tabship.monitor.page import render_monitor, render_table
from tabship.monitor.profile import load_profile
from tabship.monitor.store import DatabaseDown, LogStore
from tabship.monitor.summary import MAX_ROWS, other_models_note, parse_since, summarize
from tabship.outputs import check_output_file, staged

FORMATS = ("table", "json", "html")


def _since(text: str) -> float:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _open(url: str, schema: bool = True) -> LogStore:
    """The log, opened read-only: these commands only read, and once made tabship's tables
    (and reported 0 rows) in any database --log-db named, a typo's new file or another
    application's. An SQLite file that is not there is refused, not made. `schema`: its
    version checked too, else only that it is a tabship log."""
    store = LogStore(url, read_only=True)
    try:
        if store.sqlite:
            check_sqlite_file(store.url, writing=False)
        if schema:
            store.open()
        else:
            store.log_tables()
    except DatabaseDown as exc:
        store.close()
        raise ConfigError(
            f"the log database {store.shown} cannot be reached: {str(exc).splitlines()[0][:200]}"
        ) from None
    except LogDatabaseError:
        store.close()
        raise
    return store


def migrate_log(url: str) -> int:
    """Move a log written by an earlier tabship to this schema; the predictions moved."""
    _open(url, schema=False).close()  # a database that is not a log is not made one
    store = LogStore(url)
    try:
        return store.migrate()
    except DatabaseDown as exc:
        raise ConfigError(
            f"the log database {store.shown}: {str(exc).splitlines()[0][:300]}; nothing was "
            "changed (the move is one transaction)"
        ) from None
    finally:
        store.close()


def monitor_report(
    model: Path, url: str, since: str = "7d", form: str = "table", max_rows: int = MAX_ROWS
) -> str:
    """Drift, traffic and live scores over the whole log (every pod), as table, JSON or HTML."""
    if form.lower() not in FORMATS:
        raise ConfigError(f"--format {shown(form)}: choose one of {', '.join(FORMATS)}")
    form = form.lower()
    artifact = Artifact.open(model)
    window = _since(since)  # the arguments are checked before the database is
    store = _open(url)
    try:
        summary = summarize(store, artifact.card, load_profile(artifact), window, max_rows)
    finally:
        store.close()
    if form == "json":
        return json.dumps(summary.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if form == "html":
        return render_monitor(summary, artifact.card, artifact.card.title, since)
    return render_table(summary)


class Exported(NamedTuple):
    """What an export wrote: its rows, and what the log holds instead when that is none."""

    rows: int
    note: str = ""


def export_log(
    model: Path,
    url: str,
    output: Path,
    since: str = "7d",
    force: bool = False,
    formula_guard: bool = True,
) -> Exported:
    """Write the model's logged rows (inputs as columns, feedback joined) to Parquet or CSV."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from tabship.formulas import guard_formulas

    suffix = output.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"-o {output.name}: the export is written as .parquet or .csv")
    check_output(output, force)
    card = Artifact.open(model).card
    names = card.schema.names
    cutoff = _cutoff(since)  # the arguments are checked before the database is
    store = _open(url)
    try:
        rows = list(store.rows(card.sha256, cutoff, None))
        note = "" if rows else other_models_note(store, card.sha256, cutoff)
    finally:
        store.close()
    rows.reverse()  # oldest first, as a log reads
    columns: dict[str, list[object]] = {
        "id": [r.id for r in rows],
        "time": [int(r.ts * 1e6) for r in rows],
        "route": [r.route for r in rows],
    }
    inputs = input_columns(names)
    for name in names:
        columns[inputs[name]] = [_cell(r.input.get(name)) for r in rows]
    arrays = {key: _array(values) for key, values in columns.items()}
    arrays["prediction"] = _labels([r.prediction for r in rows], card)
    arrays["warnings"] = _array(["; ".join(r.warnings) for r in rows])
    arrays["latency_ms"] = _array([r.latency_ms for r in rows])
    arrays["actual"] = _labels([r.actual for r in rows], card)
    table = pa.table(arrays)
    table = table.set_column(1, "time", table["time"].cast(pa.timestamp("us", "UTC")))
    try:
        with staged(output) as partial:
            if suffix == ".parquet":
                pq.write_table(table, partial)
            else:
                pacsv.write_csv(guard_formulas(table) if formula_guard else table, partial)
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot be written ({_reason(exc)})") from None
    return Exported(len(rows), note)


# The export's own columns, beside the model's features.
LOG_COLUMNS = ("id", "time", "route", "prediction", "warnings", "latency_ms", "actual")


def input_columns(names: list[str]) -> dict[str, str]:
    """Each feature's column in the export: its name, or `input.NAME` when the log has a
    column of that name (a feature called `id` or `time` must not replace the log's)."""
    taken = set(LOG_COLUMNS) | set(names)
    out = {}
    for name in names:
        column = name
        if name in LOG_COLUMNS:
            column = f"input.{name}"
            while column in taken:
                column = f"input.{column}"
            taken.add(column)
        out[name] = column
    return out


def check_output(output: Path, force: bool) -> None:
    """Refuse an output file as every command does, and one below a file (`staged` made its
    folders, and a file where a folder goes was said as 'File exists')."""
    check_output_file(output, force)
    for parent in output.parents:
        if parent.is_dir():
            return
        if parent.exists() or parent.is_symlink():
            raise ConfigError(f"-o {output}: {parent} is a file, not a folder")


def write_report(output: Path, text: str, force: bool) -> None:
    """The monitor report written to `output`, never over a file unless --force."""
    check_output(output, force)
    try:
        with staged(output) as partial:
            partial.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot be written ({_reason(exc)})") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _array(values: list[object]) -> object:
    """An Arrow column. Numbers holding an integer past 64 bits become float64, as the model
    read them (the log keeps them exact): as text, one such request turned the whole column
    into strings. A column of numbers and text mixed becomes text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    numbers = [v for v in values if isinstance(v, int | float)]
    if len(numbers) == sum(v is not None for v in values):
        with contextlib.suppress(OverflowError):  # past float64 too: text, exact
            floats = iter(map(float, numbers))
            return pa.array([None if v is None else next(floats) for v in values], pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _cutoff(since: str) -> float:
    import time

    return time.time() - _since(since)


def _labels(values: list[Any], card: ModelCard) -> object:
    """The prediction or actual column in the target's own type, as the API answers it:
    float64 for regression, else the class's (card.label_type: int64, float64, bool, text).
    Feedback is stored as the class's text ('"1"' for a 0/1 target): exported so, next to an
    int64 prediction, no row compared equal. A value that is not a class of the model (an
    answer an early server stored for another model's id) keeps the column as text."""
    import pyarrow as pa

    if card.task == "regression":
        kind, typed = "number", [_number(value) for value in values]
    else:
        kind = card.label_type
        texts = [class_text(value, kind) for value in values]
        typed = [typed_label(t, kind) if t in card.classes else None for t in texts]
    if any(v is not None and label is None for v, label in zip(values, typed, strict=True)):
        return _array([_cell(value) for value in values])
    types = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
    return pa.array(typed, types.get(kind, pa.string()))


def _number(value: object) -> float | None:
    """A regression's value as a float; None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _cell(value: object) -> object:
    """Numbers and text stay as they are; anything else (a list) as JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return str(value) if isinstance(value, bool) else value
    return json.dumps(value)
