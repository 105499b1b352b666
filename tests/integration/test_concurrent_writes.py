"""Several writers of one document on the real database (listing buckets are written by every
storage replica): each writer has its own client and connection, and no write is lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.storage.handlers import KnownDocuments, ListingChange, apply_listing_changes
from shared.listings import bucket_id, index_id, walk_buckets
from shared.mongo import FRONTS, database, make_client, read_modify_write
from shared.packed import unpack

pytestmark = pytest.mark.integration


async def test_concurrent_read_modify_writes_lose_nothing(mongo_settings, db, run_id):
    coll = db[FRONTS]
    doc_id = f"test:concurrent:{run_id}"
    await coll.insert_one({"_id": doc_id, "rev": 1, "items": []})
    clients = [make_client(mongo_settings, app_name=f"writer-{w}") for w in range(6)]
    try:
        async def writer(w: int) -> None:
            c = database(clients[w], mongo_settings)[FRONTS]
            for i in range(12):
                value = w * 100 + i

                def change(current, value=value):
                    items = list((current or {}).get("items", []))
                    return None if value in items else {"items": [*items, value]}
                assert await read_modify_write(c, doc_id, change)

        await asyncio.gather(*(writer(w) for w in range(6)))
    finally:
        for client in clients:
            await client.close()
    doc = await coll.find_one({"_id": doc_id})
    assert sorted(doc["items"]) == sorted(w * 100 + i for w in range(6) for i in range(12))
    assert doc["rev"] == 1 + 72
    assert await coll.count_documents({"_id": {"$regex": f"^claim:{doc_id}@"}}) == 0


async def test_two_storage_replicas_merging_into_one_bucket_keep_every_article(mongo_settings, db, run_id):
    """Two writers apply listing changes to the same bucket at once, as two storage replicas do."""
    key = f"section:concurrent{run_id}"
    bucket = "20261128000"
    meta = {"kind": "section", "slug": f"concurrent{run_id}", "name": "Concurrent"}

    def teaser(i: int) -> dict:
        return {"id": f"{i:016x}", "headline": f"Item {i}",
                "published_at": datetime(2026, 11, 28, tzinfo=UTC) + timedelta(minutes=i)}

    clients = [make_client(mongo_settings, app_name=f"replica-{r}") for r in range(2)]
    try:
        async def replica(r: int) -> None:
            rdb = database(clients[r], mongo_settings)
            known = KnownDocuments()
            for i in range(r, 60, 2):
                await apply_listing_changes(rdb, [ListingChange(key, bucket, meta, f"{i:016x}", teaser(i))], known)

        await asyncio.gather(replica(0), replica(1))
    finally:
        for client in clients:
            await client.close()
    # 60 items outgrow one bucket: it was split (by whichever replica got there) into minutes.
    parent = await db[FRONTS].find_one({"_id": bucket_id(key, bucket)})
    assert parent["split"] is True and unpack(parent["items"]) == []
    index = await db[FRONTS].find_one({"_id": index_id(key)})

    async def read(doc_id: str):
        return await db[FRONTS].find_one({"_id": doc_id})

    listed = [item["id"] async for _, doc in walk_buckets(key, index["buckets"], read) for item in unpack(doc["items"])]
    assert listed == [f"{i:016x}" for i in reversed(range(60))]  # each once, newest first
    assert await db[FRONTS].count_documents({"_id": {"$regex": "^claim:"}}) == 0
