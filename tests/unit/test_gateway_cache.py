"""The gateway cache: bounded by bytes (least recently used first), invalidation by key and of
all fronts (from an index, not a scan), TTL, and its size accounting."""

from __future__ import annotations

import functools
import gc
import sys
import tracemalloc
from datetime import UTC, datetime

import bson
import pytest
from prometheus_client import REGISTRY

from services.gateway.cache import (
    DEP_NEW, DEP_SHARED, ENTRY_OVERHEAD, MISSING, PAGE_OVERHEAD, Cache, Page, doc_size, page_size,
)
from services.gateway.views import make_page


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(n: int, size: int = 5000) -> str:
    """A page body that compresses like text but differs per page."""
    words = " ".join(f"word{(n * 7919 + i) % 1009}" for i in range(size // 8))
    return f"<html><body><p>{n}</p><p>{words}</p></body></html>"


def article_doc(n: int) -> dict:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    text = f"text {n} " * 300  # a string of its own per document
    return {"_id": f"{n:016x}", "headline": f"Headline {n}", "body_html": f"<p>{text}</p>", "body_text": text, "section": {"slug": "politics", "name": "Politics"},
            "tags": [{"slug": "astana", "name": "Astana"}], "first_created": now, "version_created": now,
            "history": [{"version": 1, "version_created": now, "pub_status": "usable"}], "word_count": 400}


@functools.cache
def rendered(i: int) -> Page:
    return make_page(body(i))


def fill_pages(cache: Cache, n: int) -> list[str]:
    """``n`` article pages (a few rendered ones, cached under ``n`` keys: brotli is slow)."""
    keys = []
    for i in range(n):
        key = f"page:article:{i:016x}"
        cache.put_page(key, rendered(i % 8), {f"articles:{i:016x}", f"related:{i:016x}", "fronts:front:home"})
        keys.append(key)
    return keys


# --- the byte bound ----------------------------------------------------------------------------------

def test_byte_bound_holds_and_drops_the_oldest_first():
    one = page_size(rendered(0))
    cache = Cache(ttl=60, max_entries=10_000, max_bytes=40 * one)
    keys = fill_pages(cache, 200)
    assert 0 < cache.bytes <= 40 * one
    kept = [k for k in keys if cache.get_page(k) is not None]
    assert 25 <= len(kept) < 40
    assert kept == keys[-len(kept):]  # the newest ones, in order: the oldest went first
    assert cache.page_count == len(kept)


def test_a_hit_refreshes_recency():
    cache = Cache(ttl=60, max_entries=10_000, max_bytes=1 << 30)
    keys = [fill_page(cache, i) for i in range(10)]
    cache.max_bytes = cache.bytes  # full
    assert cache.get_page(keys[0]) is not None  # the oldest, read again
    for i in range(10, 15):
        fill_page(cache, i)
    assert cache.get_page(keys[0]) is not None
    assert cache.get_page(keys[1]) is None  # not read since: dropped first


def fill_page(cache: Cache, i: int) -> str:
    key = f"page:article:{i:016x}"
    cache.put_page(key, rendered(i % 8), {f"articles:{i:016x}"})
    return key


def test_documents_and_pages_share_one_budget_least_recent_first():
    clock = Clock()
    doc_bytes = doc_size(article_doc(0))
    cache = Cache(ttl=60, max_entries=10_000, max_bytes=30 * doc_bytes, clock=clock)
    for i in range(10):
        clock.now += 1
        cache.put_doc(f"articles:{i:016x}", article_doc(i))
    clock.now += 1
    hot = fill_pages(cache, 3)
    for j in range(40):  # pages read over and over, documents never again
        clock.now += 1
        for key in hot:
            assert cache.get_page(key) is not None
        cache.put_doc(f"articles:{1000 + j:016x}", article_doc(1000 + j))
    assert all(cache.get_page(key) is not None for key in hot)
    assert cache.get_doc(f"articles:{0:016x}") is MISSING
    assert cache.bytes <= 30 * doc_bytes


def test_entry_bound_still_holds():
    cache = Cache(ttl=60, max_entries=100, max_bytes=1 << 30)
    for i in range(250):
        cache.put_page(f"p{i}", make_page(str(i)), {f"d{i}"})
        cache.put_doc(f"d{i}", i)
    assert cache.page_count == 100 and cache.doc_count == 100
    assert cache.get_page("p149") is None and cache.get_page("p150") is not None
    assert cache.get_doc("d149") is MISSING and cache.get_doc("d249") == 249


def test_an_entry_bigger_than_an_eighth_of_the_budget_is_not_cached():
    cache = Cache(ttl=60, max_entries=100, max_bytes=1 << 20)
    small = rendered(1)
    cache.put_page("page:small", small, {"articles:a"})
    cache.put_page("page:huge", make_page(bytes(range(256)) * 1024), {"articles:b"})  # 256 KB, incompressible
    assert cache.get_page("page:huge") is None and cache.get_page("page:small") is small
    cache.put_doc("articles:huge", {"body": "x" * 200_000})
    assert cache.get_doc("articles:huge") is MISSING
    assert cache.bytes == ENTRY_OVERHEAD + sys.getsizeof("page:small") + page_size(small) + DEP_NEW


def test_replacing_an_entry_counts_it_once():
    cache = Cache(ttl=60, max_entries=100, max_bytes=1 << 30)
    cache.put_doc("articles:a", article_doc(1))
    cache.put_page("page:a", rendered(1), {"articles:a"})
    first = cache.bytes
    cache.put_doc("articles:a", article_doc(1))
    cache.put_page("page:a", rendered(1), {"articles:a"})
    assert cache.bytes == first
    cache.invalidate("articles:a")
    assert cache.bytes == 0 and cache.page_count == 0 and cache.doc_count == 0


def test_bytes_go_back_to_zero_and_the_index_empties():
    cache = Cache(ttl=60, max_entries=100_000, max_bytes=200 * page_size(rendered(0)))
    fill_pages(cache, 500)
    for i in range(500):
        cache.put_doc(f"articles:{i:016x}", article_doc(i))
    cache.invalidate(*(f"articles:{i:016x}" for i in range(0, 500, 2)))
    cache.invalidate_prefix("fronts:")
    cache.invalidate(*(f"articles:{i:016x}" for i in range(500)))
    assert cache.bytes == 0 and cache.page_count == 0 and cache.doc_count == 0
    assert cache._dependants == {} and cache._indexed == {"fronts:": set()}


def test_evicted_pages_leave_no_dependency_keys_behind():
    """The previous cache kept an empty set per dependency key of every page ever evicted."""
    cache = Cache(ttl=60, max_entries=50, max_bytes=1 << 30)
    fill_pages(cache, 1000)
    assert cache.page_count == 50
    assert len(cache._dependants) == 2 * 50 + 1  # articles:, related: of each page kept, and fronts:front:home


# --- invalidation -------------------------------------------------------------------------------------

def test_invalidating_a_key_drops_the_document_and_its_pages_only():
    cache = Cache(ttl=60, max_entries=100, max_bytes=1 << 30)
    cache.put_doc("articles:a", {"x": 1})
    cache.put_doc("articles:b", {"x": 2})
    cache.put_page("page:article:a", rendered(1), {"articles:a", "related:a", "fronts:front:home"})
    cache.put_page("page:article:b", rendered(2), {"articles:b", "related:b", "fronts:front:home"})
    cache.put_page("page:tag:x", rendered(3), {"articles:a", "fronts:front:tag:x"})
    assert cache.invalidate("related:a") == 1
    assert cache.get_page("page:article:a") is None
    assert cache.get_page("page:tag:x") is not None and cache.get_doc("articles:a") == {"x": 1}
    assert cache.invalidate("articles:a") == 2  # the document and the tag page
    assert cache.get_doc("articles:a") is MISSING and cache.get_page("page:tag:x") is None
    assert cache.get_page("page:article:b") is not None and cache.get_doc("articles:b") == {"x": 2}
    assert cache.invalidate("articles:nothing") == 0


def test_invalidating_all_fronts_drops_front_documents_and_their_dependants():
    cache = Cache(ttl=60, max_entries=1000, max_bytes=1 << 30)
    cache.put_doc("fronts:front:home", {"sections": []})
    cache.put_doc("fronts:front:section:politics:2026-11", {"items": []})
    cache.put_doc("articles:a", {"x": 1})
    cache.put_page("page:home:", rendered(1), {"fronts:front:home"})
    cache.put_page("page:section:politics:", rendered(2), {"fronts:front:section:politics:2026-11"})
    cache.put_page("page:article:a", rendered(3), {"articles:a", "fronts:front:home"})
    cache.put_page("page:article:b", rendered(4), {"articles:b"})
    assert cache.invalidate_prefix("fronts:") == 5
    assert cache.get_doc("fronts:front:home") is MISSING
    assert cache.get_doc("fronts:front:section:politics:2026-11") is MISSING
    assert all(cache.get_page(k) is None for k in ("page:home:", "page:section:politics:", "page:article:a"))
    assert cache.get_page("page:article:b") is not None and cache.get_doc("articles:a") == {"x": 1}
    assert cache.invalidate_prefix("fronts:") == 0
    # Fronts cached again after the drop are found again by the next one.
    cache.put_page("page:home:", rendered(5), {"fronts:front:home"})
    assert cache.invalidate_prefix("fronts:") == 1 and cache.get_page("page:home:") is None


def test_front_index_keeps_a_key_while_a_document_or_a_page_holds_it():
    cache = Cache(ttl=60, max_entries=1, max_bytes=1 << 30)  # one document and one page at most
    cache.put_doc("fronts:front:home", {"sections": []})
    cache.put_page("page:home:", rendered(1), {"fronts:front:home"})
    cache.put_doc("articles:a", {"x": 1})  # the front document goes, its page stays
    assert cache.get_doc("fronts:front:home") is MISSING
    assert cache.invalidate_prefix("fronts:") == 1 and cache.get_page("page:home:") is None
    cache.put_doc("fronts:front:home", {"sections": []})
    cache.put_page("page:home:", rendered(1), {"fronts:front:home"})
    cache.put_page("page:article:a", rendered(2), {"articles:a"})  # the front page goes, its document stays
    assert cache.get_page("page:home:") is None
    assert cache.invalidate_prefix("fronts:") == 1 and cache.get_doc("fronts:front:home") is MISSING
    assert cache._indexed == {"fronts:": set()}


def test_invalidate_prefix_refuses_a_prefix_it_does_not_index():
    cache = Cache(ttl=60, max_entries=100)
    with pytest.raises(ValueError, match="not an indexed prefix"):
        cache.invalidate_prefix("articles:")


def test_dropping_fronts_does_not_look_at_unrelated_entries():
    """The cost of dropping fronts is that of the fronts: the other keys are never visited."""
    class Key(str):
        visited = 0

        def startswith(self, *args):  # what a scan of the cache would call
            Key.visited += 1
            return str.startswith(self, *args)

    cache = Cache(ttl=60, max_entries=10_000, max_bytes=1 << 30)
    for i in range(2000):
        cache.put_doc(Key(f"articles:{i:016x}"), None)
    cache.put_doc("fronts:front:home", None)
    Key.visited = 0
    assert cache.invalidate_prefix("fronts:") == 1
    assert Key.visited == 0


# --- TTL ---------------------------------------------------------------------------------------------

def test_entries_expire_and_are_released():
    clock = Clock()
    cache = Cache(ttl=30, max_entries=100, max_bytes=1 << 30, clock=clock)
    cache.put_doc("articles:a", article_doc(1))
    cache.put_page("page:article:a", rendered(1), {"articles:a"})
    cache.put_page("page:short", rendered(2), {"articles:a"}, ttl=5)
    clock.now += 5
    assert cache.get_page("page:short") is not None
    clock.now += 0.001
    assert cache.get_page("page:short") is None
    clock.now = 1030.0
    assert cache.get_doc("articles:a") == article_doc(1) and cache.get_page("page:article:a") is not None
    clock.now += 0.001
    assert cache.get_doc("articles:a") is MISSING and cache.get_page("page:article:a") is None
    assert cache.bytes == 0 and cache._dependants == {}


def test_a_page_ttl_never_exceeds_the_cache_ttl():
    clock = Clock()
    cache = Cache(ttl=10, max_entries=100, clock=clock)
    cache.put_page("p", rendered(1), set(), ttl=3600)
    clock.now += 10.001
    assert cache.get_page("p") is None


def test_ttl_zero_caches_nothing():
    cache = Cache(ttl=0, max_entries=100, max_bytes=1 << 20)
    cache.put_doc("articles:a", {"x": 1})
    cache.put_page("p", make_page("x"), {"articles:a"})
    assert cache.get_doc("articles:a") is MISSING and cache.get_page("p") is None and cache.bytes == 0


# --- accounting and metrics ------------------------------------------------------------------------

def test_doc_size_is_close_to_what_the_objects_take():
    """Documents as the driver gives them (decoded from BSON: keys and values of their own)."""
    stored = [bson.encode(article_doc(i) | {"related": [article_doc(i + j) | {"score": 0.5} for j in range(3)]})
              for i in range(300)]
    options = bson.CodecOptions(tz_aware=True)
    docs = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for data in stored:
        docs.append(bson.decode(data, codec_options=options))
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    accounted = sum(map(doc_size, docs))
    assert 0.95 < accounted / traced < 1.05
    assert doc_size(None) == 0 and doc_size({"a": None, "b": True}) < doc_size({"a": "x" * 100, "b": True})


def test_page_size_counts_every_body():
    page = rendered(1)
    assert page.gzip_body is not None and page.br_body is not None
    assert page_size(page) == len(page.body) + len(page.gzip_body) + len(page.br_body) + PAGE_OVERHEAD
    small = make_page("tiny")
    assert page_size(small) == len(small.body) + PAGE_OVERHEAD


def test_shared_dependencies_cost_less_than_new_ones():
    cache = Cache(ttl=60, max_entries=100)
    page = make_page("x")
    cache.put_page("p1", page, {"fronts:front:home", "articles:a"})
    first = cache.page_bytes
    cache.put_page("p2", page, {"fronts:front:home", "articles:b"})
    assert cache.page_bytes - first == first - DEP_NEW + DEP_SHARED


def test_bytes_and_entries_are_exported():
    cache = Cache(ttl=60, max_entries=100, max_bytes=1 << 30)
    cache.export_metrics()
    cache.put_doc("articles:a", article_doc(1))
    cache.put_page("page:a", rendered(1), {"articles:a"})
    assert REGISTRY.get_sample_value("kazpost_cache_bytes", {"kind": "doc"}) == cache.doc_bytes > 0
    assert REGISTRY.get_sample_value("kazpost_cache_bytes", {"kind": "page"}) == cache.page_bytes > 0
    assert REGISTRY.get_sample_value("kazpost_cache_entries", {"kind": "page"}) == 1
    evicted = REGISTRY.get_sample_value("kazpost_cache_evictions_total", {"reason": "bytes"}) or 0
    cache.max_bytes = cache.bytes  # the next entry pushes the least recent out
    cache.put_doc("articles:b", article_doc(2))
    assert REGISTRY.get_sample_value("kazpost_cache_evictions_total", {"reason": "bytes"}) == evicted + 1
    assert cache.get_doc("articles:a") is MISSING


def test_a_read_that_an_invalidation_overtakes_is_not_cached():
    """A reader reads a document (or builds a page), the event that changes it is handled while
    the read is in flight, then the reader caches what it read: that result may be the old one,
    so it is served but not kept (otherwise the old page would live until the TTL ends)."""
    cache = Cache(ttl=60, max_entries=100)
    since = cache.generation
    cache.invalidate("articles:a")  # the event, while the read of articles:a is in flight
    cache.put_doc("articles:a", {"v": 1}, since=since)
    assert cache.get_doc("articles:a") is MISSING
    cache.put_doc("articles:b", {"v": 1}, since=since)  # another key: cached
    assert cache.get_doc("articles:b") == {"v": 1}

    # Listings are dropped by prefix; a page being built from a listing document that was not
    # cached yet is covered too.
    since = cache.generation
    cache.invalidate_prefix("fronts:")
    cache.put_doc("fronts:front:home", {"buckets": []}, since=since)
    cache.put_page("page:/", make_page("old home"), {"fronts:front:home"}, since=since)
    assert cache.get_doc("fronts:front:home") is MISSING and cache.get_page("page:/") is None
    since = cache.generation  # a build that starts after the event caches as usual
    cache.put_page("page:/", make_page("new home"), {"fronts:front:home"}, since=since)
    assert cache.get_page("page:/") is not None


def test_the_memory_of_invalidations_is_bounded_and_errs_on_the_safe_side(monkeypatch):
    import services.gateway.cache as module

    monkeypatch.setattr(module, "RECENT_MAX", 10)
    cache = Cache(ttl=60, max_entries=100)
    since = cache.generation
    for i in range(50):
        cache.invalidate(f"articles:{i}")
    assert len(cache._recent) == 10
    cache.put_doc("articles:x", 1, since=since)  # older than what is remembered: not cached
    assert cache.get_doc("articles:x") is MISSING
    cache.clear()
    since = cache.generation
    cache.put_doc("articles:x", 2, since=since)
    assert cache.get_doc("articles:x") == 2
