"""--log-db values: the database URL a value names, the file an SQLite one names, and how it
is shown in messages.

sqlite:///PATH (a file, no query arguments: tabship sets the connection's options) and
postgresql://... (psycopg 3; postgres:// as some providers write it) are taken; anything else
is refused by name. A URL is never shown with its password or a secret query value.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tabship.errors import ConfigError


class LogDatabaseError(ConfigError):
    """The log database cannot be used as configured (bad URL, newer schema)."""


def engine_url(url: str) -> sa.URL:
    """The SQLAlchemy URL for a --log-db value; postgresql:// means psycopg 3."""
    if url.startswith("postgres://"):  # what Heroku and some providers hand out
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise LogDatabaseError(
            f"--log-db {redact(url)!r} is not a database URL; use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    if parsed.host and "@" in parsed.host:
        raise LogDatabaseError(
            f"--log-db {redact(url)!r}: an @ in the user name or password must be written %40"
        )
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise LogDatabaseError(
                "--log-db sqlite needs a file: sqlite:///relative.db or sqlite:////abs/path.db"
            )
        if parsed.query:  # the driver ignored most of them with a warning (`?mode=ro` wrote)
            names = ", ".join(repr(name[:40]) for name in sorted(parsed.query)[:5])
            raise LogDatabaseError(
                f"--log-db {redact(url)!r}: an SQLite log takes no query arguments ({names}); "
                "tabship sets the connection's options itself"
            )
        return parsed
    raise LogDatabaseError(
        f"--log-db {redact(url)!r}: the log database must be sqlite:///PATH or postgresql://..."
    )


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return shown_url(make_url(url))
    except (ArgumentError, ValueError):
        # Without an @ there is no user or password to hide: the text is shown as given (a
        # bare file path was said as "(unparseable URL)", leaving the user to guess).
        return url[:200] if "@" not in url else "(unparseable URL)"


# Query parameters holding secrets (libpq's password, sslpassword; a token of some proxies).
_SECRET_KEYS = ("password", "passwd", "secret", "token")


def shown_url(url: sa.URL) -> str:
    """`url` for messages: its password, and query values that are secrets, hidden."""
    query = {
        key: "***" if any(word in key.lower() for word in _SECRET_KEYS) else value
        for key, value in url.query.items()
    }
    host = url.host
    if host and "@" in host:  # an unescaped @ in the password: the part before it is secret too
        host = host.rsplit("@", 1)[1]
    shown = url.set(query=query, host=host).render_as_string(hide_password=True)
    return shown.replace("=%2A%2A%2A", "=***")


def shown_log_db(url: str) -> str:
    """A --log-db for the start line: an SQLite file by its absolute path (`sqlite:///tmp/x`
    is `./tmp/x`, relative, which the URL does not make plain), others redacted."""
    try:
        parsed = engine_url(url)
    except LogDatabaseError:
        return redact(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"sqlite:///{Path(parsed.database).resolve()}"
    return redact(url)


# The first bytes of every SQLite database file.
_SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_file(url: sa.URL, writing: bool) -> None:
    """Refuse a local file that cannot be the log now, not rows dropped for ever or a log
    made empty and read as 0 rows: a folder, a file that is not SQLite; for `writing` (a
    server) a file or folder that cannot be written (a missing folder is made), else (the
    commands that read a log) a file that is not there."""
    path = Path(str(url.database))
    where = f"--log-db {shown_url(url)}"
    if path.is_dir():
        raise LogDatabaseError(
            f"{where} is a folder; give the log's file, such as {path / 'log.db'}"
        )
    if writing:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise LogDatabaseError(f"{where}: its folder cannot be made ({reason})") from None
    head = _head(path, where)
    if head is None and not writing:
        raise LogDatabaseError(
            f"the log database {shown_url(url)} does not exist; check --log-db (a server given "
            "--log-db makes it on first use)"
        )
    if head and head != _SQLITE_HEADER:
        raise LogDatabaseError(
            f"{where} is a file that is not an SQLite database; it was left as it is"
        )
    if not writing:
        return
    # Said here: SQLite refused at the first write, and the server then queued its rows for
    # ever, retrying a database that can never take them.
    if head is not None and not os.access(path, os.W_OK):
        raise LogDatabaseError(
            f"{where} is read-only: the log cannot be written there; make the file writable "
            "by this user or give another --log-db"
        )
    if not os.access(path.absolute().parent, os.W_OK | os.X_OK):
        raise LogDatabaseError(
            f"{where}: its folder is read-only and cannot be written (SQLite makes the log's "
            "-wal and -shm files beside it); give a --log-db in a folder this user can write"
        )


def _head(path: Path, where: str) -> bytes | None:
    """The file's first bytes, as many as SQLite's header; None if there is no file."""
    try:
        with path.open("rb") as file:
            return file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LogDatabaseError(f"{where}: {exc.strerror or type(exc).__name__}") from None


def read_only_uri(path: Path) -> str:
    """The SQLite URI opening `path` read-only: every write fails, nothing is made in it."""
    where = path.absolute()
    uri = f"file:{quote(str(where))}?mode=ro"
    # A WAL log closed cleanly is one file; to read it SQLite makes its -wal and -shm beside
    # it, and refuses (SQLITE_READONLY_DIRECTORY) where the folder cannot be written, as a
    # copy on read-only storage. `immutable` reads it without them and without locks: a
    # server writing to it would have a -wal file open, so without one nobody is (a server
    # starting meanwhile writes to its -wal, not to the file read here, until a checkpoint).
    if not Path(f"{where}-wal").exists() and not os.access(where.parent, os.W_OK | os.X_OK):
        uri += "&immutable=1"
    return uri


def read_only_options(url: sa.URL) -> str:
    """libpq's `options` for sessions whose transactions are read-only, after the URL's own."""
    given = url.query.get("options", ())
    own = given if isinstance(given, str) else " ".join(given)
    return f"{own} -c default_transaction_read_only=on".strip()
