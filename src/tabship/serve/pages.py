"""The pages besides the form: the training report, the API docs, and their static files.

Nothing is fetched from elsewhere: Swagger UI comes from the pinned swagger-ui-bundle
package, and every inline script a page needs is allowed by its hash, not by 'unsafe-inline'.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabship import __version__
from tabship.artifact import REPORT_FILE, Artifact
from tabship.serve.http import Answer, Request, html_answer, json_answer

if TYPE_CHECKING:
    from jinja2 import Environment

    from tabship.serve.routes import RouteTable

_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


@functools.cache
def _environment() -> Environment:
    """The one template environment of the server's pages: every value autoescaped for HTML.

    Built on the first page: a pod answering only the JSON API never imports jinja2 (~2.5 MB).
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("tabship.serve", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **values: Any) -> str:
    """A page from the server's templates."""
    return _environment().get_template(template).render(**values)


STATIC_CACHE = (("cache-control", "public, max-age=3600"),)


def script_hashes(html: bytes) -> tuple[str, ...]:
    """CSP hashes ('sha256-...' values) of a page's inline scripts."""
    return tuple(
        base64.b64encode(hashlib.sha256(body).digest()).decode() for body in _SCRIPT.findall(html)
    )


class ReportPage:
    """The sealed training report, read and checked once at start."""

    def __init__(self, artifact: Artifact) -> None:
        self.html = artifact.read(REPORT_FILE)
        self.scripts = script_hashes(self.html)

    async def page(self, request: Request) -> Answer:
        """The report as training wrote it."""
        return html_answer(self.html, scripts=self.scripts)


class Docs:
    """/docs (Swagger UI, served from here) and /openapi.json, built from the route table."""

    def __init__(self, title: str, render: Callable[[RouteTable], dict[str, Any]]) -> None:
        self.title = title
        self.render = render
        self.table: RouteTable | None = None
        self._document: Answer | None = None

    async def openapi(self, request: Request) -> Answer:
        """The OpenAPI document (built on first use: most pods are never asked)."""
        if self._document is None:
            assert self.table is not None, "the route table is attached at start"
            self._document = json_answer(self.render(self.table))
        return self._document

    async def page(self, request: Request) -> Answer:
        """Swagger UI over /openapi.json."""
        html = render("docs.html", title=self.title, version=__version__)
        return html_answer(html)


def _swagger_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def _file_handler(read: Callable[[], bytes], media: str) -> Callable[[Request], Awaitable[Answer]]:
    cached: list[Answer] = []

    async def handler(request: Request) -> Answer:
        if not cached:
            cached.append(Answer(200, read(), media, STATIC_CACHE))
        return cached[0]

    return handler


def static_routes() -> list[tuple[str, Callable[[Request], Awaitable[Answer]], str]]:
    """(path, handler, media type) of every static file the pages load."""
    ours = resources.files("tabship.serve") / "static"
    files: list[tuple[str, Callable[[], bytes], str]] = [
        ("/static/style.css", (ours / "style.css").read_bytes, "text/css"),
        ("/static/docs.js", (ours / "docs.js").read_bytes, "text/javascript"),
        ("/static/key.js", (ours / "key.js").read_bytes, "text/javascript"),
        (
            "/static/swagger-ui.css",
            lambda: (_swagger_dir() / "swagger-ui.css").read_bytes(),
            "text/css",
        ),
        (
            "/static/swagger-ui-bundle.js",
            lambda: (_swagger_dir() / "swagger-ui-bundle.js").read_bytes(),
            "text/javascript",
        ),
    ]
    return [(path, _file_handler(read, media), media) for path, read, media in files]
