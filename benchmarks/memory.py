"""P5 — memory: resident set size (VmRSS) of each service process at 100k stored articles.

How the 100k articles get there (and why each service then holds what it would hold):

1. Every service starts on an empty database; its RSS then is the baseline of the same run.
2. linking and narration are stopped; ``--n`` ninjs items (BBC paragraphs recombined, published
   over the last ``--spread-days`` days) are published upstream.  ingestion really normalises all
   of them (its duplicate filter fills as in production) and storage really stores all of them
   (articles, versions, every listing bucket), in batches, as in production.
3. linking's and narration's consumer groups are moved to the end of ``articles.stored`` and
   they start again without a snapshot: linking rebuilds its index of the whole corpus from the
   ``articles`` collection, exactly as a new replica does; it does not rewrite 100k related
   lists (that would take hours here, and lists are documents in the database, not memory).
   narration does not narrate 100k articles (hours of speech synthesis): it holds what it holds
   when idle beside a full database.  newsletter idles (nothing in this benchmark concerns it).
4. ``--live`` more articles go through the whole pipeline (every service works at full size).
5. The gateway serves the home page, every section page and ``--pages`` distinct article pages
   (each page is cached with its gzip and brotli bodies).  Its cache is bounded in bytes
   (``KAZPOST_GATEWAY_CACHE_MAX_BYTES``, 64 MiB); the growth per page served is reported as
   well (it falls once the cache is full: ``--pages 20000`` shows it, slowly here).
Then each process's VmRSS is read from /proc (VmHWM, the peak, is in the JSON).

    python -m benchmarks.memory [--n 100000] [--pages 20000] [--live 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from benchmarks.common import (
    Corpus, Report, Row, Scenario, Services, Watcher, chunks, commit_group_to_end, environment, log, new_run_id,
    producer, publish_all,
)
from shared.events import article_id_for

ALL = ("ingestion", "storage", "linking", "gateway", "newsletter", "narration")
LIMIT_MB = 200.0


def vm(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def snapshot(services: Services) -> dict[str, dict[str, float]]:
    return {name: {"rss_mb": vm(p.pid, "VmRSS"), "peak_mb": vm(p.pid, "VmHWM")}
            for name, p in services.procs.items() if p.poll() is None}


async def load(services: Services, corpus: Corpus, run_id: str, n: int, spread_days: float, *, timeout: float) -> dict[str, float]:
    kafka = services.scenario.kafka
    end = datetime.now(UTC) - timedelta(minutes=5)
    watcher = Watcher(kafka, [kafka.topic_stored])
    prod = producer(kafka)
    await prod.start()
    await watcher.start()
    ids: set[str] = set()
    try:
        t0 = time.monotonic()
        step = timedelta(days=spread_days) / n
        for block in chunks(list(range(n)), 5000):
            items = [corpus.item(f"urn:bench:{run_id}:mem:{i}", i, end - step * (n - i)) for i in block]
            ids.update(article_id_for(i["uri"]) for i in items)
            await publish_all(prod, kafka.topic_upstream, items)
        published = time.monotonic() - t0
        log(f"P5: {n} articles published in {published:.0f}s; waiting for storage")
        await watcher.wait_all(kafka.topic_stored, ids, timeout=timeout, progress="P5 load", alive=services.check_alive)
        took = time.monotonic() - t0
    finally:
        await watcher.stop()
        await prod.stop()
    log(f"P5: {n} articles ingested and stored in {took:.0f}s ({n / took:.0f}/s)")
    return {"seconds": took, "rate": n / took}


async def live(services: Services, corpus: Corpus, run_id: str, n: int, *, timeout: float) -> None:
    kafka = services.scenario.kafka
    items = corpus.items(run_id, n, spread_hours=1, label="memlive")
    watcher = Watcher(kafka, [kafka.topic_linked], own_list_only=kafka.topic_linked)
    prod = producer(kafka)
    await prod.start()
    await watcher.start()
    try:
        await publish_all(prod, kafka.topic_upstream, items)
        await watcher.wait_all(kafka.topic_linked, {article_id_for(i["uri"]) for i in items}, timeout=timeout,
                               progress="P5 live", alive=services.check_alive)
    finally:
        await watcher.stop()
        await prod.stop()


async def browse(gateway: str, pages: int, *, concurrency: int = 16) -> dict[str, Any]:
    """Home, every section, then ``pages`` distinct article pages (URLs from the listing API)."""
    timeout = aiohttp.ClientTimeout(total=60)
    served = errors = 0
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(f"{gateway}/api/v1/sections") as r:
            sections = (await r.json())["sections"]
        paths = ["/", *(f"/section/{s['slug']}" for s in sections)]
        cursor = None
        urls: list[str] = []
        while len(urls) < pages:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            async with http.get(f"{gateway}/api/v1/articles", params=params) as r:
                page = await r.json()
            urls += [i["url"] for i in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        paths += [u.split("://", 1)[1].split("/", 1)[1] for u in urls[:pages]]
        paths = [p if p.startswith("/") else "/" + p for p in paths]
        sem = asyncio.Semaphore(concurrency)

        async def get(path: str) -> None:
            nonlocal served, errors
            async with sem:
                try:
                    async with http.get(gateway + path, headers={"Accept-Encoding": "gzip, br"}) as r:
                        await r.read()
                        served += r.status == 200
                        errors += r.status != 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1

        t0 = time.monotonic()
        for block in chunks(paths, 1000):
            await asyncio.gather(*(get(p) for p in block))
    return {"requested": len(paths), "served": served, "errors": errors, "sections": len(sections),
            "seconds": time.monotonic() - t0}


async def run(report: Report, *, n: int, pages: int, live_n: int, spread_days: float, logs: pathlib.Path,
              run_id: str | None = None, names: tuple[str, ...] = ALL, timeout: float = 7200) -> None:
    run_id = run_id or new_run_id()
    if "narration" in names and not (shutil.which("espeak-ng") and shutil.which("opusenc")):
        names = tuple(x for x in names if x != "narration")
        report.details.setdefault("notes", []).append("P5: narration left out (espeak-ng/opusenc not installed)")
    scenario = await Scenario.create("p5", run_id)
    services = Services(scenario, logs / "p5", names=names)
    services.start()
    details: dict[str, Any] = {"n": n, "pages": pages, "live": live_n, "spread_days": spread_days, "services": list(names)}
    try:
        await services.wait_ready()
        await asyncio.sleep(2)
        details["at_start"] = at_start = snapshot(services)
        log(f"P5: RSS at start {json.dumps({k: round(v['rss_mb']) for k, v in at_start.items()})}")
        later = [x for x in ("linking", "narration") if x in names]
        services.stop(*later)
        details["load"] = await load(services, Corpus(), run_id, n, spread_days, timeout=timeout)
        for name in later:
            skipped = await commit_group_to_end(scenario.kafka, services.group(name), scenario.kafka.topic_stored)
            log(f"P5: {name}'s group moved past {skipped} stored events")
        (services.logs / "linking.snapshot").unlink(missing_ok=True)
        t0 = time.monotonic()
        services.start(*later)
        await services.wait_ready(*later, timeout=timeout)
        details["linking_start_s"] = time.monotonic() - t0
        log(f"P5: linking rebuilt its index from the database in {details['linking_start_s']:.0f}s")
        if live_n:
            await live(services, Corpus(seed=11), run_id, live_n, timeout=timeout)
        log(f"P5: browsing {pages} article pages")
        details["browse"] = await browse(services.gateway, pages)
        await asyncio.sleep(2)
        details["at_size"] = at_size = snapshot(services)
    finally:
        services.stop()
    for name in names:
        now, base = at_size.get(name), at_start.get(name)
        if now is None:
            report.errors[f"P5 {name}"] = "the process was not running at the end"
            continue
        report.add(Row("P5 memory", f"{name} RSS at {n:,} stored articles", now["rss_mb"], "MB",
                       base["rss_mb"] if base else None, "same service at start, empty database",
                       f"< {LIMIT_MB:g} MB", now["rss_mb"] < LIMIT_MB))
    gw_now, gw_base = at_size.get("gateway"), at_start.get("gateway")
    served = details["browse"]["served"]
    if gw_now and gw_base and served:
        per_page = (gw_now["rss_mb"] - gw_base["rss_mb"]) * 1024 / served
        details["gateway_kb_per_cached_page"] = per_page
        report.add(Row("P5 memory", f"gateway RSS growth per cached page ({served:,} pages served)", per_page, "KB",
                       note="the cache is bounded in bytes (64 MiB by default)"))
    report.details["P5"] = details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=5_000, help="distinct article pages the gateway serves")
    parser.add_argument("--live", type=int, default=500, help="articles through the whole pipeline at full size")
    parser.add_argument("--spread-days", type=float, default=60.0)
    parser.add_argument("--logs", type=pathlib.Path, default=pathlib.Path(".run/bench/services"))
    args = parser.parse_args(argv)
    report = Report()
    asyncio.run(run(report, n=args.n, pages=args.pages, live_n=args.live, spread_days=args.spread_days, logs=args.logs))
    print(report.table())
    print(json.dumps(report.to_json(environment())["details"], indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
