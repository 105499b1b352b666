"""Listing buckets split into finer time slots when they outgrow BUCKET_MAX_ITEMS: every article
stays listed exactly once, newest first, and readers follow split buckets to their children."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.storage.handlers import KnownDocuments, ListingChange, apply_listing_changes, apply_to_index
from shared.listings import BUCKET_MAX_ITEMS, bucket_id, bucket_of, bucket_start, child_of, index_id, time_key, walk_buckets
from shared.packed import unpack
from tests.unit.test_storage_logic import FakeDb

HOME = {"kind": "home", "slug": "home", "name": "Home"}
SLOT = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def teaser(i: int, at: datetime) -> dict:
    return {"id": f"{i:016x}", "published_at": at, "headline": f"h{i}"}


def place(i: int, at: datetime) -> ListingChange:
    return ListingChange("home", bucket_of("home", at), HOME, f"{i:016x}", teaser(i, at), at)


def remove(i: int, at: datetime) -> ListingChange:
    return ListingChange("home", bucket_of("home", at), HOME, f"{i:016x}", None, at)


async def listed(db: FakeDb, key: str = "home") -> list[dict]:
    fronts = db["fronts"]
    index = fronts.docs.get(index_id(key)) or {}

    async def read(doc_id: str):
        return await fronts.find_one({"_id": doc_id})

    out = []
    async for _, doc in walk_buckets(key, index.get("buckets", []), read):
        out += unpack((doc or {}).get("items"))
    return out


def test_time_keys_nest_and_bucket_start_reads_every_length():
    at = datetime(2026, 11, 27, 6, 35, 42, 123_999, tzinfo=UTC)
    assert time_key(at) == "20261127063542123"  # milliseconds, rounded down like the database
    assert bucket_of("home", at) == "20261127063" and time_key(at).startswith(bucket_of("section:x", at))
    assert child_of("20261127063", at) == "202611270635"
    assert child_of("20261127063542123", at) is None  # the finest slot
    assert bucket_start("2026112706") == datetime(2026, 11, 27, 6, tzinfo=UTC)
    assert bucket_start("20261127063") == datetime(2026, 11, 27, 6, 30, tzinfo=UTC)
    assert bucket_start("2026112706354") == datetime(2026, 11, 27, 6, 35, 40, tzinfo=UTC)
    assert bucket_start("20261127063542123") == datetime(2026, 11, 27, 6, 35, 42, 123_000, tzinfo=UTC)
    # Slots that do not overlap sort newest first as strings, whatever their lengths.
    slots = ["2026112705", "202611270608", "2026112706095", "20261127061", "2026112706205"]
    assert sorted(slots, reverse=True) == sorted(slots, key=bucket_start, reverse=True)


@pytest.mark.parametrize("batch", [1, 7, 200])
async def test_a_crowded_slot_splits_and_every_article_stays_listed_once_newest_first(batch):
    rng = random.Random(batch)
    times = {i: SLOT + timedelta(seconds=rng.uniform(0, 599)) for i in range(200)}
    db, known = FakeDb(), KnownDocuments()
    order = list(times)
    rng.shuffle(order)
    for start in range(0, len(order), batch):
        await apply_listing_changes(db, [place(i, times[i]) for i in order[start:start + batch]], known)  # type: ignore[arg-type]
    items = await listed(db)
    assert [item["id"] for item in items] == [f"{i:016x}" for i in sorted(times, key=lambda i: times[i], reverse=True)]
    fronts = db["fronts"].docs
    assert fronts[bucket_id("home", "20261127060")]["split"] is True
    assert all(isinstance(doc["items"], str) for doc in fronts.values() if "items" in doc)  # stored packed
    assert max(len(unpack(doc.get("items"))) for doc in fronts.values()) <= BUCKET_MAX_ITEMS
    listed_buckets = fronts[index_id("home")]["buckets"]
    assert all(not fronts[bucket_id("home", b)].get("split") for b in listed_buckets), "the index lists leaves only"
    assert listed_buckets == sorted(listed_buckets, reverse=True)

    # A kill finds the article in its leaf, through the split buckets.
    gone = order[:30]
    await apply_listing_changes(db, [remove(i, times[i]) for i in gone], known)  # type: ignore[arg-type]
    assert {item["id"] for item in await listed(db)} == {f"{i:016x}" for i in times if i not in gone}


async def test_a_writer_that_does_not_know_of_a_split_moves_its_changes_to_the_children():
    db = FakeDb()
    times = {i: SLOT + timedelta(seconds=3 * i) for i in range(BUCKET_MAX_ITEMS + 10)}
    await apply_listing_changes(db, [place(i, at) for i, at in times.items()], KnownDocuments())  # type: ignore[arg-type]
    assert db["fronts"].docs[bucket_id("home", "20261127060")]["split"] is True
    other = KnownDocuments()  # another replica: knows nothing
    late = SLOT + timedelta(seconds=1)
    await apply_listing_changes(db, [place(999, late), remove(0, times[0])], other)  # type: ignore[arg-type]
    ids = [item["id"] for item in await listed(db)]
    assert ids.count(f"{999:016x}") == 1 and f"{0:016x}" not in ids and len(ids) == len(times)
    assert bucket_id("home", "20261127060") in other.split


async def test_articles_published_in_the_same_millisecond_stay_in_the_finest_slot():
    db = FakeDb()
    at = SLOT + timedelta(seconds=5)
    await apply_listing_changes(db, [place(i, at) for i in range(BUCKET_MAX_ITEMS + 5)], KnownDocuments())  # type: ignore[arg-type]
    items = await listed(db)
    assert len(items) == BUCKET_MAX_ITEMS + 5 and len({i["id"] for i in items}) == len(items)


def test_the_index_never_lists_a_split_bucket_beside_its_children():
    meta = HOME
    now = SLOT
    split = apply_to_index({"buckets": ["20261127061", "20261127060"]}, "home",
                           {"20261127060": False, "202611270605": True, "202611270601": True}, meta, [], now)
    assert split["buckets"] == ["20261127061", "202611270605", "202611270601"]
    # A late write of another replica that still saw the parent filled: the children stay.
    late = apply_to_index({**split, **meta}, "home", {"20261127060": True}, meta, [], now)
    assert late is None or late.get("buckets", split["buckets"]) == split["buckets"]
    # A child added while its parent is still listed replaces the parent.
    healed = apply_to_index({"buckets": ["20261127060"], **meta}, "home", {"202611270609": True}, meta, [], now)
    assert healed["buckets"] == ["202611270609"]


async def test_readers_follow_a_split_bucket_listed_by_a_stale_index_and_read_each_leaf_once():
    db = FakeDb()
    times = {i: SLOT + timedelta(seconds=7 * i) for i in range(BUCKET_MAX_ITEMS + 20)}
    await apply_listing_changes(db, [place(i, at) for i, at in times.items()], KnownDocuments())  # type: ignore[arg-type]
    fronts = db["fronts"]
    leaves = fronts.docs[index_id("home")]["buckets"]
    fronts.docs[index_id("home")]["buckets"] = [*leaves, "20261127060"]  # stale: the split parent as well
    reads: list[str] = []

    async def read(doc_id: str):
        reads.append(doc_id)
        return await fronts.find_one({"_id": doc_id})

    items = [i async for _, doc in walk_buckets("home", fronts.docs[index_id("home")]["buckets"], read) for i in unpack(doc["items"])]
    assert len(items) == len(times) == len({i["id"] for i in items})
    assert len(reads) == len(set(reads))
