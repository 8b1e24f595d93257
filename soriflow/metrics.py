"""Prometheus metrics every service exposes, served on the metrics port.

Metric names follow the Prometheus conventions (base units, `_total` for
counters). Service-specific metrics are declared in their own modules with
the same `soriflow_` prefix.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_REQUESTS = Counter(
    "soriflow_grpc_requests_total",
    "RPCs finished, by service, method and status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "soriflow_grpc_request_duration_seconds",
    "Wall time of RPCs, by service, method and status code.",
    ["service", "method", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
RPC_IN_FLIGHT = Gauge(
    "soriflow_grpc_requests_in_flight",
    "RPCs being served now, by service and method.",
    ["service", "method"],
)
SERVICE_READY = Gauge(
    "soriflow_service_ready",
    "1 once the service has loaded its models and serves, else 0.",
    ["service"],
)
QUEUE_DEPTH = Gauge(
    "soriflow_work_queue_depth",
    "Requests waiting for a worker slot, by queue.",
    ["queue"],
)
QUEUE_REJECTED = Counter(
    "soriflow_work_queue_rejected_total",
    "Requests turned away because the queue was full, by queue.",
    ["queue"],
)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> tuple[Any, int]:
    """Starts the `/metrics` HTTP endpoint; returns (server, bound port)."""
    server, _thread = start_http_server(port, addr=host)
    return server, int(server.server_port)
