"""Prometheus metrics of the server, in a registry of its own (never the global one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fedpilot.serving.service import ModelService

# Serving a small model takes about a millisecond; the buckets resolve that and the
# 50 ms target.
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

OUTCOMES = ("ok", "client_error", "server_error")


class ServingMetrics:
    """Request counts, latency and errors per model version and outcome, plus which
    versions are served now (read from the service at each scrape)."""

    def __init__(self, service: ModelService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fedpilot_serving_requests",
            "Prediction requests answered, by model version, role and outcome.",
            ["model", "version", "role", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "fedpilot_serving_errors",
            "Prediction requests refused or failed, by model version and HTTP status.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fedpilot_serving_request_seconds",
            "Time from a prediction request's arrival to its answer, by model version.",
            ["model", "version"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service))
        self._children: dict[tuple[str, ...], Any] = {}

    def observe(self, *, model: str, version: str, role: str, status: int, seconds: float) -> None:
        """Count one answered request (label children are cached: this is the hot path)."""
        outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
        key = (model, version, role, outcome)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(model, version, role, outcome),
                self.latency.labels(model, version),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if status >= 400:
            self.errors.labels(model, version, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    def __init__(self, service: ModelService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        routes = self.service.routes
        info = GaugeMetricFamily(
            "fedpilot_serving_model_version",
            "The versions served now (1), by role and alias; canary_share is the share in %.",
            labels=["model", "version", "role", "alias"],
        )
        for route in (routes.primary, routes.canary):
            if route is not None:
                labels = [route.model.name, route.model.version, route.role, route.alias or ""]
                info.add_metric(labels, 1.0)
        yield info
        yield GaugeMetricFamily(
            "fedpilot_serving_canary_share",
            "Share of requests routed to the canary, in percent (0 without one).",
            value=routes.basis_points / 100 if routes.canary is not None else 0.0,
        )
        yield CounterMetricFamily(
            "fedpilot_serving_model_swaps",
            "Times a moved alias switched the served versions without a restart.",
            value=self.service.swaps,
        )
