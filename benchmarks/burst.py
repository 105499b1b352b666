"""Burst benchmark: N new articles, then version 2 of each, on a store that already holds
``--preload`` articles; reports how long until every article is readable at version 2.

Runs against a running stack (``make run``, or the test stack with KAZPOST_KEEP_STACK=1):

    python -m benchmarks.burst --n 300 --preload 3000

Texts come from the BBC corpus in ../shared/data/news (read at run time) when present.
Target: all N readable at version 2 within 180 s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import pathlib
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
from aiokafka import AIOKafkaProducer

from shared.settings import KafkaSettings

REPO = pathlib.Path(__file__).resolve().parents[1]
BBC = REPO.parent / "shared" / "data" / "news" / "bbc" / "articles.csv"


def corpus() -> list[tuple[str, str, str]]:
    if BBC.exists():
        csv.field_size_limit(10_000_000)
        with BBC.open(newline="", encoding="utf-8") as f:
            return [(r["category"], r["title"], r["text"]) for r in csv.DictReader(f)]
    words = "astana almaty rail flood market bank energy oil grain court school hospital election".split()
    return [("news", " ".join(random.choices(words, k=6)), " ".join(random.choices(words, k=300))) for _ in range(500)]


def item(uri: str, version: int, category: str, title: str, text: str, published: datetime | None = None) -> dict:
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n") if p.strip())
    published = published or datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    return {
        "uri": uri, "type": "text", "version": version,
        "versionCreated": (published + timedelta(minutes=version - 1)).isoformat(), "firstCreated": published.isoformat(),
        "pubStatus": "usable", "language": "en",
        "headlines": [{"role": "main", "value": title if version == 1 else f"{title} (updated)"}],
        "bodies": [{"role": "main", "contentType": "text/html", "value": paragraphs}],
        "subjects": [{"name": category.title(), "rel": "section"}],
    }


async def publish_all(producer: AIOKafkaProducer, topic: str, items: list[dict]) -> None:
    futures = [await producer.send(topic, json.dumps(i).encode(), key=i["uri"].encode()) for i in items]
    await asyncio.gather(*futures)


async def versions(http: aiohttp.ClientSession, gateway: str, uris: list[str]) -> list[int]:
    sem = asyncio.Semaphore(32)

    async def one(uri: str) -> int:
        async with sem, http.get(f"{gateway}/api/v1/articles", params={"uri": uri}) as r:
            return (await r.json())["version"] if r.status == 200 else 0

    return await asyncio.gather(*(one(u) for u in uris))


async def wait_until(http, gateway, uris, version, timeout) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if min(await versions(http, gateway, uris)) >= version:
            return time.monotonic() - started
        await asyncio.sleep(1)
    raise TimeoutError(f"not all {len(uris)} articles reached version {version} in {timeout}s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--preload", type=int, default=0)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--spread-hours", type=float, default=24.0,
                        help="publication times spread over this many hours before now (0 = all at once, the worst case)")
    args = parser.parse_args()
    kafka = KafkaSettings()
    texts = corpus()
    run = uuid.uuid4().hex[:8]
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, acks="all",
                                linger_ms=5, max_batch_size=262_144)
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            if args.preload:
                pre = [f"urn:bench:{run}:pre:{i}" for i in range(args.preload)]
                t0 = time.monotonic()
                start = datetime.now(UTC) - timedelta(days=30)
                await publish_all(producer, kafka.topic_upstream, [
                    item(u, 1, *texts[i % len(texts)], start + timedelta(minutes=10 * i)) for i, u in enumerate(pre)])
                took = await wait_until(http, args.gateway, random.sample(pre, min(200, len(pre))) + pre[-20:], 1, args.timeout)
                print(f"preload: {args.preload} articles stored in {time.monotonic() - t0:.1f}s "
                      f"({args.preload / (time.monotonic() - t0):.0f} articles/s)")
            # One article on an idle pipeline: publish → readable through the API.
            single = f"urn:bench:{run}:single"
            t0 = time.monotonic()
            await publish_all(producer, kafka.topic_upstream, [item(single, 1, *texts[0], datetime.now(UTC))])
            while (await versions(http, args.gateway, [single]))[0] < 1:
                await asyncio.sleep(0.02)
            print(f"single article: readable through the API {time.monotonic() - t0:.2f}s after the publish (target < 5s)")
            uris = [f"urn:bench:{run}:burst:{i}" for i in range(args.n)]
            chosen = [texts[(i * 7919) % len(texts)] for i in range(args.n)]
            now = datetime.now(UTC)
            times = [now - timedelta(hours=args.spread_hours * i / args.n) for i in range(args.n)]
            t0 = time.monotonic()
            await publish_all(producer, kafka.topic_upstream, [item(u, 1, *c, t) for u, c, t in zip(uris, chosen, times)])
            await publish_all(producer, kafka.topic_upstream, [item(u, 2, *c, t) for u, c, t in zip(uris, chosen, times)])
            published = time.monotonic() - t0
            took = await wait_until(http, args.gateway, uris, 2, args.timeout)
            total = published + took
            print(f"burst: {args.n} new articles + version 2 of each ({2 * args.n} messages) published in {published:.1f}s; "
                  f"all readable at version 2 after {total:.1f}s (target < 180s: {'met' if total < 180 else 'NOT met'}); "
                  f"{2 * args.n / total:.0f} messages/s end to end")
            sample = random.sample(uris, min(50, len(uris)))
            lat = []
            for uri in sample:
                s = time.perf_counter()
                async with http.get(f"{args.gateway}/api/v1/articles", params={"uri": uri}) as r:
                    await r.read()
                lat.append((time.perf_counter() - s) * 1000)
            print(f"API read after the burst: median {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms")
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
