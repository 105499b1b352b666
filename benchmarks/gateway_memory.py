"""The gateway cache's memory and speed: bounded by bytes (now) against bounded by entries (the
previous cache, kept below as ``EntryBoundCache``), in the same run.

Pages and documents are real: ``--templates`` BBC-based articles go through ingestion's
``normalise`` and storage's ``article_document``, get a related list of 6 teasers like
linking's, are stored as BSON, and each article page is rendered by the gateway's own view
(``Views.article``: Jinja, gzip, brotli). The fill then repeats what the gateway does on a
miss for ``--pages`` distinct article pages: read ``articles:<id>``, ``related:<id>`` and
``audio:<id>`` (documents decoded from BSON, as PyMongo gives them), build the page and cache
it with its dependencies. Each page is a fresh copy (new bytes and header dicts) of a rendered
template: the bytes and objects of a real page, without paying brotli 20,000 times.

Memory: each variant fills a cache in a process of its own (so RSS figures do not mix), and
prints VmRSS after building the templates and after the fill, and the bytes the cache
accounts for. ``calibrate``: tracemalloc's count of what the cache holds against the bytes it
accounts for (the accounting constants in ``services/gateway/cache.py`` come from this).

Speed (one process, the caches filled alike; the fastest of alternating rounds, as the machine
is shared): ``get_page`` hit, ``put_page`` at the bound (evicting), ``invalidate`` of one
article, and putting then dropping 12 front pages with 1,000 and 20,000 article pages cached
(the previous cache scanned every key; the index does not). Also timed: the byte-bound cache
moving an entry on every hit (exact LRU) instead of stamping it (second chance).

Hit rate: the three ways of choosing what goes (second chance, move on every hit, first in
first out) at the same byte budget, readers picking among 100,000 articles by Zipf(1)
popularity, one request in ten from a crawler.

    python -m benchmarks.gateway_memory [--pages 20000] [--templates 300] [--max-bytes N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from aiohttp.test_utils import make_mocked_request

from benchmarks.common import Corpus
from services.gateway.cache import _DOC_HIT, _DOC_MISS, _PAGE_HIT, _PAGE_MISS, MISSING, Cache, Page
from services.gateway.settings import GatewaySettings
from shared.events import RelatedItem, teaser_of

OPTIONS = bson.CodecOptions(tz_aware=True)


class EntryBoundCache:
    """The previous cache, as the baseline: bounded by entries, no LRU on hit, fronts dropped
    by a scan of every key."""

    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._docs: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._pages: OrderedDict[str, tuple[float, Page, frozenset[str]]] = OrderedDict()
        self._dependants: dict[str, set[str]] = {}

    def get_doc(self, key: str) -> Any:
        entry = self._docs.get(key)
        if entry is None or entry[0] < time.monotonic():
            _DOC_MISS()
            return MISSING
        _DOC_HIT()
        return entry[1]

    def put_doc(self, key: str, value: Any) -> None:
        self._docs[key] = (time.monotonic() + self.ttl, value)
        self._docs.move_to_end(key)
        while len(self._docs) > self.max_entries:
            self._docs.popitem(last=False)

    def get_page(self, key: str) -> Page | None:
        entry = self._pages.get(key)
        if entry is None or entry[0] < time.monotonic():
            _PAGE_MISS()
            return None
        _PAGE_HIT()
        return entry[1]

    def put_page(self, key: str, page: Page, deps: set[str], ttl: float | None = None) -> None:
        self._pages[key] = (time.monotonic() + min(ttl if ttl is not None else self.ttl, self.ttl), page, frozenset(deps))
        self._pages.move_to_end(key)
        for dep in deps:
            self._dependants.setdefault(dep, set()).add(key)
        while len(self._pages) > self.max_entries:
            old_key, (_, _, old_deps) = self._pages.popitem(last=False)
            for dep in old_deps:
                self._dependants.get(dep, set()).discard(old_key)

    def invalidate(self, *keys: str) -> int:
        dropped = 0
        for key in keys:
            if self._docs.pop(key, None) is not None:
                dropped += 1
            for page_key in self._dependants.pop(key, set()):
                if self._pages.pop(page_key, None) is not None:
                    dropped += 1
        return dropped

    def invalidate_prefix(self, prefix: str) -> int:
        return self.invalidate(*[k for k in list(self._docs) + list(self._dependants) if k.startswith(prefix)])


# --- realistic documents and pages ---------------------------------------------------------------
class Template:
    __slots__ = ("article", "related", "page")

    def __init__(self, article: bytes, related: bytes, page: Page) -> None:
        self.article, self.related, self.page = article, related, page


def templates(n: int) -> list[Template]:
    """``n`` article pages rendered by the gateway's view from stored-shaped documents."""
    from services.gateway.app import VIEWS, create_app
    from services.ingestion.normalise import normalise, validate_item
    from services.storage.handlers import article_document
    from shared.packed import pack

    corpus, now = Corpus(), datetime.now(UTC)
    articles = [normalise(validate_item(corpus.item(f"urn:bench:gwmem:{i}", i, now - timedelta(minutes=10 * i))), now=now)
                for i in range(n)]
    raw: dict[tuple[str, str], bytes] = {}
    for j, a in enumerate(articles):
        doc = article_document(a, None, history_size=10, now=now)
        raw[("articles", a.id)] = bson.encode({"_id": a.id, "version": a.version, **doc})
        related = [RelatedItem(teaser=teaser_of(articles[(j + k) % n]), score=0.5 - k / 100) for k in range(1, 7)]
        raw[("related", a.id)] = bson.encode({"_id": a.id, "items": pack([r.model_dump(mode="python") for r in related]),
                                              "duplicates": [], "also_reported": pack([]), "updated_at": now, "rev": 1})

    class Collection:
        def __init__(self, name: str) -> None:
            self.name = name

        async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
            data = raw.get((self.name, query["_id"]))
            return bson.decode(data, codec_options=OPTIONS) if data else None

    class Database:
        def __getitem__(self, name: str) -> Collection:
            return Collection(name)

    app = create_app(GatewaySettings(cache_max_bytes=1 << 40))
    views = app[VIEWS]
    views.read.db = Database()

    async def render() -> list[Template]:
        out = []
        for a in articles:
            request = make_mocked_request("GET", f"/articles/{a.id}/{a.slug}", app=app, match_info={"id": a.id, "slug": a.slug})
            await views.article(request)
            page = views.cache.get_page(f"page:article:{a.id}")
            assert page is not None and page.status == 200 and page.br_body is not None
            out.append(Template(raw[("articles", a.id)], raw[("related", a.id)], page))
        return out

    return asyncio.run(render())


def fresh(data: bytes | None) -> bytes | None:
    return None if data is None else bytes(bytearray(data))


def copy_page(page: Page, n: int) -> Page:
    """The same response as a new object: new bytes, new header dicts, an ETag of its own."""
    etag = f'"{n:024x}"'
    common = {**page.not_modified_headers, "ETag": etag}
    return Page(status=page.status, body=fresh(page.body), gzip_body=fresh(page.gzip_body), br_body=fresh(page.br_body),
                etag=etag, last_modified=page.last_modified,
                plain_headers={**common, "Content-Type": page.plain_headers["Content-Type"]},
                gzip_headers={**common, "Content-Type": page.plain_headers["Content-Type"], "Content-Encoding": "gzip"},
                br_headers={**common, "Content-Type": page.plain_headers["Content-Type"], "Content-Encoding": "br"},
                not_modified_headers=common, slug=page.slug)


def serve(cache: Cache | EntryBoundCache, t: Template, n: int) -> bool:
    """What the gateway does for article page ``n``: True on a hit; on a miss, read its
    documents (from the cache or "the database") and cache the page built from them."""
    article_id = f"{n:016x}"
    key = f"page:article:{article_id}"
    if cache.get_page(key) is not None:
        return True
    for collection, data in (("articles", t.article), ("related", t.related), ("audio", None)):
        doc_key = f"{collection}:{article_id}"
        if cache.get_doc(doc_key) is MISSING:
            cache.put_doc(doc_key, bson.decode(data, codec_options=OPTIONS) if data else None)
    cache.get_doc("fronts:front:home")
    deps = {f"articles:{article_id}", f"related:{article_id}", f"audio:{article_id}", "fronts:front:home"}
    cache.put_page(key, copy_page(t.page, n), deps)
    return False


class FifoCache(Cache):
    """The byte-bound cache where a read earns nothing (first in, first out), for comparison."""

    def get_page(self, key: str) -> Page | None:
        entry = self._pages.get(key)
        return entry.value if entry is not None and entry.expires >= self._clock() else None

    def get_doc(self, key: str) -> Any:
        entry = self._docs.get(key)
        return entry.value if entry is not None and entry.expires >= self._clock() else MISSING


class MoveOnHitCache(Cache):
    """The byte-bound cache with exact LRU: every hit moves the entry to the back of its queue."""

    def get_page(self, key: str) -> Page | None:
        entry = self._pages.get(key)
        if entry is not None:
            now = self._clock()
            if entry.expires >= now:
                entry.used = entry.queued = now
                self._pages.move_to_end(key)
                _PAGE_HIT()
                return entry.value
        _PAGE_MISS()
        return None

    def get_doc(self, key: str) -> Any:
        entry = self._docs.get(key)
        if entry is not None:
            now = self._clock()
            if entry.expires >= now:
                entry.used = entry.queued = now
                self._docs.move_to_end(key)
                _DOC_HIT()
                return entry.value
        _DOC_MISS()
        return MISSING


def hit_rates(tpls: list[Template], max_bytes: int, requests: int) -> dict[str, float]:
    """Page hit rate, least recently used against first in first out at the same byte budget:
    readers pick among 100,000 articles with Zipf(1) popularity, and one request in ten is a
    crawler walking every article once."""
    rng = random.Random(5)
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(100_000)))
    picks = rng.choices(range(100_000), cum_weights=weights, k=requests)
    crawler = itertools.count(100_000)
    plan = [next(crawler) if i % 10 == 9 else p for i, p in enumerate(picks)]
    out = {}
    for name, kind in (("second_chance", Cache), ("move_on_hit", MoveOnHitCache), ("fifo", FifoCache)):
        cache = kind(ttl=3600, max_entries=10**9, max_bytes=max_bytes)
        cache.put_doc("fronts:front:home", home_doc())
        for n in plan[: requests // 5]:  # warm-up
            serve(cache, tpls[n % len(tpls)], n)
        hits = sum(serve(cache, tpls[n % len(tpls)], n) for n in plan[requests // 5:])
        out[name] = hits / (requests - requests // 5)
    return out


def make_cache(variant: str, max_bytes: int, max_entries: int) -> Cache | EntryBoundCache:
    if variant == "entries":
        return EntryBoundCache(ttl=3600, max_entries=max_entries)
    kind = MoveOnHitCache if variant == "move_on_hit" else Cache
    return kind(ttl=3600, max_entries=max_entries, max_bytes=max_bytes)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def home_doc() -> dict[str, Any]:
    sections = [{"slug": s, "name": s.title()} for s in ("business", "politics", "tech", "sport", "entertainment")]
    return {"_id": "front:home", "kind": "home", "name": "Home", "sections": sections,
            "buckets": [f"2026-11-{d:02d}" for d in range(1, 29)], "updated_at": datetime.now(UTC)}


# --- child processes --------------------------------------------------------------------------------
def child_fill(variant: str, pages: int, n_templates: int, max_bytes: int, max_entries: int) -> dict[str, Any]:
    tpls = templates(n_templates)
    cache = make_cache(variant, max_bytes, max_entries)
    cache.put_doc("fronts:front:home", home_doc())
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    for n in range(pages):
        serve(cache, tpls[n % len(tpls)], n)
    seconds = time.perf_counter() - t0
    gc.collect()
    after = rss_mb()
    out = {"variant": variant, "pages": pages, "rss_before_mb": before, "rss_after_mb": after,
           "fill_s": seconds, "pages_cached": len(cache._pages), "docs_cached": len(cache._docs),
           "dependency_keys": len(cache._dependants)}
    if isinstance(cache, Cache):
        out |= {"accounted_mb": cache.bytes / 2**20, "doc_mb": cache.doc_bytes / 2**20, "page_mb": cache.page_bytes / 2**20}
    sizes = [(len(t.page.body), len(t.page.gzip_body or b""), len(t.page.br_body or b""), len(t.article), len(t.related))
             for t in tpls]
    out["template_bytes"] = {name: statistics.mean(s[i] for s in sizes)
                             for i, name in enumerate(("plain", "gzip", "br", "article_bson", "related_bson"))}
    return out


def child_calibrate(pages: int, n_templates: int) -> dict[str, Any]:
    """tracemalloc's view of the cache against its own accounting (no byte bound, no eviction)."""
    tpls = templates(n_templates)
    cache = Cache(ttl=3600, max_entries=10**9, max_bytes=None)
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for n in range(pages):
        serve(cache, tpls[n % len(tpls)], n)
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    traced -= base
    docs_only = Cache(ttl=3600, max_entries=10**9, max_bytes=None)
    gc.collect()
    before, _ = tracemalloc.get_traced_memory()
    for n in range(pages):
        t = tpls[n % len(tpls)]
        docs_only.put_doc(f"articles:{n:016x}", bson.decode(t.article, codec_options=OPTIONS))
        docs_only.put_doc(f"related:{n:016x}", bson.decode(t.related, codec_options=OPTIONS))
        docs_only.put_doc(f"audio:{n:016x}", None)
    gc.collect()
    docs_traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"pages": pages, "traced_mb": traced / 2**20, "accounted_mb": cache.bytes / 2**20,
            "accounted_over_traced": cache.bytes / traced,
            "docs_traced_mb": docs_traced / 2**20, "docs_accounted_mb": docs_only.bytes / 2**20,
            "docs_accounted_over_traced": docs_only.bytes / docs_traced,
            "pages_traced_mb": (traced - docs_traced) / 2**20, "pages_accounted_mb": cache.page_bytes / 2**20,
            "pages_accounted_over_traced": cache.page_bytes / (traced - docs_traced)}


# --- speed ------------------------------------------------------------------------------------------
def timed_ns(fn, ops: int) -> float:
    """``fn()`` does ``ops`` operations: the time of one, in nanoseconds."""
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / ops


def speed(n_templates: int, max_entries: int, rounds: int) -> dict[str, dict[str, float]]:
    """Both caches filled alike; each round times every operation on one then the other
    (alternating, so a busy moment of the machine hits both), and the fastest round is kept."""
    tpls = templates(n_templates)
    variants = ("entries", "bytes", "move_on_hit")
    caches: dict[str, Any] = {}
    for variant in variants:
        cache = caches[variant] = make_cache(variant, 1 << 40, max_entries)
        cache.put_doc("fronts:front:home", home_doc())
        for n in range(3_000):  # below both bounds: every get below is a hit
            serve(cache, tpls[n % len(tpls)], n)
        if isinstance(cache, Cache):  # now at the bound: each put below evicts
            cache.max_bytes = cache.bytes
        else:
            cache.max_entries = len(cache._pages)
    # Hits on caches of their own, which the puts below never push anything out of.
    readers: dict[str, Any] = {}
    for variant in variants:
        c = readers[variant] = make_cache(variant, 1 << 40, max_entries)
        for n in range(3_000):
            c.put_page(f"page:article:{n:016x}", tpls[n % len(tpls)].page,
                       {f"articles:{n:016x}", f"related:{n:016x}", f"audio:{n:016x}", "fronts:front:home"})
    keys = [f"page:article:{n:016x}" for n in range(0, 3_000, 3)]
    # Dropping fronts with N article pages cached that do not depend on a front (so the dropped
    # set is the same 12 front pages whatever N; only the cost of finding them differs).
    big: dict[tuple[str, int], Any] = {}
    for variant in variants:
        for size in (1_000, 20_000):
            c = big[variant, size] = make_cache(variant, 1 << 40, 10**9)
            for n in range(size):
                c.put_doc(f"articles:{n:016x}", None)
                c.put_page(f"page:article:{n:016x}", tpls[n % len(tpls)].page, {f"articles:{n:016x}", f"related:{n:016x}"})
    runs: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for r in range(rounds):
        batch = range(100_000 + r * 500, 100_500 + r * 500)
        prepared = [(f"page:article:{n:016x}", copy_page(tpls[n % len(tpls)].page, n),
                     {f"articles:{n:016x}", f"related:{n:016x}", f"audio:{n:016x}", "fronts:front:home"}) for n in batch]
        victims = [f"articles:{n:016x}" for n in batch]
        for variant in variants[r % 3:] + variants[:r % 3]:  # each one first in turn
            cache, out = caches[variant], runs[variant]
            get, put = readers[variant].get_page, cache.put_page
            assert all(get(key) is not None for key in keys)

            def hits() -> None:
                for _ in range(20):
                    for key in keys:
                        get(key)

            def puts() -> None:
                for key, page, deps in prepared:
                    put(key, page, deps)

            def invalidations() -> None:
                for key in victims:
                    cache.invalidate(key)
            out.setdefault("get_page_hit", []).append(timed_ns(hits, 20 * len(keys)))
            out.setdefault("put_page_at_bound", []).append(timed_ns(puts, len(prepared)))
            out.setdefault("invalidate_article", []).append(timed_ns(invalidations, len(victims)))
            for size in (1_000, 20_000):
                b = big[variant, size]

                def fronts() -> None:
                    for f in range(12):
                        b.put_doc(f"fronts:front:section:{f}", None)
                        b.put_page(f"page:section:{f}:", tpls[0].page, {f"fronts:front:section:{f}", "fronts:front:home"})
                    assert b.invalidate_prefix("fronts:") == 24
                out.setdefault(f"fronts_put_and_drop_{size}", []).append(timed_ns(fronts, 1))
    return {v: {op: min(values) for op, values in ops.items()} for v, ops in runs.items()}


# --- main -------------------------------------------------------------------------------------------
def run_child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.gateway_memory", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20_000, help="distinct article pages served (each a miss)")
    parser.add_argument("--templates", type=int, default=300, help="distinct articles rendered for real")
    parser.add_argument("--max-bytes", type=int, default=GatewaySettings().cache_max_bytes)
    parser.add_argument("--max-entries", type=int, default=GatewaySettings().cache_max_entries)
    parser.add_argument("--calibrate-pages", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=15, help="speed: rounds (the fastest is kept)")
    parser.add_argument("--requests", type=int, default=50_000, help="hit rate: requests simulated")
    parser.add_argument("--child", choices=["entries", "bytes", "calibrate", "speed", "hits"])
    args = parser.parse_args(argv)
    if args.child in ("entries", "bytes"):
        print(json.dumps(child_fill(args.child, args.pages, args.templates, args.max_bytes, args.max_entries)))
        return 0
    if args.child == "calibrate":
        print(json.dumps(child_calibrate(args.calibrate_pages, args.templates)))
        return 0
    if args.child == "hits":
        print(json.dumps(hit_rates(templates(args.templates), args.max_bytes, args.requests)))
        return 0
    if args.child == "speed":
        print(json.dumps(speed(args.templates, args.max_entries, args.rounds)))
        return 0
    common = ["--pages", str(args.pages), "--templates", str(args.templates), "--max-bytes", str(args.max_bytes),
              "--max-entries", str(args.max_entries)]
    calibration = run_child(["--child", "calibrate", "--calibrate-pages", str(args.calibrate_pages), *common])
    fills = {v: run_child(["--child", v, *common]) for v in ("entries", "bytes")}
    timing = run_child(["--child", "speed", "--rounds", str(args.rounds), *common])
    rates = run_child(["--child", "hits", "--requests", str(args.requests), *common])
    sizes = fills["bytes"]["template_bytes"]
    print(f"rendered article page (mean of {args.templates}): plain {sizes['plain']:,.0f} B, gzip {sizes['gzip']:,.0f} B, "
          f"br {sizes['br']:,.0f} B; article document {sizes['article_bson']:,.0f} B BSON, related list "
          f"{sizes['related_bson']:,.0f} B BSON")
    c = calibration
    print(f"accounting ({c['pages']:,} pages, tracemalloc): documents {c['docs_accounted_mb']:.1f} MB accounted / "
          f"{c['docs_traced_mb']:.1f} MB traced ({c['docs_accounted_over_traced']:.2f}); pages {c['pages_accounted_mb']:.1f} / "
          f"{c['pages_traced_mb']:.1f} ({c['pages_accounted_over_traced']:.2f}); all {c['accounted_mb']:.1f} / "
          f"{c['traced_mb']:.1f} ({c['accounted_over_traced']:.2f})")
    print(f"\nmemory after {args.pages:,} distinct article pages (RSS of a process holding the gateway and the templates):")
    print(f"{'cache':<34}{'RSS before':>12}{'RSS after':>12}{'growth':>10}{'accounted':>25}{'pages':>8}{'docs':>8}{'dep keys':>10}")
    labels = {"entries": f"by entries ({args.max_entries:,}; baseline)", "bytes": f"by bytes ({args.max_bytes / 2**20:g} MiB)"}
    for v, f in fills.items():
        accounted = f"{f['accounted_mb']:.1f} MB" if "accounted_mb" in f else "-"
        if "accounted_mb" in f:
            accounted += f" ({f['doc_mb']:.0f} MB docs)"
        print(f"{labels[v]:<34}{f['rss_before_mb']:>9.1f} MB{f['rss_after_mb']:>9.1f} MB{f['rss_after_mb'] - f['rss_before_mb']:>7.1f} MB"
              f"{accounted:>25}{f['pages_cached']:>8,}{f['docs_cached']:>8,}{f['dependency_keys']:>10,}")
    base, ours = fills["entries"], fills["bytes"]
    print(f"growth ratio bytes/entries: {(ours['rss_after_mb'] - ours['rss_before_mb']) / (base['rss_after_mb'] - base['rss_before_mb']):.2f}")
    print(f"\nspeed (ns per operation, fastest of {args.rounds} alternating rounds; baseline = the entry-bound cache):")
    print(f"{'operation':<28}{'entries':>12}{'bytes':>10}{'ratio':>7}{'bytes, move on hit':>20}{'ratio':>7}")
    for op in timing["entries"]:
        a, b, m = timing["entries"][op], timing["bytes"][op], timing["move_on_hit"][op]
        print(f"{op:<28}{a:>12,.0f}{b:>10,.0f}{b / a:>7.2f}{m:>20,.0f}{m / a:>7.2f}")
    print(f"\npage hit rate at {args.max_bytes / 2**20:g} MiB ({args.requests:,} requests, Zipf(1) over 100,000 articles, "
          f"1 in 10 a crawler): second chance (ours) {rates['second_chance']:.1%}, move on every hit (exact LRU) "
          f"{rates['move_on_hit']:.1%}, first in first out {rates['fifo']:.1%}")
    print(json.dumps({"calibration": calibration, "fills": fills, "speed": timing, "hit_rate": rates}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
