"""Precomputed listings ("fronts"): the home page, each section and each tag.

A listing is split into time buckets so that storing an article rewrites one small document:

- the index document ``front:<key>`` (``key`` = ``home``, ``section:<slug>``, ``tag:<slug>``)
  holds the listing's name and the keys of its non-empty buckets, newest first (and, for the
  home listing, the known sections);
- a bucket document ``front:<key>:<bucket>`` holds the teasers published in one ten-minute slot
  (home: ``YYYYMMDDHHm``) or one hour (sections and tags: ``YYYYMMDDHH``), newest first.
  Small buckets matter: FerretDB rewrites a whole document on every update.

An article's bucket follows from its publication time, so an update or a kill finds it without
a lookup. Storage is the only writer; the gateway reads the index and then buckets, newest
first, until a page is full: every read is an ``_id`` lookup.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

HOME_KEY = "home"
MAX_BUCKETS = 20_000  # an index keeps the newest buckets (~4.5 months of home slots, if all are used)


def index_id(key: str) -> str:
    return f"front:{key}"


def bucket_of(key: str, published_at: datetime) -> str:
    hour = published_at.astimezone(UTC).strftime("%Y%m%d%H")
    return hour + str(published_at.minute // 10) if key == HOME_KEY else hour


def bucket_start(bucket: str) -> datetime:
    """The earliest publication time a bucket can hold."""
    start = datetime.strptime(bucket[:10], "%Y%m%d%H").replace(tzinfo=UTC)
    return start + timedelta(minutes=10 * int(bucket[10:])) if len(bucket) > 10 else start


def bucket_id(key: str, bucket: str) -> str:
    return f"front:{key}:{bucket}"


def sort_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda i: (i["published_at"], i["id"]), reverse=True)
