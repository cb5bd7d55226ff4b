"""The ASGI app for one loaded model: the handlers, the route table and the layers around it.

No web framework: the table, one chain of small layers and a few handlers are the whole
server, so there is one router to reason about and a pod is ready as soon as its warm-up
prediction is.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabship.artifact import REPORT_FILE
from tabship.config import ServeSettings
from tabship.errors import RecordError
from tabship.predictor import Predictor
from tabship.serve import contract
from tabship.serve.api import JsonApi
from tabship.serve.asgi import AsgiAdapter
from tabship.serve.auth import Gate, document_security
from tabship.serve.explain import ExplainApi
from tabship.serve.form import FormPage, page_title
from tabship.serve.http import Receive, Scope, Send
from tabship.serve.layers import Layers, ServerState
from tabship.serve.openapi import render_openapi
from tabship.serve.pages import Docs, ReportPage
from tabship.serve.probes import Probes
from tabship.serve.prometheus import Metrics
from tabship.serve.routes import RouteTable, build_routes
from tabship.serve.v2 import V2Api

if TYPE_CHECKING:
    from tabship.monitor.service import Monitoring

__all__ = ["App", "ServerState", "create_app"]


@dataclass(frozen=True)
class Context:
    """What the handlers are built from: one model, its settings and the server's state."""

    predictor: Predictor
    settings: ServeSettings
    state: ServerState
    metrics: Metrics
    api: JsonApi
    form: FormPage
    probes: Probes
    docs: Docs
    report: ReportPage | None
    v2: V2Api
    explain: ExplainApi
    # The prediction log, /v1/feedback and /monitor; None without --log-db.
    monitoring: Monitoring | None = None


class App:
    """Lifespan (warm up, then ready) and the layered HTTP app.

    `layers` is every request's path; `http` reads requests from ASGI into it, and the
    server's protocol feeds it directly the requests it read whole (serve/protocol.py).
    """

    def __init__(self, context: Context, table: RouteTable, layers: Layers) -> None:
        self.context = context
        self.table = table
        self.layers = layers
        self.http = AsgiAdapter(layers)

    def refused(self, status: int, seconds: float) -> None:
        """Log and count a request the protocol refused before the app saw it."""
        self.layers.refused(status, seconds)

    @property
    def state(self) -> ServerState:
        """The state the probes report (the server flips `draining` on SIGTERM)."""
        return self.context.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Warm up, then say ready."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The first run allocates; keep that off a user's request.
                predictor = self.context.predictor
                try:
                    predictor.predict([contract.example_record(predictor.schema)])
                except RecordError as exc:
                    # The example is made up: a model may refuse it (its answer past float32)
                    # and still answer real rows. Warming up is for speed, not a check.
                    sys.stderr.write(f"warm-up: the example record was refused ({exc})\n")
                if self.context.monitoring is not None:
                    self.context.monitoring.writer.start()
                # What start-up made (modules, the model, the database layer) lives as long as
                # the process: out of the collector's sight, a full collection walks only what
                # serving made since, instead of stalling every request for tens of ms.
                gc.freeze()
                self.state.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.ready = False
                self.layers.access_log.flush()
                if self.context.monitoring is not None:
                    # Requests are done: write every queued row before the process exits.
                    timeout = self.context.settings.graceful_timeout or 20.0
                    await asyncio.to_thread(self.context.monitoring.writer.close, timeout)
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    predictor: Predictor, settings: ServeSettings | None = None, state: ServerState | None = None
) -> App:
    """The ASGI app serving `predictor`."""
    settings = settings or ServeSettings()
    state = state or ServerState()
    metrics = Metrics()
    card = predictor.card
    title = f"tabship: {page_title(card)}"

    def openapi(table: RouteTable) -> dict[str, Any]:
        document = render_openapi(
            table,
            title,
            "Predictions from a model trained by tabship. Every field is required (null where "
            "the model fills gaps); other fields are refused, but for the training table's "
            "target and ignored columns, which are skipped.",
        )
        return document if gate is None else document_security(document, gate)

    report = ReportPage(predictor.artifact) if REPORT_FILE in card.files else None
    pool = ThreadPoolExecutor(2, "tabship-batch")
    api = JsonApi(predictor, settings, metrics, pool)
    explain = ExplainApi(predictor, settings, pool)
    monitoring = None
    if settings.log_db:
        from tabship.monitor.service import Monitoring

        monitoring = Monitoring(predictor, settings, page_title(card))
        monitoring.register(metrics.registry)
    context = Context(
        predictor=predictor,
        settings=settings,
        state=state,
        metrics=metrics,
        api=api,
        form=FormPage(
            predictor,
            metrics,
            report is not None,
            explain,
            settings.max_body_bytes,
            logged=monitoring is not None,
        ),
        probes=Probes(state, metrics),
        docs=Docs(title, openapi),
        report=report,
        v2=V2Api(predictor, settings, state, api),
        explain=explain,
        monitoring=monitoring,
    )
    table = build_routes(context)
    context.docs.table = table
    metrics.watch(state)
    gate = Gate.from_settings(settings, table, metrics, report.scripts if report else ())
    writer = monitoring.writer if monitoring else None
    return App(context, table, Layers(table, metrics, state, settings, gate, writer))
