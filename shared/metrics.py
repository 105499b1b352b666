"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_CONSUMED = Counter(
    "kazpost_messages_consumed_total", "Messages handled, by outcome", ["service", "topic", "outcome"]
)
MESSAGES_PRODUCED = Counter("kazpost_messages_produced_total", "Messages produced", ["service", "topic"])
HANDLER_SECONDS = Histogram(
    "kazpost_handler_seconds", "Time to handle one message (retries included)", ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge("kazpost_consumer_lag", "High-water mark minus processed offset", ["service", "topic", "partition"])
DB_SECONDS = Histogram(
    "kazpost_db_seconds", "Database call latency", ["service", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
HTTP_SECONDS = Histogram(
    "kazpost_http_request_seconds", "Gateway request latency", ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
CACHE_EVENTS = Counter("kazpost_cache_total", "Gateway cache lookups", ["result"])
