"""Liveness, startup, readiness and metrics: answered without waiting behind work."""

from __future__ import annotations

from tabship.serve.http import Answer, Request, json_answer
from tabship.serve.layers import ServerState
from tabship.serve.prometheus import CONTENT_TYPE, Metrics


class Probes:
    """What Kubernetes and Prometheus ask a pod."""

    def __init__(self, state: ServerState, metrics: Metrics) -> None:
        self.state = state
        self.registry = metrics

    async def healthz(self, request: Request) -> Answer:
        """Alive: the process answers."""
        return json_answer({"status": "ok"})

    async def startupz(self, request: Request) -> Answer:
        """Started: the model answered its warm-up prediction (draining does not change it)."""
        if self.state.ready:
            return json_answer({"status": "started"})
        return json_answer({"status": "starting"}, 503)

    async def readyz(self, request: Request) -> Answer:
        """Ready: warmed up and not draining; 503 tells the load balancer to stop sending."""
        if self.state.draining:
            return json_answer({"status": "draining"}, 503)
        if self.state.ready:
            return json_answer({"status": "ready"})
        return json_answer({"status": "starting"}, 503)

    async def metrics(self, request: Request) -> Answer:
        """The Prometheus text exposition."""
        return Answer(200, self.registry.render(), CONTENT_TYPE)
