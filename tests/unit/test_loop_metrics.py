"""The gateway's lock-free metrics expose exactly what prometheus-client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from shared.metrics import LoopCounter, LoopHistogram

BUCKETS = (0.001, 0.01, 0.1)


def test_loop_histogram_matches_prometheus_histogram():
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LoopHistogram("t_seconds", "doc", ["route", "status"], BUCKETS, registry=ours_registry)
    theirs = Histogram("t_seconds", "doc", ["route", "status"], buckets=BUCKETS, registry=theirs_registry)
    for value in (0.0005, 0.001, 0.002, 0.01, 0.05, 0.5, 3.0):
        ours.labels("/a", 200).observe(value)
        theirs.labels("/a", "200").observe(value)
    ours.labels("/b", 404).observe(0.02)
    theirs.labels("/b", "404").observe(0.02)

    def samples(registry):
        return sorted(line for line in generate_latest(registry).decode().splitlines()
                      if not line.startswith("#") and "_created" not in line)
    assert samples(ours_registry) == samples(theirs_registry)


def test_loop_counter():
    registry = CollectorRegistry()
    counter = LoopCounter("hits", "doc", ["result"], registry=registry)
    hit, miss = counter.labels("hit"), counter.labels("miss")
    for _ in range(3):
        hit()
    miss()
    text = generate_latest(registry).decode()
    assert 'hits_total{result="hit"} 3.0' in text and 'hits_total{result="miss"} 1.0' in text
