"""Settings: the only place that reads TABSHIP_* environment variables."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tabship.errors import ConfigError, TabshipError

# Pods of a sharded batch job at most (`--shards`, `--shard I/N`): each shard's plan holds a
# list per shard, so a count of 10**30 never finished planning.
MAX_SHARDS = 100_000


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "tabship"


@dataclass(frozen=True)
class Settings:
    """Resolved settings: flag > TABSHIP_* variable > named default."""

    data_home: Path | None
    cache_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the TABSHIP_* variables (or the given mapping, for tests)."""
        env = os.environ if env is None else env
        data_home = env.get("TABSHIP_DATA_HOME")
        cache_dir = env.get("TABSHIP_CACHE_DIR")
        return cls(
            data_home=Path(data_home) if data_home else None,
            cache_dir=Path(cache_dir) if cache_dir else _default_cache_dir(env),
        )


def _number(env: Mapping[str, str], field: str, default: float | None) -> float | None:
    """The TABSHIP_* variable of a `SERVE_NUMBERS` field, checked, or `default` when unset.
    Written as the flag takes it: ASCII digits (`float` also read `1e3`, `1_000` and other
    scripts' digits for a port), a decimal point and exponent only where fractions make sense."""
    name = f"TABSHIP_{field.upper()}"
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    whole = SERVE_NUMBERS[field][2]
    if not (_WHOLE if whole else _DECIMAL).fullmatch(raw.strip()):
        kind = "a whole number (digits 0-9)" if whole else "a number such as 2.5"
        raise ConfigError(f"{name}={raw!r} is not {kind}")
    value = float(raw)
    problem = number_problem(field, value)
    if problem:
        raise ConfigError(f"{name}={raw!r} {problem}")
    return int(raw) if whole else value


# A number as JSON and CSV write it, in ASCII digits: the one grammar for a variable, a form
# field or a cell (`float()` also reads `1_000`, `inf` and other scripts' digits).
NUMBER_TEXT = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_WHOLE = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(NUMBER_TEXT)


def number_problem(field: str, value: float) -> str | None:
    """What is wrong with `value` for a `SERVE_NUMBERS` field, or None."""
    least, most, whole = SERVE_NUMBERS[field]
    if isinstance(value, bool) or not math.isfinite(value):
        return "is not a finite number"
    if whole and value != int(value):
        return "must be a whole number"
    if not least <= value <= most:
        shown = f"from {least:g} to {most:g}" if most < math.inf else f"at least {least:g}"
        return f"must be {shown}"
    return None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value; use 1 or 0")


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    names = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    if raw.strip() and not names:  # `,,,`: meant to restrict, it would have allowed any host
        raise ConfigError(f"{name}={raw!r} names no host; leave it unset to answer any")
    return names


# An --allowed-hosts entry: a host name or IPv4 address, an IPv6 address (bracketed or not),
# `.example.com` (the domain and its subdomains) or `*` (any), as Django's ALLOWED_HOSTS.
_HOST_ENTRY = re.compile(
    r"\*|\.?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[?[0-9a-f.]*:[0-9a-f.]*:[0-9a-f:.]*\]?"
)


def check_allowed_hosts(entries: tuple[str, ...], where: str) -> None:
    """Refuse an entry no Host header can match: a port (the Host's is not compared), a
    pattern other than `.domain` and `*`, spaces or other characters."""
    for entry in entries:
        if not _HOST_ENTRY.fullmatch(entry):
            hint = (
                "give the name without its port"
                if re.fullmatch(r"[^:]+:[0-9]*", entry)
                else "give a host name, an address, .example.com (with subdomains) or *"
            )
            raise ConfigError(f"{where} entry {entry[:60]!r}: {hint}")


def trust_from_env(env: Mapping[str, str] | None = None) -> Path | None:
    """TABSHIP_TRUST: the public key a model's signature must verify with, if any."""
    raw = (os.environ if env is None else env).get("TABSHIP_TRUST")
    return Path(raw) if raw else None


def named_variable(name: str, env: Mapping[str, str] | None = None) -> str:
    """A variable the user named on the command line (a key's password, say), or ConfigError."""
    if not name.strip():
        raise ConfigError("the environment variable's name is empty; give the name of one")
    value = (os.environ if env is None else env).get(name)
    if value is None:
        raise ConfigError(f"the environment variable {name} is not set")
    return value


def strict_categories_from_env(env: Mapping[str, str] | None = None) -> bool:
    """TABSHIP_STRICT_CATEGORIES for commands other than serve (tabship predict)."""
    return _flag(os.environ if env is None else env, "TABSHIP_STRICT_CATEGORIES", False)


def log_db_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """TABSHIP_LOG_DB for the commands that read the log (monitor, log export, demo)."""
    return (os.environ if env is None else env).get("TABSHIP_LOG_DB") or None


def dask_scheduler_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """TABSHIP_DASK_SCHEDULER: the Dask scheduler `tabship train` uses without --cluster."""
    value = (os.environ if env is None else env).get("TABSHIP_DASK_SCHEDULER", "").strip()
    return value or None


def shard_index_from_env(env: Mapping[str, str] | None = None) -> int | None:
    """JOB_COMPLETION_INDEX, which Kubernetes sets in each pod of an Indexed Job."""
    raw = (os.environ if env is None else env).get("JOB_COMPLETION_INDEX", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigError(f"JOB_COMPLETION_INDEX={raw!r} is not a shard number such as 0")
    return int(raw)


# The numbers `tabship serve` takes, by field: least, most, whole. One table for the flags
# and the TABSHIP_* variables (the variable is the field's name in capitals): port 70000 was
# bound as 4464, 0 workers served nothing, NaN (false in every comparison) was taken.
SERVE_NUMBERS: dict[str, tuple[float, float, bool]] = {
    "port": (0, 65535, True),
    "workers": (1, 1024, True),
    "max_batch": (1, math.inf, True),
    "max_body_bytes": (1024, math.inf, True),
    "max_concurrency": (1, math.inf, True),
    # Seconds, up to an hour of draining and a day of waiting: 1e300 never ended.
    "drain_delay": (0, 3600, False),
    "graceful_timeout": (0, 86400, False),
    "request_timeout": (0.001, 86400, False),
    "read_timeout": (0.001, 86400, False),
    "max_header_bytes": (1024, math.inf, True),
    # 0 keeps every row, as leaving it unset does.
    "log_retention_days": (0, math.inf, False),
    "log_queue_rows": (1, math.inf, True),
    "log_wait_seconds": (0, math.inf, False),
    "drift_seconds": (0.1, math.inf, False),
}
# Fields set by a variable only (no flag of `tabship serve`).
_VARIABLE_ONLY = frozenset({"log_queue_rows", "log_wait_seconds", "drift_seconds"})


# The variables read besides the serve settings' own (TABSHIP_<FIELD>, see `resolve`); the
# test suite's TABSHIP_TEST_* are its own.
_OTHER_VARIABLES = frozenset(
    {"TABSHIP_DATA_HOME", "TABSHIP_CACHE_DIR", "TABSHIP_DASK_SCHEDULER", "TABSHIP_MODEL"}
)


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """A warning per TABSHIP_* variable that nothing reads: a misspelt TABSHIP_KEYS_FILE
    served every route without keys, and nothing said so."""
    from tabship.feature import closest

    known = sorted(
        {f"TABSHIP_{f.name.upper()}" for f in fields(ServeSettings) if f.name != "from_variables"}
        | _OTHER_VARIABLES
    )
    found = []
    for name in sorted(os.environ if env is None else env):
        if (
            name.startswith("TABSHIP_")
            and not name.startswith("TABSHIP_TEST_")
            and name not in known
        ):
            shown = name if name.isascii() and name.isidentifier() else repr(name)
            meant = closest(name, known)
            found.append(
                f"{shown[:80]} is not a tabship variable; ignored"
                + (f" (did you mean {meant}?)" if meant else "")
            )
    return found


@dataclass(frozen=True)
class ServeSettings:
    """How `tabship serve` runs; every field is also a TABSHIP_* variable."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_batch: int = 1000
    max_body_bytes: int = 1024 * 1024
    max_concurrency: int = 64
    drain_delay: float = 2.0
    graceful_timeout: float = 20.0
    request_timeout: float = 30.0
    # A client must deliver its headers and body within this many seconds (408 after).
    read_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    engine: str | None = None
    strict_categories: bool = False
    # Host header values answered; empty means any (a pod behind a load balancer sees many).
    allowed_hosts: tuple[str, ...] = ()
    # The model's name in the Open Inference Protocol's paths; None: the model folder's name.
    model_name: str | None = None
    # API keys: a file of keys or `sha256:HEX` lines; None serves every route without a key.
    api_keys_file: Path | None = None
    protect_metrics: bool = False
    public_pages: bool = False
    # 422 answers name the wrong fields only, not the allowed values or ranges.
    generic_errors: bool = False
    # A public key (PEM): the model folder must carry a signature made with its private key.
    trust: Path | None = None
    # The prediction log: sqlite:///PATH or postgresql://...; None logs nothing.
    log_db: str | None = None
    log_retention_days: float | None = None
    # Rows waiting for the database before new ones are dropped (and counted).
    log_queue_rows: int = 50_000
    # Longest a batch answer waits for a log writer that fell behind (0: never; rows past
    # the queue's bound are then dropped sooner).
    log_wait_seconds: float = 0.5
    # Seconds between refreshes of this process's drift gauges.
    drift_seconds: float = 30.0
    # The fields whose value came from their TABSHIP_* variable, so that an error found later
    # (a log URL, a model name) names the variable the user set rather than its flag.
    from_variables: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        """Refuse a number out of `SERVE_NUMBERS`' bounds (a flag's: the variables were
        checked as they were read), naming its flag."""
        for field in SERVE_NUMBERS:
            value = getattr(self, field)
            problem = None if value is None else number_problem(field, value)
            if problem:
                name = (
                    f"TABSHIP_{field.upper()}"
                    if field in _VARIABLE_ONLY
                    else f"--{field.replace('_', '-')}"
                )
                shown = str(value) if isinstance(value, int) else f"{value:g}"
                raise ConfigError(f"{name} {shown} {problem}")
        if not self.host.strip():  # uvicorn bound '' to every interface, IPv4 and IPv6
            raise ConfigError(
                "--host '' is not an address; give 127.0.0.1 (this machine only, the default) "
                "or 0.0.0.0 (every interface)"
            )
        check_allowed_hosts(self.allowed_hosts, "--allowed-hosts")

    @classmethod
    def resolve(
        cls, flags: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None
    ) -> ServeSettings:
        """Flag (when given, not None) > TABSHIP_* variable > default."""
        given: dict[str, Any] = {
            key: value for key, value in (flags or {}).items() if value is not None
        }
        # A variable is read only for a field its flag leaves unset: the flag wins, even over
        # a variable that would be refused.
        env = {
            key: value
            for key, value in (os.environ if env is None else env).items()
            if key.removeprefix("TABSHIP_").lower() not in given
        }
        defaults = cls()
        numbers: dict[str, Any] = {
            field: _number(env, field, getattr(defaults, field)) for field in SERVE_NUMBERS
        }
        allowed = _names(env, "TABSHIP_ALLOWED_HOSTS")
        check_allowed_hosts(allowed, "TABSHIP_ALLOWED_HOSTS")
        from_env = cls(
            host=env.get("TABSHIP_HOST") or defaults.host,
            engine=env.get("TABSHIP_ENGINE") or None,
            strict_categories=_flag(env, "TABSHIP_STRICT_CATEGORIES", defaults.strict_categories),
            allowed_hosts=allowed,
            model_name=env.get("TABSHIP_MODEL_NAME") or None,
            api_keys_file=Path(env["TABSHIP_API_KEYS_FILE"])
            if env.get("TABSHIP_API_KEYS_FILE")
            else None,
            protect_metrics=_flag(env, "TABSHIP_PROTECT_METRICS", defaults.protect_metrics),
            public_pages=_flag(env, "TABSHIP_PUBLIC_PAGES", defaults.public_pages),
            generic_errors=_flag(env, "TABSHIP_GENERIC_ERRORS", defaults.generic_errors),
            trust=trust_from_env(env),
            log_db=env.get("TABSHIP_LOG_DB") or None,
            **numbers,
        )
        variables = frozenset(
            f.name
            for f in fields(cls)
            if f.name not in given and env.get(f"TABSHIP_{f.name.upper()}", "").strip()
        )
        return replace(from_env, **given, from_variables=variables)

    def option(self, field: str) -> str:
        """How the user gave `field`: its TABSHIP_* variable, else its flag."""
        return (
            f"TABSHIP_{field.upper()}"
            if field in self.from_variables
            else f"--{field.replace('_', '-')}"
        )

    @contextmanager
    def named_as_given(self, field: str) -> Iterator[None]:
        """An error naming `field`'s flag names its variable instead when that gave it."""
        try:
            yield
        except TabshipError as exc:
            flag = f"--{field.replace('_', '-')}"
            text = str(exc)
            if field not in self.from_variables or not text.startswith(flag):
                raise
            raise ConfigError(self.option(field) + text[len(flag) :]) from None
