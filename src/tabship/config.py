"""Settings: the only place that reads TABSHIP_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


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
