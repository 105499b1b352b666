"""Precomputed listings ("fronts"): the home page, each section and each tag.

A listing is split into time buckets so that storing an article rewrites one small document:

- the index document ``front:<key>`` (``key`` = ``home``, ``section:<slug>``, ``tag:<slug>``)
  holds the listing's name and the keys of its non-empty buckets, newest first (and, for the
  home listing, the known sections);
- a bucket document ``front:<key>:<bucket>`` holds the teasers published in one time slot,
  newest first. A bucket key is a prefix of the publication time written as
  ``YYYYMMDDHHMMSSfff`` (UTC, milliseconds): a listing starts with ten-minute slots for the home
  page (``YYYYMMDDHHm``) and hours for sections and tags (``YYYYMMDDHH``);
- a bucket that grows past :data:`BUCKET_MAX_ITEMS` is split into the slots one digit finer
  (an hour into ten-minute slots, those into minutes, ten seconds, seconds, ...): its items move
  to the child buckets, the bucket keeps ``split: true`` and the keys of its children, and the
  index lists the children instead. A split is never undone, so a writer that knows a bucket is
  split goes straight to the child. Buckets stay small whatever the publishing rate, and
  small buckets matter: FerretDB rewrites (and re-parses) a whole document on every update.

An article's bucket follows from its publication time (and the splits), so an update or a kill
finds it without a lookup. Storage is the only writer; the gateway reads the index and then
buckets, newest first, following split buckets to their children, until a page is full: every
read is an ``_id`` lookup. Non-overlapping slots sort newest first as plain strings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

HOME_KEY = "home"
MAX_BUCKETS = 20_000  # an index keeps the newest buckets (~4.5 months of home slots, if all are used)
BUCKET_MAX_ITEMS = 48  # a bucket with more items is split into finer time slots
TIME_KEY_LEN = 17  # YYYYMMDDHHMMSSfff: the finest slot is one millisecond (the database's precision)


def index_id(key: str) -> str:
    return f"front:{key}"


def bucket_of(key: str, published_at: datetime) -> str:
    hour = published_at.astimezone(UTC).strftime("%Y%m%d%H")
    return hour + str(published_at.minute // 10) if key == HOME_KEY else hour


def time_key(published_at: datetime) -> str:
    """The publication time as ``YYYYMMDDHHMMSSfff`` (UTC); every bucket key is a prefix of it."""
    t = published_at.astimezone(UTC) if published_at.tzinfo else published_at.replace(tzinfo=UTC)
    return t.strftime("%Y%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"


def child_of(bucket: str, published_at: datetime) -> str | None:
    """The slot one digit finer than ``bucket`` that holds ``published_at`` (None: finest)."""
    if len(bucket) >= TIME_KEY_LEN:
        return None
    return time_key(published_at)[: len(bucket) + 1]


def bucket_start(bucket: str) -> datetime:
    """The earliest publication time a bucket can hold."""
    full = bucket.ljust(TIME_KEY_LEN, "0")
    return datetime.strptime(full[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC, microsecond=int(full[14:]) * 1000)


async def walk_buckets(key: str, buckets: list[str], read: Callable[[str], Awaitable[dict[str, Any] | None]], *,
                       skip: Callable[[str], bool] | None = None) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
    """(bucket, document) of a listing's buckets newest first, each read once, split buckets
    replaced by their children; ``read`` gets a document id, ``skip`` drops a bucket unread."""
    queue = deque(buckets)
    seen: set[str] = set()
    while queue:
        bucket = queue.popleft()
        if bucket in seen or (skip is not None and skip(bucket)):
            continue
        seen.add(bucket)
        doc = await read(bucket_id(key, bucket))
        if doc is not None and doc.get("split"):
            queue.extendleft(sorted(doc.get("children") or []))  # ends up newest first at the front
            continue
        yield bucket, doc


def bucket_id(key: str, bucket: str) -> str:
    return f"front:{key}:{bucket}"


def sort_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda i: (i["published_at"], i["id"]), reverse=True)
