"""The library functions behind `tabship monitor` and `tabship log export`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from tabship.artifact import Artifact
from tabship.errors import ConfigError
from tabship.monitor.page import render_monitor, render_table
from tabship.monitor.profile import load_profile
from tabship.monitor.store import DatabaseDown, LogStore
from tabship.monitor.summary import MAX_ROWS, parse_since, summarize
from tabship.outputs import check_output_file, staged

FORMATS = ("table", "json", "html")


def _since(text: str) -> float:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _existing(store: LogStore) -> LogStore:
    """Refuse an SQLite file that is not there: these commands read a log, and a typo in
    --log-db made an empty one and reported 0 rows."""
    path = Path(str(store.url.database))
    if store.sqlite and path.is_dir():  # as `serve` says it
        raise ConfigError(
            f"--log-db {store.shown} is a folder; give the log's file, such as {path / 'log.db'}"
        )
    if store.sqlite and not path.is_file():
        raise ConfigError(
            f"the log database {store.shown} does not exist; check --log-db (a server given "
            "--log-db makes it on first use)"
        )
    return store


def _open(url: str) -> LogStore:
    store = _existing(LogStore(url))
    try:
        store.open()
    except DatabaseDown as exc:
        raise ConfigError(
            f"the log database {store.shown} cannot be reached: {str(exc).splitlines()[0][:200]}"
        ) from None
    return store


def migrate_log(url: str) -> int:
    """Move a log written by an earlier tabship to this schema; the predictions moved."""
    store = _existing(LogStore(url))
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
    if form not in FORMATS:
        raise ConfigError(f"--format {form!r}: choose one of {', '.join(FORMATS)}")
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


def export_log(model: Path, url: str, output: Path, since: str = "7d", force: bool = False) -> int:
    """Write the model's logged rows (inputs as columns, feedback joined) to Parquet or CSV."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from tabship.batch import guard_formulas

    suffix = output.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"-o {output.name}: the export is written as .parquet or .csv")
    check_output_file(output, force)
    artifact = Artifact.open(model)
    names = artifact.card.schema.names
    cutoff = _cutoff(since)  # the arguments are checked before the database is
    store = _open(url)
    try:
        rows = list(store.rows(artifact.card.sha256, cutoff, None))
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
    columns["prediction"] = [_cell(r.prediction) for r in rows]
    columns["warnings"] = ["; ".join(r.warnings) for r in rows]
    columns["latency_ms"] = [r.latency_ms for r in rows]
    columns["actual"] = [_cell(r.actual) for r in rows]
    table = pa.table({key: _array(values) for key, values in columns.items()})
    table = table.set_column(1, "time", table["time"].cast(pa.timestamp("us", "UTC")))
    try:
        with staged(output) as partial:
            if suffix == ".parquet":
                pq.write_table(table, partial)
            else:
                pacsv.write_csv(guard_formulas(table), partial)
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot be written ({_reason(exc)})") from None
    return len(rows)


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


def write_report(output: Path, text: str, force: bool) -> None:
    """The monitor report written to `output`, never over a file unless --force."""
    check_output_file(output, force)
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


def _cell(value: object) -> object:
    """Numbers and text stay as they are; anything else (a list) as JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return str(value) if isinstance(value, bool) else value
    return json.dumps(value)
