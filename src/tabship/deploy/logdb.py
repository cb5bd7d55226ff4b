"""The prediction log in manifests: where the URL comes from, the volume, the egress it needs.

A network database's URL holds a password, so it comes from a Secret (`--log-db-secret NAME`,
key `url`) and is never written into a manifest. The SQLite alternative lives on an emptyDir,
because the root file system is read-only: one file per pod, gone with the pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

URL_KEY = "url"
SQLITE_DIR = "/var/lib/tabship"
SQLITE_URL = f"sqlite:///{SQLITE_DIR}/predictions.db"
VOLUME = "prediction-log"
DNS_PORT = 53

RULES = {
    "log-db-url-from-secret": "(tabship) a network log database's URL must come from a Secret",
    "log-db-egress": "(tabship) a network log database needs NetworkPolicy egress to its port (and DNS)",
    "sqlite-log-on-volume": "(tabship) a SQLite log must live on a mounted volume (the root fs is read-only)",
}


def log_env(secret: str | None, sqlite: bool) -> list[dict[str, Any]]:
    """The container's TABSHIP_LOG_DB entry, if the pods log."""
    if secret:
        ref = {"secretKeyRef": {"name": secret, "key": URL_KEY}}
        return [{"name": "TABSHIP_LOG_DB", "valueFrom": ref}]
    if sqlite:
        return [{"name": "TABSHIP_LOG_DB", "value": SQLITE_URL}]
    return []


def log_volume(sqlite: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) for a SQLite log."""
    if not sqlite:
        return [], []
    return (
        [{"name": VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}],
        [{"name": VOLUME, "mountPath": SQLITE_DIR}],
    )


def log_egress(secret: str | None, port: int) -> list[dict[str, Any]]:
    """NetworkPolicy egress for a network log database: its port, and DNS to find it."""
    if not secret:
        return []
    return [
        {"ports": [{"port": port, "protocol": "TCP"}]},
        {"ports": [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}]},
    ]


def _log_db(container: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in container.get("env") or [] if e.get("name") == "TABSHIP_LOG_DB"), None)


def log_rules(
    pod: dict[str, Any], container: dict[str, Any], policies: list[dict[str, Any]]
) -> Iterator[tuple[str, str]]:
    """Findings about the log database of one container (policies: the pods' NetworkPolicies)."""
    entry = _log_db(container)
    if entry is None:
        return
    value = entry.get("value")
    if value is not None and not str(value).startswith("sqlite:"):
        yield (
            "log-db-url-from-secret",
            "TABSHIP_LOG_DB is written into the manifest; take it from a Secret "
            "(valueFrom.secretKeyRef, `tabship manifests --log-db-secret NAME`)",
        )
    if value is not None and str(value).startswith("sqlite:"):
        path = str(value).removeprefix("sqlite:///")
        mounts = [m.get("mountPath", "") for m in container.get("volumeMounts") or []]
        if not any(path.startswith(m.rstrip("/") + "/") for m in mounts if m):
            yield (
                "sqlite-log-on-volume",
                f"the SQLite log {path!r} is on no mounted volume; mount an emptyDir there",
            )
    if value is None or not str(value).startswith("sqlite:"):
        ports = {
            p.get("port")
            for policy in policies
            for rule in (policy.get("spec") or {}).get("egress") or []
            for p in rule.get("ports") or []
        }
        if not ports - {DNS_PORT}:
            yield (
                "log-db-egress",
                "the pods log to a network database but no NetworkPolicy egress names its port",
            )
