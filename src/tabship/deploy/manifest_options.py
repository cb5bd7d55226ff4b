"""What `tabship manifests` is asked for, checked before rendering, and the names it gives."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from tabship.artifact import Artifact
from tabship.errors import ConfigError
from tabship.imageref import IMAGE_REFERENCE


@dataclass(frozen=True)
class ManifestOptions:
    """What `tabship manifests` was asked for; times are in seconds."""

    image: str
    name: str | None = None
    namespace: str | None = None
    min_replicas: int = 2
    max_replicas: int = 10
    cpu_target: int = 70
    cpu: str = "250m"
    memory: str = "512Mi"
    digest: str | None = None
    pre_stop_seconds: int = 5
    drain_delay: int = 2
    graceful_timeout: int = 20
    # A Secret holding the API keys file under the key `api-keys`, mounted read-only.
    api_keys_secret: str | None = None
    # The model's version in labels (and a canary's names): --version, else the sha256[:12].
    version: str | None = None
    # The prediction log: a Secret holding the database URL, or SQLite on an emptyDir.
    log_db_secret: str | None = None
    log_db_port: int = 5432
    log_sqlite: bool = False


def app_name(artifact: Artifact, name: str | None) -> str:
    """The objects' name: --name, else tabship-TARGET cut to DEFAULT_NAME_CHARS with a hash
    of the whole, leaving room for what is added to it (`-VERSION` of a canary, `-batch`,
    KServe's `-predictor-00001`): a long target's default was refused by the canary."""
    if name:
        return dns_name(name)
    whole = dns_name(f"tabship-{artifact.card.target}")
    if len(whole) <= DEFAULT_NAME_CHARS:
        return whole
    digest = hashlib.sha256(artifact.card.target.encode()).hexdigest()[:6]
    return f"{whole[: DEFAULT_NAME_CHARS - 7].rstrip('-')}-{digest}"


def dns_name(text: str) -> str:
    """A DNS-1123 label from any text: lower case, dashes, at most 63 characters."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    if not label:
        raise ConfigError(f"{text!r} gives no usable Kubernetes name; pass --name")
    return label


# A default name's length: 63 (a DNS label) less room for what is added to it (a canary's
# `-` and 12-character version; KServe's `-predictor-00001`).
DEFAULT_NAME_CHARS = 47
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _check_log(options: ManifestOptions) -> None:
    if options.log_db_secret is not None and not DNS_LABEL.fullmatch(options.log_db_secret):
        raise ConfigError(
            f"--log-db-secret {options.log_db_secret!r} is not a Secret name "
            "(lower-case letters, digits and '-', at most 63)"
        )
    if options.log_db_secret and options.log_sqlite:
        raise ConfigError("--log-db-secret and --log-sqlite exclude each other; choose one")
    if not 1 <= options.log_db_port <= 65535:
        raise ConfigError(f"--log-db-port {options.log_db_port} is not a TCP port")


def check_options(options: ManifestOptions) -> None:
    """Refuse options that would render objects Kubernetes refuses or a server cannot run."""
    _check_log(options)
    if options.name is not None and not DNS_LABEL.fullmatch(options.name):
        # Rewritten silently before (`a"b`, `a: b` and `a\nb` all became `a-b`, two names
        # one object): said, with the name it would have been.
        suggestion = re.sub(r"[^a-z0-9]+", "-", options.name.lower()).strip("-")[:63].strip("-")
        raise ConfigError(
            f"--name {options.name[:80]!r} is not a Kubernetes name (lower-case letters, digits "
            "and '-', at most 63, a letter or digit at each end)"
            + (f"; e.g. --name {suggestion}" if suggestion else "")
        )
    if options.namespace is not None and not DNS_LABEL.fullmatch(options.namespace):
        raise ConfigError(
            f"--namespace {options.namespace!r} is not a Kubernetes namespace name "
            "(lower-case letters, digits and '-', at most 63)"
        )
    if options.api_keys_secret is not None and not DNS_SUBDOMAIN.fullmatch(options.api_keys_secret):
        raise ConfigError(
            f"--api-keys-secret {options.api_keys_secret!r} is not a Secret name "
            "(lower-case letters, digits, '-' and '.')"
        )
    if not IMAGE_REFERENCE.fullmatch(options.image):
        raise ConfigError(
            f"--image {options.image!r} is not an image reference such as registry/name:tag"
        )
    _check_resources(options)


def _check_resources(options: ManifestOptions) -> None:
    if not 1 <= options.min_replicas <= options.max_replicas:
        raise ConfigError(
            f"--min-replicas {options.min_replicas} and --max-replicas {options.max_replicas}: need 1 <= min <= max"
        )
    if not 1 <= options.cpu_target <= 100:
        raise ConfigError(f"--cpu-target {options.cpu_target} must be a percentage from 1 to 100")
    if options.max_replicas > MAX_REPLICAS:
        raise ConfigError(f"--max-replicas {options.max_replicas} is over {MAX_REPLICAS}")
    if not re.fullmatch(r"\d+(\.\d+)?m?", options.cpu) or not float(options.cpu.rstrip("m")):
        raise ConfigError(f"--cpu {options.cpu!r} is not a CPU quantity above 0 such as 250m or 1")
    if not re.fullmatch(r"\d+(Ki|Mi|Gi|K|M|G)?", options.memory):
        raise ConfigError(f"--memory {options.memory!r} is not a memory quantity such as 512Mi")
    if memory_bytes(options.memory) < MIN_MEMORY:
        # 0 reads as no limit at all, 512 as 512 bytes: neither runs the server.
        raise ConfigError(f"--memory {options.memory!r} is under 64Mi; the server needs more")


def memory_bytes(quantity: str) -> int:
    """A checked memory quantity (digits and an optional unit) in bytes."""
    digits = quantity.rstrip("KMGi")
    return int(digits) * _MEMORY_UNITS[quantity[len(digits) :]]


# An HPA's maxReplicas is an int32.
MAX_REPLICAS = 2**31 - 1
MIN_MEMORY = 64 * 2**20
_MEMORY_UNITS = {
    "": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
}

_VERSION = re.compile(r"[a-z0-9]([a-z0-9.-]{0,18}[a-z0-9])?")


def model_version(artifact: Artifact, version: str | None = None) -> str:
    """A model's version: `version` (a short Kubernetes-name-safe word), else its sha256[:12]."""
    if version is None:
        return artifact.sha256[:12]
    if not _VERSION.fullmatch(version):
        raise ConfigError(
            f"--version {version!r} must be 1-20 lower-case letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return version
