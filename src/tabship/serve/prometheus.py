"""Prometheus metrics for one server process, in their own registry."""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Past this many label sets the cache stops growing (labels are bounded, but be sure).
MAX_CACHED_LABEL_SETS = 256
# Latency buckets in seconds, dense below 10 ms where a healthy prediction lands.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counts(Protocol):
    """What the gauges read: the server's own counters."""

    in_flight: int
    open: int


class Metrics:
    """Requests, latency, predictions, validation errors and in-flight requests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tabship_requests",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tabship_request_duration_seconds",
            "Time from request start to the end of the answer.",
            ["route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter("tabship_predictions", "Rows predicted.", registry=self.registry)
        self.validation_errors = Counter(
            "tabship_validation_errors",
            "Requests refused for invalid input, by status.",
            ["status"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "tabship_requests_in_flight",
            "Requests holding a concurrency slot (their body is in; being predicted or answered).",
            registry=self.registry,
        )
        self.open = Gauge(
            "tabship_requests_open",
            "Requests not yet answered, including those whose body is still arriving.",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.rejected = Counter(
            "tabship_overload_rejections",
            "Requests answered 503 by the concurrency cap.",
            registry=self.registry,
        )
        # Labelled by the model's own feature names: a fixed set, never a client's string.
        self.unseen = Counter(
            "tabship_unseen_category",
            "Rows whose category was not seen in training, by feature (predicted as unknown).",
            ["feature"],
            registry=self.registry,
        )

        self.auth_failures = Counter(
            "tabship_auth_failures",
            "Requests refused 401 for a missing, malformed or wrong API key, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def watch(self, state: Counts) -> None:
        """Read the in-flight and open counts from the server's state when scraped."""
        self.in_flight.set_function(lambda: state.in_flight)
        self.open.set_function(lambda: state.open)

    def count_prediction(self, rows: int, unseen: dict[str, int]) -> None:
        """Rows predicted, and the unseen categories among them."""
        self.predictions.inc(rows)
        for feature, count in unseen.items():
            self.unseen.labels(feature).inc(count)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            # labels() rebuilds and locks a tuple per call: a tenth of a request's CPU on the
            # fast path. The label sets are few (routes x methods x statuses), so keep them.
            code = str(status)
            children = (self.requests.labels(route, method, code), self.latency.labels(route, code))
            if len(self._children) < MAX_CACHED_LABEL_SETS:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if status in (400, 413, 415, 422):
            self.validation_errors.labels(str(status)).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
