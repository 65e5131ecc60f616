"""Prometheus metrics for the HTTP edge (prometheus_client: the reference implementation).

Labels use the route template (e.g. /v1/cells/{cell}), never the raw path, so no cell id,
query string or other location-bearing value reaches the metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tourserver_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("tourserver_http_request_duration_seconds",
                                 "Time to produce the response headers and body",
                                 ["route"], registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25, 0.5, 1, 2.5, 5))
        self.bytes_sent = Counter("tourserver_http_response_bytes_total",
                                  "Response body bytes (Content-Length)", ["route"],
                                  registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float, size: int) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if size:
            self.bytes_sent.labels(route).inc(size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
