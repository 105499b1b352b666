"""The gateway's in-process cache: documents and rendered pages, dropped by events.

Documents are cached by key (``articles:<id>``, ``related:<id>``, ``fronts:<front id>``).
A rendered page records the document keys it was built from; invalidating a key drops the
document and every page built from it. Entries also expire after ``ttl`` seconds (embargo
lifts and the masthead date need no event).

Bounded by bytes (``max_bytes``) and by entries (``max_entries`` documents and as many pages),
least recently used first, approximately ("second chance"), documents and pages in one queue
order. A hit only stamps the entry (one attribute store: the hot path costs what it did);
when room is needed, the entry at the front of the queue goes unless it was read since it was
queued, in which case it moves to the back instead. So the pages readers open stay, and the
documents they were built from, needed again only when a page is rebuilt, age out first.
(Moving an entry on every hit instead, exact LRU, costs an ``OrderedDict.move_to_end`` per hit
and did not hit more often: benchmarks/gateway_memory.py.)

A page counts as its bodies plus a measured overhead (header dicts, key, dependency index); a
document as the size of its Python objects (``doc_size``, a walk within 1% of tracemalloc on
stored articles and related lists). Keys under an indexed prefix (``fronts:``) are kept in a
set, so dropping all fronts costs what is dropped, never a scan of the cache.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from shared import metrics


@dataclass(slots=True)
class Page:
    """A rendered response, with its header sets computed once (served many times)."""

    status: int
    body: bytes
    gzip_body: bytes | None
    br_body: bytes | None
    etag: str
    last_modified: float
    plain_headers: dict[str, str]
    gzip_headers: dict[str, str]
    br_headers: dict[str, str]
    not_modified_headers: dict[str, str]
    slug: str | None = None


_MISSING = object()
_DOC_HIT, _DOC_MISS = metrics.CACHE_EVENTS.labels("doc_hit"), metrics.CACHE_EVENTS.labels("doc_miss")
_PAGE_HIT, _PAGE_MISS = metrics.CACHE_EVENTS.labels("page_hit"), metrics.CACHE_EVENTS.labels("page_miss")
_DROPS = metrics.LoopCounter("kazpost_cache_evictions", "Gateway cache entries dropped without an event", ["reason"])
_DROP_BYTES, _DROP_ENTRIES = _DROPS.labels("bytes"), _DROPS.labels("entries")
_DROP_EXPIRED, _DROP_OVERSIZE = _DROPS.labels("expired"), _DROPS.labels("oversize")
CACHE_BYTES = Gauge("kazpost_cache_bytes", "Bytes the gateway cache accounts for, by kind", ["kind"])
CACHE_ENTRIES = Gauge("kazpost_cache_entries", "Entries in the gateway cache, by kind", ["kind"])

# Measured with tracemalloc (benchmarks/gateway_memory.py), per cached entry beyond its value
# and key: the entry object, its OrderedDict node and its share of the dict's table.
ENTRY_OVERHEAD = 240
# A page beyond its bodies: the Page object, its four header dicts (the strings in them are
# mostly shared) and the three bytes objects' headers.
PAGE_OVERHEAD = 1_950
# Each dependency of a page: its key string and slot in the page's tuple, and either a new
# dependants set (an article's keys, usually one page each) or a slot in an existing one.
DEP_NEW, DEP_SHARED = 330, 110
# An entry bigger than this share of the byte budget is not cached: it would push out many others.
MAX_SHARE = 8


def page_size(page: Page) -> int:
    """The bytes a cached page holds: its bodies and a measured fixed overhead."""
    size = len(page.body) + PAGE_OVERHEAD
    if page.gzip_body is not None:
        size += len(page.gzip_body)
    if page.br_body is not None:
        size += len(page.br_body)
    return size


def doc_size(doc: Any, getsizeof: Callable[[Any], int] = sys.getsizeof) -> int:
    """The bytes of a decoded document's Python objects (dicts, lists, keys, values).

    ``None``, booleans and small shared values are counted as their own size or 0; strings,
    datetimes and numbers by ``sys.getsizeof``. Containers are walked (documents are trees).
    """
    total = 0
    stack = [doc]
    pop, push = stack.pop, stack.append
    while stack:
        obj = pop()
        if obj is None:
            continue
        total += getsizeof(obj)
        kind = type(obj)
        if kind is dict:
            for key, value in obj.items():
                total += getsizeof(key)
                vkind = type(value)
                if vkind is dict or vkind is list or vkind is tuple:
                    push(value)
                elif value is not None and vkind is not bool:
                    total += getsizeof(value)
        elif kind is list or kind is tuple:
            for value in obj:
                vkind = type(value)
                if vkind is dict or vkind is list or vkind is tuple:
                    push(value)
                elif value is not None and vkind is not bool:
                    total += getsizeof(value)
    return total


class _Entry:
    __slots__ = ("expires", "used", "queued", "value", "size", "deps")

    def __init__(self, expires: float, now: float, value: Any, size: int, deps: tuple[str, ...]) -> None:
        self.expires = expires
        self.used = now  # last read
        self.queued = now  # when it went to the back of its queue
        self.value = value
        self.size = size
        self.deps = deps


RECENT_MAX = 50_000  # invalidated keys remembered for reads in flight (a read started earlier is not cached)


class Cache:
    def __init__(self, *, ttl: float, max_entries: int, max_bytes: int | None = None,
                 indexed_prefixes: Iterable[str] = ("fronts:",), clock: Callable[[], float] = time.monotonic) -> None:
        """``max_bytes`` None: bounded by entries only. ``indexed_prefixes``: the prefixes
        ``invalidate_prefix`` accepts (their keys are tracked as they are cached)."""
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._max_entry_bytes = max_bytes // MAX_SHARE if max_bytes is not None else None
        self._clock = clock
        self._docs: OrderedDict[str, _Entry] = OrderedDict()
        self._pages: OrderedDict[str, _Entry] = OrderedDict()
        self._doc_bytes = 0
        self._page_bytes = 0
        self._dependants: dict[str, set[str]] = {}
        self._prefixes = tuple(indexed_prefixes)
        self._indexed: dict[str, set[str]] = {prefix: set() for prefix in self._prefixes}
        # Invalidations while a document is read or a page built: a read that started before
        # an invalidation of what it read must not cache its (possibly older) result.
        self._generation = 0
        self._recent: OrderedDict[str, int] = OrderedDict()  # key -> generation it was last invalidated at
        self._recent_floor = 0  # generation of the newest entry forgotten (bounded memory)
        self._prefix_generation: dict[str, int] = {}

    @property
    def generation(self) -> int:
        """Take it before reading; pass it as ``since`` to :meth:`put_doc` / :meth:`put_page`."""
        return self._generation

    def changed_since(self, key: str, since: int) -> bool:
        """Was ``key`` (possibly) invalidated after generation ``since``?"""
        if since < self._recent_floor:
            return True
        generation = self._recent.get(key)
        if generation is not None and generation > since:
            return True
        return any(g > since and key.startswith(p) for p, g in self._prefix_generation.items())

    # sizes --------------------------------------------------------------------------------
    @property
    def doc_bytes(self) -> int:
        return self._doc_bytes

    @property
    def page_bytes(self) -> int:
        return self._page_bytes

    @property
    def bytes(self) -> int:
        return self._doc_bytes + self._page_bytes

    @property
    def doc_count(self) -> int:
        return len(self._docs)

    @property
    def page_count(self) -> int:
        return len(self._pages)

    def export_metrics(self) -> None:
        """Report this cache's bytes and entries as ``kazpost_cache_bytes``/``_entries``
        (read when scraped: nothing on the request path)."""
        ref = weakref.ref(self)

        def read(attribute: str) -> Callable[[], float]:
            return lambda: getattr(cache, attribute) if (cache := ref()) is not None else 0

        for kind in ("doc", "page"):
            CACHE_BYTES.labels(kind).set_function(read(f"{kind}_bytes"))
            CACHE_ENTRIES.labels(kind).set_function(read(f"{kind}_count"))

    # documents ----------------------------------------------------------------------------
    def get_doc(self, key: str) -> Any:
        entry = self._docs.get(key)
        if entry is not None:
            now = self._clock()
            if entry.expires >= now:
                entry.used = now
                _DOC_HIT()
                return entry.value
            del self._docs[key]
            self._release_doc(key, entry)
            _DROP_EXPIRED()
        _DOC_MISS()
        return _MISSING

    def put_doc(self, key: str, value: Any, *, since: int | None = None) -> None:
        """Cache a document read; ``since``: :attr:`generation` before the read (the value is
        not cached when the key was invalidated meanwhile: it may predate that change)."""
        if self.ttl <= 0 or (since is not None and self.changed_since(key, since)):
            return
        old = self._docs.pop(key, None)
        if old is not None:
            self._release_doc(key, old)
        size = ENTRY_OVERHEAD + sys.getsizeof(key) + doc_size(value)
        if self._max_entry_bytes is not None and size > self._max_entry_bytes:
            _DROP_OVERSIZE()
            return
        now = self._clock()
        self._docs[key] = _Entry(now + self.ttl, now, value, size, ())
        self._doc_bytes += size
        if self._prefixes and key.startswith(self._prefixes):
            self._index(key)
        self._shrink()

    # pages --------------------------------------------------------------------------------
    def get_page(self, key: str) -> Page | None:
        entry = self._pages.get(key)
        if entry is not None:
            now = self._clock()
            if entry.expires >= now:
                entry.used = now
                _PAGE_HIT()
                return entry.value
            del self._pages[key]
            self._release_page(key, entry)
            _DROP_EXPIRED()
        _PAGE_MISS()
        return None

    def put_page(self, key: str, page: Page, deps: set[str], ttl: float | None = None, *, since: int | None = None) -> None:
        """Cache a page built from ``deps``; ``since`` as in :meth:`put_doc`, for any of them."""
        if self.ttl <= 0 or (since is not None and any(self.changed_since(dep, since) for dep in deps)):
            return
        old = self._pages.pop(key, None)
        if old is not None:
            self._release_page(key, old)
        deps_t = tuple(deps)
        size = ENTRY_OVERHEAD + sys.getsizeof(key) + page_size(page)
        if self._max_entry_bytes is not None and size + DEP_NEW * len(deps_t) > self._max_entry_bytes:
            _DROP_OVERSIZE()
            return
        dependants = self._dependants
        for dep in deps_t:
            pages = dependants.get(dep)
            if pages is None:
                dependants[dep] = {key}
                size += DEP_NEW
                if self._prefixes and dep.startswith(self._prefixes):
                    self._index(dep)
            else:
                pages.add(key)
                size += DEP_SHARED
        now = self._clock()
        self._pages[key] = _Entry(now + min(ttl if ttl is not None else self.ttl, self.ttl), now, page, size, deps_t)
        self._page_bytes += size
        self._shrink()

    # invalidation -------------------------------------------------------------------------
    def invalidate(self, *keys: str) -> int:
        """Drop the documents ``keys`` and every page built from them; the number dropped."""
        dropped = 0
        self._generation += 1
        recent = self._recent
        for key in keys:
            recent[key] = self._generation
            recent.move_to_end(key)
        while len(recent) > RECENT_MAX:
            _, self._recent_floor = recent.popitem(last=False)
        for key in keys:
            entry = self._docs.pop(key, None)
            if entry is not None:
                self._release_doc(key, entry)
                dropped += 1
            pages = self._dependants.pop(key, None)
            if pages:
                for page_key in pages:
                    page = self._pages.pop(page_key, None)
                    if page is not None:
                        self._release_page(page_key, page)
                        dropped += 1
            self._unindex(key)
        return dropped

    def invalidate_prefix(self, prefix: str) -> int:
        """``invalidate`` every key under ``prefix``, one of the indexed prefixes: the cost is
        that of the keys dropped, whatever the size of the cache."""
        keys = self._indexed.get(prefix)
        if keys is None:
            raise ValueError(f"{prefix!r} is not an indexed prefix of this cache (indexed: {self._prefixes})")
        dropped = self.invalidate(*tuple(keys))
        self._prefix_generation[prefix] = self._generation  # also what is being read under it right now
        return dropped

    def clear(self) -> None:
        self._generation += 1
        self._recent_floor = self._generation  # whatever is being read now predates the clear
        self._recent.clear()
        self._docs.clear()
        self._pages.clear()
        self._dependants.clear()
        for keys in self._indexed.values():
            keys.clear()
        self._doc_bytes = self._page_bytes = 0

    # bookkeeping --------------------------------------------------------------------------
    def _index(self, key: str) -> None:
        for prefix in self._prefixes:
            if key.startswith(prefix):
                self._indexed[prefix].add(key)

    def _unindex(self, key: str) -> None:
        if self._prefixes and key.startswith(self._prefixes):
            for prefix in self._prefixes:
                self._indexed[prefix].discard(key)

    def _release_doc(self, key: str, entry: _Entry) -> None:
        """Account for a document already removed from ``_docs``."""
        self._doc_bytes -= entry.size
        if key not in self._dependants:
            self._unindex(key)

    def _release_page(self, key: str, entry: _Entry) -> None:
        """Account for a page already removed from ``_pages``, and take it out of its
        dependencies' sets (a set left empty goes, so the index never outgrows the cache)."""
        self._page_bytes -= entry.size
        dependants = self._dependants
        for dep in entry.deps:
            pages = dependants.get(dep)
            if pages is not None:
                pages.discard(key)
                if not pages:
                    del dependants[dep]
                    if dep not in self._docs:
                        self._unindex(dep)

    def _shrink(self) -> None:
        docs, pages = self._docs, self._pages
        while len(docs) > self.max_entries:
            self._drop_front(docs, self._release_doc, _DROP_ENTRIES)
        while len(pages) > self.max_entries:
            self._drop_front(pages, self._release_page, _DROP_ENTRIES)
        if self.max_bytes is None:
            return
        while self._doc_bytes + self._page_bytes > self.max_bytes:
            doc = next(iter(docs.values())) if docs else None
            page = next(iter(pages.values())) if pages else None
            if page is None or (doc is not None and doc.queued <= page.queued):
                self._drop_front(docs, self._release_doc, _DROP_BYTES)
            else:
                self._drop_front(pages, self._release_page, _DROP_BYTES)

    def _drop_front(self, entries: OrderedDict[str, _Entry], release: Callable[[str, _Entry], None],
                    counter: Callable[[], None]) -> None:
        """Drop the entry at the front of ``entries``, or, if it was read since it was queued,
        move it to the back (each read earns one such second chance: amortised O(1))."""
        key, entry = next(iter(entries.items()))
        if entry.used > entry.queued:
            entry.queued = self._clock()
            entries.move_to_end(key)
            return
        del entries[key]
        release(key, entry)
        counter()


MISSING = _MISSING
