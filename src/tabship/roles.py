"""What an image needs beyond serving, for the other pods tabship runs: batch and cluster."""

from __future__ import annotations

from importlib import metadata

from tabship.errors import ConfigError

# `tabship predict` over files: the CLI, the table readers, and fsspec for URLs.
BATCH_PACKAGES = ("pandas", "pyarrow", "typer", "rich", "fsspec")
# Cloud filesystems go in when they are installed here (pip install 'tabship[remote]').
REMOTE_PACKAGES = ("gcsfs", "s3fs")
# Dask workers: everything training imports, and the client's own Dask pins.
CLUSTER_PACKAGES = ("dask", "distributed")
ROLES = ("batch", "cluster")


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _training_requirements() -> tuple[str, ...]:
    from packaging.requirements import Requirement

    required = [Requirement(text) for text in metadata.requires("tabship") or []]
    return tuple(r.name for r in required if r.marker is None)


def role_packages(roles: tuple[str, ...]) -> tuple[str, ...]:
    """Top-level packages the roles add to the image (their closure is pinned by the caller)."""
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ConfigError(f"--with {unknown[0]!r} is not one of: {', '.join(ROLES)}")
    packages: list[str] = []
    if "batch" in roles or "cluster" in roles:
        packages += [*BATCH_PACKAGES, *(p for p in REMOTE_PACKAGES if _installed(p))]
    if "cluster" in roles:
        packages += [*_training_requirements(), *CLUSTER_PACKAGES]
    return tuple(dict.fromkeys(packages))
