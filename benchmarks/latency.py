"""P2 — publish-to-readable latency at a steady rate (default 50 articles/s for 60 s).

How it is measured.  The services run as real processes on topics and a database of their own,
with ``--preload`` articles already stored and linked (so related lists have neighbours).  A
paced publisher sends one new article every 1/rate seconds (the publish time is taken just
before ``send``; sends are not awaited one by one).  A watcher without a consumer group reads
``articles.stored`` and ``articles.linked``; when an article's OWN related list is announced
(``article.linked`` whose ``article_id`` is the article), a probe asks the gateway's JSON API
``GET /api/v1/articles/{id}`` every 10 ms until it answers 200 with the related list
(non-empty, unless linking announced an empty one).  Latency = that 200 − the publish time.
Probing only after the event keeps the probe load small and never caches a 404 early; the
figure still ends with a real reader's request.  Also reported: publish → stored and
publish → linked (the stages).

Baseline, measured in the same run after the services stop: the floor of any design built on
the same Kafka and database — a bare consumer (consumer group, manual commit per batch, like the
services) takes each upstream message, ``insert_one``s it and reads it back by ``_id``; latency
= publish → that read answered.  Same rate, ``--baseline-duration`` seconds.

    python -m benchmarks.latency [--rate 50] [--duration 60] [--preload 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import time
from typing import Any

import aiohttp

from benchmarks.common import (
    RAW, clear, Corpus, Report, Row, Scenario, Services, Watcher, environment, infrastructure_pids, log, new_run_id,
    producer, publish_all, summary,
)
from shared.events import article_id_for
from shared.kafka import make_consumer
from shared.mongo import database


async def preload(scenario: Scenario, services: Services, corpus: Corpus, run_id: str, n: int, *, timeout: float = 3600) -> None:
    """``n`` articles published over the last 24 h, waited for until all are linked."""
    if n <= 0:
        return
    items = corpus.items(run_id, n, spread_hours=24, label="pre")
    ids = {article_id_for(i["uri"]) for i in items}
    watcher = Watcher(scenario.kafka, [scenario.kafka.topic_linked], own_list_only=scenario.kafka.topic_linked)
    prod = producer(scenario.kafka)
    await prod.start()
    await watcher.start()
    try:
        t0 = time.monotonic()
        log(f"preload: {n} articles")
        await publish_all(prod, scenario.kafka.topic_upstream, items)
        await watcher.wait_all(scenario.kafka.topic_linked, ids, timeout=timeout, progress="preload", alive=services.check_alive)
        log(f"preload: done in {time.monotonic() - t0:.0f}s")
    finally:
        await watcher.stop()
        await prod.stop()


async def steady(scenario: Scenario, services: Services, corpus: Corpus, run_id: str, *, rate: float, duration: float,
                 drain: float) -> dict[str, Any]:
    """Publish at ``rate`` for ``duration`` seconds; per article: publish → readable (s)."""
    kafka = scenario.kafka
    n = int(rate * duration)
    items = corpus.items(run_id, n, spread_hours=0.5, label="live")  # fresh news: the last half hour
    for k, item in enumerate(items):  # other texts than the preload's
        item["headlines"][0]["value"] += f" (live {k})"
    watcher = Watcher(kafka, [kafka.topic_stored, kafka.topic_linked], own_list_only=kafka.topic_linked)
    watcher.keep_payload = True
    prod = producer(kafka)
    published: dict[str, float] = {}
    readable: dict[str, float] = {}
    probes: list[asyncio.Task] = []
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def probe(article_id: str) -> None:
        expect_related = bool(watcher.events[kafka.topic_linked].get(article_id, {}).get("payload", {}).get("related"))
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{services.gateway}/api/v1/articles/{article_id}") as r:
                    if r.status == 200:
                        body = await r.json()
                        if body["related"] or not expect_related:
                            readable[article_id] = time.monotonic()
                            return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.01)

    async def dispatch() -> None:
        started: set[str] = set()
        while True:
            for article_id in list(watcher.seen[kafka.topic_linked]):
                if article_id in published and article_id not in started:
                    started.add(article_id)
                    probes.append(asyncio.create_task(probe(article_id)))
            watcher.changed.clear()
            try:
                await asyncio.wait_for(watcher.changed.wait(), 0.05)
            except asyncio.TimeoutError:
                pass

    await prod.start()
    await watcher.start()
    dispatcher = asyncio.create_task(dispatch())
    try:
        log(f"P2: publishing {n} articles at {rate:g}/s for {duration:g}s")
        t0 = time.monotonic()
        pending = []
        for k, item in enumerate(items):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            article_id = article_id_for(item["uri"])
            published[article_id] = time.monotonic()
            pending.append(await prod.send(kafka.topic_upstream, json.dumps(item).encode(), key=item["uri"].encode()))
        await asyncio.gather(*pending)
        achieved = n / (time.monotonic() - t0)
        deadline = time.monotonic() + drain
        while len(readable) < n and time.monotonic() < deadline:
            services.check_alive()
            await asyncio.sleep(0.5)
    finally:
        dispatcher.cancel()
        for task in probes:
            task.cancel()
        await asyncio.gather(dispatcher, *probes, return_exceptions=True)
        await watcher.stop()
        await prod.stop()
        await http.close()
    stored, linked = watcher.seen[kafka.topic_stored], watcher.seen[kafka.topic_linked]
    # Where the tail comes from: latency by the 10-second window the article was published in.
    windows: dict[int, list[float]] = {}
    for a in readable:
        windows.setdefault(int((published[a] - t0) // 10), []).append((readable[a] - published[a]) * 1000)
    by_window = [{"from_s": w * 10, **summary(v)} for w, v in sorted(windows.items())]
    return {
        "by_window": by_window,
        "published": n, "achieved_rate": achieved, "readable": len(readable), "missing": n - len(readable),
        "readable_s": [readable[a] - published[a] for a in readable],
        "stored_s": [stored[a] - published[a] for a in published if a in stored],
        "linked_s": [linked[a] - published[a] for a in published if a in linked],
    }


async def baseline(scenario: Scenario, *, rate: float, duration: float, run_id: str) -> dict[str, Any]:
    """Bare consumer + insert_one, prober reading by _id: the floor, at the same rate."""
    kafka = scenario.kafka
    topic = kafka.topic_upstream
    client = scenario.client()
    coll = database(client, scenario.mongo)[RAW]
    await clear(coll)
    consumer = make_consumer(kafka, [topic], group_id=f"bench-{run_id}-p2-baseline", client_id="bench-baseline",
                             auto_offset_reset="latest")
    prod = producer(kafka)
    published: dict[str, float] = {}
    found: dict[str, float] = {}
    stop = asyncio.Event()

    async def relay() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300, max_records=200)
            for records in batch.values():
                for r in records:
                    key = r.key.decode()
                    await coll.insert_one({"_id": key, "value": r.value})
                    if await coll.find_one({"_id": key}) is not None:  # a reader's read by _id
                        found[key] = time.monotonic()
            if batch:
                await consumer.commit()

    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    for tp in consumer.assignment():  # resolve "latest" now: later messages must not be skipped
        await consumer.position(tp)
    await prod.start()
    relay_task = asyncio.create_task(relay())
    n = int(rate * duration)
    try:
        t0 = time.monotonic()
        for k in range(n):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"baseline-{run_id}-{k}"
            published[key] = time.monotonic()
            await prod.send(topic, b'{"baseline": true}', key=key.encode())
        deadline = time.monotonic() + 60
        while len(found) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(relay_task, return_exceptions=True)
        await consumer.stop()
        await prod.stop()
        await clear(coll)
        await client.close()
    return {"published": n, "readable": len(found), "readable_s": [found[k] - published[k] for k in found]}


def add_rows(report: Report, result: dict[str, Any], floor: dict[str, Any] | None, *, rate: float, duration: float) -> None:
    lat = summary([s * 1000 for s in result["readable_s"]])
    base = summary([s * 1000 for s in floor["readable_s"]]) if floor else None
    complete = result["missing"] == 0
    for q, target in (("p50", 300.0), ("p95", None), ("p99", 1000.0)):
        report.add(Row("P2 latency", f"publish → readable with related, {q} ({rate:g}/s for {duration:g}s)",
                       lat[q], "ms", base[q] if base else None, "bare consumer: insert_one, then read by _id",
                       f"< {target:g} ms" if target else "", (complete and lat[q] < target) if target else None))
    if result["missing"]:
        report.add(Row("P2 latency", "articles not readable before the drain deadline", result["missing"], "articles",
                       target="0", met=False))
    stages = {name: summary([s * 1000 for s in result[f"{name}_s"]]) for name in ("stored", "linked")}
    report.details["P2"] = {"rate": rate, "duration_s": duration, "achieved_rate": result["achieved_rate"],
                            "published": result["published"], "readable": result["readable"], "missing": result["missing"],
                            "readable_ms": lat, "stages_ms": stages, "baseline_ms": base,
                            "readable_ms_by_10s_of_publishing": result["by_window"],
                            "method": "publish time before send; own related list announced on articles.linked; "
                                      "then GET /api/v1/articles/{id} every 10 ms until 200 with its related list"}


async def run(report: Report, *, rate: float, duration: float, preload_n: int, drain: float, baseline_duration: float,
              logs: pathlib.Path, run_id: str | None = None, latency: bool = True, gateway: dict[str, Any] | None = None) -> None:
    """P2 (``latency``) and/or P3 (``gateway``: options of :func:`benchmarks.gateway_bench.measure`) on one
    site: services started, ``preload_n`` articles stored and linked, the live load, then wrk."""
    run_id = run_id or new_run_id()
    scenario = await Scenario.create("site", run_id)
    services = Services(scenario, logs / "site")
    services.start()
    corpus = Corpus()
    result = pages = None
    try:
        await services.wait_ready()
        await services.wait_assigned()
        await preload(scenario, services, corpus, run_id, preload_n)
        if latency:
            result = await steady(scenario, services, corpus, run_id, rate=rate, duration=duration, drain=drain)
        if gateway is not None:
            from benchmarks import gateway_bench

            # The gateway alone: a backlog still being worked off would take CPU from it (and
            # not from the baseline measured after it), and every event drops cached pages.
            log("P3: waiting for the pipeline to finish its backlog")
            waited = await services.wait_idle()
            log(f"P3: pipeline idle after {waited:.0f}s; wrk against the gateway and the bare baseline")
            before = await services.metrics("gateway")
            cpu_before = services.cpu_seconds()
            others = [p.pid for name, p in services.procs.items() if name != "gateway"]
            others += [pid for pids in infrastructure_pids().values() for pid in pids]
            pages = await asyncio.to_thread(gateway_bench.measure, services.gateway, **gateway,
                                            gateway_pid=services.procs["gateway"].pid, other_pids=others)
            after = await services.metrics("gateway")
            cpu_after = services.cpu_seconds()
            rebuilds = after.get('kazpost_cache_total{result="page_build"}', 0) - before.get(
                'kazpost_cache_total{result="page_build"}', 0)
            other_cpu = sum(cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after if k != "gateway")
            log(f"P3: {rebuilds:.0f} page builds; the other processes used {other_cpu:.1f} CPU seconds meanwhile")
            for res in pages.values():
                res.update(pipeline_idle_after_s=round(waited, 1), page_builds_during_run=rebuilds,
                           other_cpu_s_during_run=round(other_cpu, 1))
    finally:
        services.stop()
    if pages is not None:
        from benchmarks import gateway_bench

        gateway_bench.add_rows(report, pages, connections=gateway.get("connections", 64),  # type: ignore[union-attr]
                               seconds=gateway.get("duration", 10) * gateway.get("rounds", 3))  # type: ignore[union-attr]
    if result is not None:
        log("P2: baseline (bare consumer + insert_one + read by _id)")
        floor = await baseline(scenario, rate=rate, duration=baseline_duration, run_id=run_id)
        add_rows(report, result, floor, rate=rate, duration=duration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--preload", type=int, default=1000)
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the last articles")
    parser.add_argument("--baseline-duration", type=float, default=20.0)
    parser.add_argument("--logs", type=pathlib.Path, default=pathlib.Path(".run/bench/services"))
    args = parser.parse_args(argv)
    report = Report()
    asyncio.run(run(report, rate=args.rate, duration=args.duration, preload_n=args.preload, drain=args.drain,
                    baseline_duration=args.baseline_duration, logs=args.logs))
    print(report.table())
    print(json.dumps(report.to_json(environment())["details"], indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
