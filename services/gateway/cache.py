"""The gateway's in-process cache: documents and rendered pages, dropped by events.

Documents are cached by key (``articles:<id>``, ``related:<id>``, ``fronts:<front id>``).
A rendered page records the document keys it was built from; invalidating a key drops the
documents and every page built from it. Entries also expire after ``ttl`` seconds (embargo
lifts and the masthead date need no event). Bounded in size (oldest entries dropped first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

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


class Cache:
    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._docs: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._pages: OrderedDict[str, tuple[float, Page, frozenset[str]]] = OrderedDict()
        self._dependants: dict[str, set[str]] = {}

    # documents ----------------------------------------------------------------------------
    def get_doc(self, key: str) -> Any:
        entry = self._docs.get(key)
        if entry is None or entry[0] < time.monotonic():
            _DOC_MISS()
            return _MISSING
        _DOC_HIT()
        return entry[1]

    def put_doc(self, key: str, value: Any) -> None:
        if self.ttl <= 0:
            return
        self._docs[key] = (time.monotonic() + self.ttl, value)
        self._docs.move_to_end(key)
        while len(self._docs) > self.max_entries:
            self._docs.popitem(last=False)

    # pages --------------------------------------------------------------------------------
    def get_page(self, key: str) -> Page | None:
        entry = self._pages.get(key)
        if entry is None or entry[0] < time.monotonic():
            _PAGE_MISS()
            return None
        _PAGE_HIT()
        return entry[1]

    def put_page(self, key: str, page: Page, deps: set[str], ttl: float | None = None) -> None:
        if self.ttl <= 0:
            return
        self._pages[key] = (time.monotonic() + min(ttl if ttl is not None else self.ttl, self.ttl), page, frozenset(deps))
        self._pages.move_to_end(key)
        for dep in deps:
            self._dependants.setdefault(dep, set()).add(key)
        while len(self._pages) > self.max_entries:
            old_key, (_, _, old_deps) = self._pages.popitem(last=False)
            for dep in old_deps:
                self._dependants.get(dep, set()).discard(old_key)

    # invalidation -------------------------------------------------------------------------
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

    def clear(self) -> None:
        self._docs.clear()
        self._pages.clear()
        self._dependants.clear()


MISSING = _MISSING
