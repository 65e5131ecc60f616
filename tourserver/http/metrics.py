"""Prometheus metrics for the HTTP edge (prometheus_client: the reference implementation).

Labels use the route template (e.g. /v1/cells/{cell}), never the raw path, so no cell id,
query string or other location-bearing value reaches the metrics.

Each process counts its own requests. With several workers (`serve --workers N`) they
share them through prometheus_client's multiprocess mode: `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, each worker writes
its counts to its own memory-mapped file there, and /metrics on any worker sums all of them
(docs/operations.md), so a scrape that lands on one worker at random still sees the node.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

# prometheus_client's own switch, read when it is first imported: the value files live here.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
        # This process's live sockets, set every few seconds and before each scrape
        # (http.ops.refresh_live_gauges); with several workers, summed over the live ones.
        self.live_sockets = Gauge("tourserver_live_sockets", "Open live event WebSockets",
                                  registry=self.registry, multiprocess_mode="livesum")
        self.live_rooms = Gauge("tourserver_live_rooms",
                                "Live events with a room open here (sockets joined)",
                                registry=self.registry, multiprocess_mode="livesum")
        shared = os.environ.get(MULTIPROC_ENV)
        # What /metrics renders: this process's registry, or every worker's files.
        self.exposed = self.registry
        if shared:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, path=shared)

    def observe(self, method: str, route: str, status: int, seconds: float, size: int) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if size:
            self.bytes_sent.labels(route).inc(size)

    def set_live(self, sockets: int, rooms: int) -> None:
        self.live_sockets.set(sockets)
        self.live_rooms.set(rooms)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.exposed), CONTENT_TYPE_LATEST
