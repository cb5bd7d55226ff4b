"""--log-db values: the database URL a value names, and how it is shown in messages.

sqlite:///PATH (a file, no query arguments: tabship sets the connection's options) and
postgresql://... (psycopg 3; postgres:// as some providers write it) are taken; anything else
is refused by name. A URL is never shown with its password or a secret query value.
"""

from __future__ import annotations

from pathlib import Path

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
