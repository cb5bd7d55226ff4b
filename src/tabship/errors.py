"""The one error root: every message names the bad value and says what to do."""

from __future__ import annotations

from dataclasses import dataclass


class TabshipError(Exception):
    """Base of every error tabship raises on purpose; the CLI prints it as one line.

    `status` is the HTTP status the server answers when the error reaches a request.
    """

    status = 400


class DatasetError(TabshipError):
    """A built-in dataset or a user table cannot be found, read or trusted."""


class DataError(TabshipError):
    """A table cannot be trained on (missing target, empty, one class, ...)."""


class ArtifactError(TabshipError):
    """A model folder is missing, tampered with, or made by incompatible versions."""


class ConfigError(TabshipError):
    """A setting (flag or TABSHIP_* variable) has a value that cannot be used."""


class EngineError(TabshipError):
    """The inference engine failed or answered nonsense: the server's fault, not the client's."""

    status = 500


class InternalError(TabshipError):
    """Something failed that no input should make fail; the details go to the server log."""

    status = 500


class RequestError(TabshipError):
    """An HTTP request the server refuses before validation; carries its status code."""

    status = 400


class BodyTooLargeError(RequestError):
    """The body or the batch is over its limit."""

    status = 413


class MediaTypeError(RequestError):
    """The body is not of a content type the route takes."""

    status = 415


class ExpectationFailedError(RequestError):
    """An `Expect:` header asks for something other than `100-continue` (RFC 9110 10.1.1)."""

    status = 417


class MethodNotImplementedError(RequestError):
    """A method the server does not know at all (RFC 9110 15.6.2); a known one not taken
    on a path is 405."""

    status = 501


class VersionNotSupportedError(RequestError):
    """A request line of an HTTP version other than 1.x (HTTP/2.0 without its framing)."""

    status = 505


class MalformedBodyError(RequestError):
    """The body is not valid JSON (or UTF-8), or not of the expected shape."""

    status = 422


class RequestTimeoutError(RequestError):
    """The request took longer than the server's request timeout."""

    status = 504


class BadHostError(RequestError):
    """The Host header is not one the server was told to answer (--allowed-hosts)."""

    status = 400


class UnauthorizedError(RequestError):
    """The route needs an API key and the request has none, or not an accepted one."""

    status = 401


class NotFoundError(RequestError):
    """No route has this path."""

    status = 404


class MethodNotAllowedError(RequestError):
    """The path exists, but not for this method; `allow` lists the methods it takes."""

    status = 405

    def __init__(self, message: str, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class ReadTimeoutError(RequestError):
    """The client did not send its headers or body within the read timeout."""

    status = 408


class HeadersTooLargeError(RequestError):
    """The request line and headers are over the header size limit."""

    status = 431


class RetryLaterError(RequestError):
    """Not now, but soon: 503 with a Retry-After of `retry_after` seconds."""

    status = 503
    retry_after = 1


class BusyError(RetryLaterError):
    """Every concurrency slot is taken: answered at once, with Retry-After, never queued."""


class NotExplainableError(RequestError):
    """The model folder holds no explanation baseline (trained before tabship sealed one)."""

    status = 409


class OutputExistsError(TabshipError):
    """Refusing to overwrite something the user already has."""


@dataclass(frozen=True)
class Problem:
    """One bad field of one record."""

    field: str
    message: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"row {self.row}: " if self.row is not None else ""
        return f"{where}{shown_field(self.field)}: {self.message}"


def shown_field(name: str) -> str:
    """A field's name in a message: as it is, or quoted when it would not read as itself
    (spaces at its ends, a line break, nothing at all)."""
    if name and name.isprintable() and name == name.strip():
        return name
    return repr(name)


class RecordError(TabshipError):
    """Records do not match the model's schema; lists every bad field at once."""

    def __init__(self, problems: list[Problem], more: int = 0, source: str = "") -> None:
        self.problems = problems
        # Problems found past the listed ones (a file's: 5,000 bad rows are not all listed).
        self.more = more
        # The file the records came from, named before each problem (`new.csv: row 2: ...`).
        self.source = source
        tail = [f"and {more} more problems"] if more else []
        super().__init__("; ".join([*self.lines, *tail]))

    @property
    def lines(self) -> list[str]:
        """One line per problem, each naming the file when there is one."""
        where = f"{self.source}: " if self.source else ""
        return [f"{where}{problem}" for problem in self.problems]
