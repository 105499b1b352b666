"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

MESSAGES_CONSUMED = Counter(
    "kazpost_messages_consumed_total", "Messages handled, by outcome", ["service", "topic", "outcome"]
)
MESSAGES_PRODUCED = Counter("kazpost_messages_produced_total", "Messages produced", ["service", "topic"])
PRODUCER_REPLACED = Counter(
    "kazpost_producer_replaced_total", "Kafka producers replaced after their sender stopped for good", ["service"]
)
HANDLER_SECONDS = Histogram(
    "kazpost_handler_seconds", "Time to handle one message (retries included)", ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge("kazpost_consumer_lag", "High-water mark minus processed offset", ["service", "topic", "partition"])
DB_SECONDS = Histogram(
    "kazpost_db_seconds", "Database call latency", ["service", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)


class LoopHistogram:
    """A labelled histogram for code on one event loop (the gateway's request path): observing is
    a bisect and two additions, with none of the locking of prometheus-client's own metrics,
    and the registry reads the series when scraped (the scrape runs on the same loop)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.bounds = sorted(float(b) for b in buckets)
        self._series: dict[tuple[str, ...], _Series] = {}
        registry.register(self)

    def labels(self, *values: str) -> "_Series":
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self.bounds)
        return series

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, series in list(self._series.items()):
            cumulative, running = [], 0
            for bound, count in zip([*self.bounds, math.inf], series.counts):
                running += count
                cumulative.append((floatToGoString(bound), running))
            family.add_metric(list(key), cumulative, sum_value=series.sum)
        yield family


class _Series:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # buckets are "less than or equal"
        self.sum += value


class LoopCounter:
    """A labelled counter for code on one event loop, read by the registry when scraped."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self._values: dict[tuple[str, ...], list[int]] = {}
        registry.register(self)

    def labels(self, *values: str) -> Callable[[], None]:
        """A function that adds one to the series of these label values."""
        cell = self._values.setdefault(tuple(str(v) for v in values), [0])

        def inc() -> None:
            cell[0] += 1
        return inc

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, cell in list(self._values.items()):
            family.add_metric(list(key), cell[0])
        yield family


HTTP_SECONDS = LoopHistogram(
    "kazpost_http_request_seconds", "Gateway request latency", ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
CACHE_EVENTS = LoopCounter("kazpost_cache", "Gateway cache lookups", ["result"])
