"""API keys: who may call a route, checked before a request can take a concurrency slot.

The keys file holds one key per line, or a key's sha256 as `sha256:HEX`, so the file can hold
hashes only. A presented key is hashed once and its digest looked up among the stored ones:
what the lookup's time could tell is about the presented key's own digest, and a digest
tells nothing of the key behind it. (Comparing with every stored digest in turn made each
request a loop over the file: 120 ms with two million keys.) The file is re-read when its
size, inode or mtime changes, looked at no more than once per second, so a rotated
Kubernetes Secret takes effect without a restart and without a stat per request. A pipe
(`--api-keys-file <(vault read ...)`) is read once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabship.errors import ConfigError, UnauthorizedError
from tabship.serve.http import (
    CHALLENGE,
    TABSHIP_ERRORS,
    Answer,
    Request,
    error_answer,
    error_payload,
    html_answer,
)
from tabship.serve.openapi import error_schema
from tabship.serve.pages import render

if TYPE_CHECKING:
    from tabship.config import ServeSettings
    from tabship.serve.prometheus import Metrics
    from tabship.serve.routes import RouteTable

# How often, at most, the keys file is looked at for a change.
RELOAD_INTERVAL = 1.0
# Longest key read from a request: a longer header is refused without hashing all of it.
MAX_KEY_BYTES = 4096
# Largest keys file read: a million keys is about 70 MB of sha256 lines; a device or a wrong
# file past this is refused rather than read into memory.
MAX_KEYS_FILE_BYTES = 128 << 20
_HEX = re.compile(r"[0-9a-f]{64}")
# Who may call a route (the Route.access values).
KEY, OPEN, PAGE, METRICS = "key", "open", "page", "metrics"
WHERE = "send it as `Authorization: Bearer KEY` or `X-API-Key: KEY`"


def digest(key: str | bytes) -> bytes:
    """The sha256 of a key, as stored and compared."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def read_keys(path: Path) -> frozenset[bytes]:
    """The digests in a keys file; refuses a missing, unreadable, oversized or empty file,
    naming it. A pipe's are kept: it can be read only once."""
    if str(path) in _PIPED:
        return _PIPED[str(path)]
    text, regular = _keys_text(path)
    digests = _digests(path, text)
    if not regular:
        _PIPED[str(path)] = digests
    return digests


def is_regular(path: Path) -> bool:
    """Whether a keys file can be read again (not a pipe or a device)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


# A pipe's digests by its path, read at the start and reused by the key ring.
_PIPED: dict[str, frozenset[bytes]] = {}


def _keys_text(path: Path) -> tuple[str, bool]:
    """The file's text (a Windows editor's BOM left out), and whether it is a regular file."""
    where = f"API keys file {path}"
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{where} is a folder; give the file of keys")
        regular = stat.S_ISREG(mode)
        # Not blocking on a pipe no one writes to (it then reads as empty), then blocking
        # while a writer has more to say.
        handle = os.open(path, os.O_RDONLY | (0 if regular else os.O_NONBLOCK))
        os.set_blocking(handle, True)
        with os.fdopen(handle, "rb") as file:
            data = file.read(MAX_KEYS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_KEYS_FILE_BYTES:  # /dev/zero, a log file given by mistake
        raise ConfigError(f"{where} is larger than {MAX_KEYS_FILE_BYTES >> 20} MB; is it the keys?")
    try:
        return data.decode("utf-8-sig"), regular
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from None


def _digests(path: Path, text: str) -> frozenset[bytes]:
    digests: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("sha256:"):
            hexed = line[7:].strip().lower()
            if not _HEX.fullmatch(hexed):
                raise ConfigError(
                    f"API keys file {path}, line {number}: after 'sha256:' put 64 hex digits"
                )
            digests.append(bytes.fromhex(hexed))
        else:
            digests.append(digest(line))
    if not digests:
        raise ConfigError(
            f"API keys file {path} holds no key; put one key (or sha256:HEX) per line"
        )
    return frozenset(digests)


def warn_if_shared(path: Path) -> str | None:
    """A warning when every user of the machine may read the keys file (plain keys leak)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & 0o004:
        return (
            f"warning: API keys file {path} is readable by every user; "
            f"chmod o-r it (or write sha256: lines only)"
        )
    return None


class KeyRing:
    """The accepted keys' digests, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digests = read_keys(path)
        self._stamp = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()  # follows symlinks: a Secret swaps its ..data link
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def refresh(self) -> None:
        """Re-read the file if it changed; keep the last good keys if it became unusable."""
        if str(self.path) in _PIPED:  # read once, at the start
            return
        now = time.monotonic()
        if now - self._checked < RELOAD_INTERVAL:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.digests = read_keys(self.path)
        except ConfigError as exc:
            sys.stderr.write(f"warning: {exc}; the keys read before stay in use\n")

    def accepts(self, key: bytes) -> bool:
        """Whether `key` is one of the keys (its digest looked up: see the module's note)."""
        self.refresh()
        return digest(key) in self.digests


def presented_keys(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The keys a request carries in `Authorization: Bearer` or `X-API-Key`, never the URL."""
    keys = []
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = bytes(value).strip().partition(b" ")
            if scheme.lower() == b"bearer":
                keys.append(token.strip())
        elif name == b"x-api-key":
            keys.append(bytes(value).strip())
    return keys


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: the metric label and the message (never the key)."""

    reason: str
    message: str


def check(ring: KeyRing, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
    """None when the request carries an accepted key, else why not."""
    keys = presented_keys(headers)
    if len(keys) > 1:  # which one is meant, and which one a proxy checked, is unknown
        return Refusal("malformed", f"the request carries {len(keys)} API keys; send one")
    key = keys[0] if keys else b""
    if not key:
        return Refusal("missing", f"this route needs an API key; {WHERE}")
    if len(key) > MAX_KEY_BYTES:
        return Refusal("malformed", f"the API key is over {MAX_KEY_BYTES} bytes")
    if not ring.accepts(key):
        return Refusal("wrong", "the API key is not accepted")
    return None


def wants_html(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a browser navigated here (it asks for HTML first)."""
    for name, value in headers:
        if name == b"accept":
            return bytes(value).startswith(b"text/html")
    return False


def refusal_answer(
    refusal: Refusal, page: bool, scripts: tuple[str, ...], style: str = TABSHIP_ERRORS
) -> Answer:
    """401 with WWW-Authenticate: the JSON error body in the route's style, or for a page the
    key-asking page."""
    error = UnauthorizedError(refusal.message)
    if not page:
        return error_answer(error, style)
    status, payload = error_payload(error)
    html = render("key.html", message=payload["message"])
    answer = html_answer(html, status=status, scripts=scripts)
    return answer._replace(headers=(*answer.headers, CHALLENGE))


class Gate:
    """The check Limits runs before a request may take a slot; None means let it through."""

    def __init__(
        self,
        ring: KeyRing,
        table: RouteTable,
        metrics: Metrics,
        open_kinds: frozenset[str],
        scripts: tuple[str, ...] = (),
    ) -> None:
        self.ring = ring
        self.table = table
        self.metrics = metrics
        self.open_kinds = open_kinds
        # Hashes of the inline scripts of pages the key page may load (the report's).
        self.scripts = scripts

    @classmethod
    def from_settings(
        cls, settings: ServeSettings, table: RouteTable, metrics: Metrics, scripts: tuple[str, ...]
    ) -> Gate | None:
        """The gate the settings ask for; None (no work per request) without a keys file."""
        if settings.api_keys_file is None:
            return None
        kinds = {OPEN}
        if not settings.protect_metrics:
            kinds.add(METRICS)
        if settings.public_pages:
            kinds.add(PAGE)
        return cls(KeyRing(settings.api_keys_file), table, metrics, frozenset(kinds), scripts)

    def __call__(self, request: Request) -> Answer | None:
        route = self.table.route_for(request.method, request.path)
        access = "key" if route is None else route.access
        if access in self.open_kinds:
            return None
        refusal = check(self.ring, request.headers)
        if refusal is None:
            return None
        self.metrics.auth_failures.labels(refusal.reason).inc()
        label = self.table.label(request.path)
        # The key itself is never written: only why it failed, where and from whom.
        sys.stderr.write(
            f'{{"ts": {time.time():.3f}, "event": "auth_failed", "reason": "{refusal.reason}", '
            f'"route": {json.dumps(label)}, "client": {json.dumps(client_of(request))}}}\n'
        )
        # A browser asking for a page (the form, /docs, /monitor) gets the page that asks
        # for the key, whether the page is open with --public-pages or always keyed.
        shows_html = access == PAGE or (route is not None and route.media == "text/html")
        page = shows_html and wants_html(request.headers)
        return refusal_answer(refusal, page, self.scripts, self.table.style(request.path))


# Peers whose X-Forwarded-For is believed: a proxy on the same host, as uvicorn's default
# (forwarded_allow_ips) believed it before the lane took over the socket.
TRUSTED_PROXIES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
_TRUSTED_ADDRESSES = frozenset(ipaddress.ip_address(proxy) for proxy in TRUSTED_PROXIES)


def client_of(request: Request) -> str:
    """Who sent a request, for the auth-failure line: the socket's peer, or behind a proxy on
    this host the nearest address in X-Forwarded-For that is not such a proxy. Only an IP
    address is taken from the header (the client writes its start): when that hop is
    anything else (`<script>`, a name, `unknown`), the peer is named instead."""
    forwarded = request.header(b"x-forwarded-for") if request.client in TRUSTED_PROXIES else None
    if not forwarded:
        return request.client
    for hop in reversed(forwarded.split(",")):  # the nearest hop first
        hop = hop.strip()
        if not hop:
            continue
        try:
            # A zone (`fe80::1%eth0`) names an interface of the proxy's host, and may be any
            # text: not an address of a client.
            address = ipaddress.ip_address(hop) if "%" not in hop else None
        except ValueError:
            address = None
        if address is None:
            return request.client
        if address not in _TRUSTED_ADDRESSES:
            return str(address)
    return request.client


SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def document_security(document: dict[str, Any], gate: Gate) -> dict[str, Any]:
    """The OpenAPI document with the key schemes, and a 401 on every route that needs a key."""
    document.setdefault("components", {})["securitySchemes"] = SCHEMES
    for route in gate.table.routes:
        if route.access in gate.open_kinds:
            continue
        operation = document["paths"][route.path][route.method.lower()]
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        operation["responses"]["401"] = {
            "description": "No API key, or not an accepted one",
            "content": {"application/json": {"schema": error_schema(route)}},
        }
    return document
