"""Prometheus metrics of one app: request counts and latencies, predictor batches, selections.

Each app gets its own CollectorRegistry, so several apps (tests) never clash over metric
names. Requests are labelled by route template (`/v1/models/{name}`), never by raw path, so
the label set stays bounded whatever clients send.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pickwise.api.gateway.upstream import usage_cost_usd, usage_count
from pickwise.registry import ModelSpec

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.04, 0.06, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_KINDS = ("prompt_tokens", "completion_tokens")


class ServiceMetrics:
    """The service's metric families, registered in a private CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("pickwise_http_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("pickwise_http_request_duration_seconds", "HTTP request latency",
                                 ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("pickwise_http_requests_in_flight", "HTTP requests being handled now (this one included)",
                               registry=self.registry)
        self.batch_size = Histogram("pickwise_predictor_batch_size", "prompts per micro-batched predictor call",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("pickwise_predictor_batch_seconds", "time of one predictor call",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.selections = Counter("pickwise_selections", "models chosen by /v1/select (each member of a set)",
                                  ["model"], registry=self.registry)
        # the gateway's calls to upstream model servers, by registry model
        self.upstream_calls = Counter("pickwise_upstream_calls", "gateway calls to a model's endpoint, by outcome "
                                      "(ok, client_error, status, timeout, connect, protocol, no_key, empty)",
                                      ["model", "outcome"], registry=self.registry)
        self.upstream_failures = Counter("pickwise_upstream_failures", "gateway calls that did not answer, and "
                                         "streams cut midway (kind interrupted)", ["model", "kind"],
                                         registry=self.registry)
        self.upstream_fallbacks = Counter("pickwise_upstream_fallbacks", "times a model failed and the gateway "
                                          "tried the next one of the ranking", ["model"], registry=self.registry)
        self.upstream_seconds = Histogram("pickwise_upstream_seconds", "upstream time to answer: the whole body, or "
                                          "a stream's first event", ["model"], buckets=UPSTREAM_BUCKETS,
                                          registry=self.registry)
        self.upstream_tokens = Counter("pickwise_upstream_tokens", "tokens the upstreams' `usage` reports",
                                       ["model", "kind"], registry=self.registry)
        self.upstream_cost = Counter("pickwise_upstream_cost_usd", "what answered calls cost at the registry's list "
                                     "prices, from their `usage`", ["model"], registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def count_selection(self, models: Iterable[str]) -> None:
        for name in models:
            self.selections.labels(model=name).inc()

    # ---- the gateway's Observer (pickwise.api.gateway.Observer) ----
    def attempt(self, model: str, outcome: str, seconds: float) -> None:
        kind = outcome.split(" ")[0] if not outcome.startswith("client error") else "client_error"
        self.upstream_calls.labels(model=model, outcome=kind).inc()
        if kind in ("ok", "client_error"):
            self.upstream_seconds.labels(model=model).observe(seconds)
        else:
            self.upstream_failures.labels(model=model, kind=kind).inc()

    def fallback(self, model: str) -> None:
        self.upstream_fallbacks.labels(model=model).inc()

    def interrupted(self, model: str) -> None:
        self.upstream_failures.labels(model=model, kind="interrupted").inc()

    def usage(self, spec: ModelSpec, usage: dict) -> None:
        for kind in TOKEN_KINDS:
            value = usage_count(usage, kind)
            if value is not None:
                self.upstream_tokens.labels(model=spec.name, kind=kind.removesuffix("_tokens")).inc(value)
        cost = usage_cost_usd(spec, usage)
        if cost is not None:
            self.upstream_cost.labels(model=spec.name).inc(cost)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _endpoint(scope: Scope, routes) -> str:
    """The route template that served (or would serve) this request; 'unmatched' for unknown paths."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match != Match.NONE:
            return getattr(candidate, "path", "unmatched")
    return "unmatched"


class MetricsMiddleware:
    """Pure ASGI (no per-request task): counts and times every HTTP request, 413s and 500s included."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.in_flight.dec()
            labels = {"endpoint": _endpoint(scope, self.routes), "method": scope["method"], "status": str(status)}
            self.metrics.requests.labels(**labels).inc()
            self.metrics.latency.labels(**labels).observe(time.perf_counter() - started)


def sample_total(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` (e.g. `pickwise_http_requests_total`) whose labels include
    `labels`, read from /metrics text: how the benchmark and the tests read back what the service
    exposes, with prometheus_client's own parser rather than string matching."""
    return sum(sample.value
               for family in text_string_to_metric_families(exposition)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())
