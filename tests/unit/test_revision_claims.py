"""Several writers of one document (listing buckets, subscribers): the revision claim makes a
read-modify-write a compare-and-swap even where the server's update is not one.

``FerretLikeCollection`` does what FerretDB v1 does with ``update_one({_id, rev}, ...)``: it
finds the matching document, then writes it back by ``_id`` alone, and other requests run in
between. The rev guard alone then lets two writers both "win"; with claims nothing is lost."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.mongo import ContentionError, claim_id, read_modify_write, write_revisions


class Result:
    def __init__(self, matched: int) -> None:
        self.matched_count = matched


class FerretLikeCollection:
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    async def find_one(self, flt: dict):
        await asyncio.sleep(0)
        doc = self.docs.get(flt["_id"])
        return copy.deepcopy(doc) if doc is not None else None

    async def insert_one(self, doc: dict):
        await asyncio.sleep(0)
        if doc["_id"] in self.docs:  # the unique _id index: atomic
            raise DuplicateKeyError("dup", 11000)
        self.docs[doc["_id"]] = copy.deepcopy(doc)

    async def insert_many(self, docs: list[dict], ordered: bool = True):
        await asyncio.sleep(0)
        errors = []
        for i, doc in enumerate(docs):
            if doc["_id"] in self.docs:
                errors.append({"index": i, "code": 11000})
            else:
                self.docs[doc["_id"]] = copy.deepcopy(doc)
        if errors:
            raise BulkWriteError({"writeErrors": errors})

    async def update_one(self, flt: dict, update: dict):
        doc = self.docs.get(flt["_id"])
        if doc is None or any(doc.get(k) != v for k, v in flt.items()):
            return Result(0)
        snapshot = copy.deepcopy(doc)
        await asyncio.sleep(0)  # matched; the write by _id comes later
        snapshot.update(copy.deepcopy(update["$set"]))
        self.docs[flt["_id"]] = snapshot
        return Result(1)

    async def delete_one(self, flt: dict):
        await asyncio.sleep(0)
        doc = self.docs.get(flt["_id"])
        if doc is not None and all(doc.get(k) == v for k, v in flt.items()):
            del self.docs[flt["_id"]]


def append(value: int):
    def change(current):
        items = list((current or {}).get("items", []))
        return None if value in items else {"items": [*items, value]}
    return change


async def plain_rev_guarded_append(coll, doc_id: str, value: int) -> None:
    """The read-modify-write without claims: correct on MongoDB, not here."""
    while True:
        current = await coll.find_one({"_id": doc_id})
        result = await coll.update_one({"_id": doc_id, "rev": current["rev"]},
                                       {"$set": {"items": [*current["items"], value], "rev": current["rev"] + 1}})
        if result.matched_count:
            return


async def test_the_rev_guard_alone_loses_updates_on_such_a_server():
    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 1, "items": []}
    await asyncio.gather(*(plain_rev_guarded_append(coll, "d", v) for v in range(20)))
    assert len(coll.docs["d"]["items"]) < 20  # the failure the claims prevent


async def test_concurrent_writers_lose_nothing_with_claims():
    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 1, "items": []}
    await asyncio.gather(*(read_modify_write(coll, "d", append(v)) for v in range(40)))  # type: ignore[arg-type]
    doc = coll.docs["d"]
    assert sorted(doc["items"]) == list(range(40))
    assert doc["rev"] == 41  # one revision per write, none skipped
    assert [k for k in coll.docs if k.startswith("claim:")] == []  # claims are released


async def test_a_claimed_revision_is_not_written_twice():
    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 3, "items": [1]}
    coll.docs[claim_id("d", 4)] = {"_id": claim_id("d", 4), "claim": True, "at": datetime.now(UTC)}
    assert await write_revisions(coll, {"d": (3, {"items": [1, 2]})}) == set()  # type: ignore[arg-type]
    assert coll.docs["d"] == {"_id": "d", "rev": 3, "items": [1]}
    assert claim_id("d", 4) in coll.docs  # someone else's claim is left alone


async def test_an_abandoned_claim_is_skipped_after_the_lease():
    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 3, "items": [1]}
    long_ago = datetime.now(UTC) - timedelta(seconds=120)
    coll.docs[claim_id("d", 4)] = {"_id": claim_id("d", 4), "claim": True, "at": long_ago}  # its writer died
    assert await write_revisions(coll, {"d": (3, {"items": [1, 2]})}, lease_s=30) == {"d"}  # type: ignore[arg-type]
    assert coll.docs["d"] == {"_id": "d", "rev": 5, "items": [1, 2]}
    assert [k for k in coll.docs if k.startswith("claim:")] == []


async def test_a_stale_read_writes_nothing():
    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 7, "items": [1, 2, 3]}
    assert await write_revisions(coll, {"d": (5, {"items": [9]})}) == set()  # type: ignore[arg-type]
    assert coll.docs["d"]["items"] == [1, 2, 3]


async def test_a_failed_write_releases_its_claims_so_nobody_waits_for_the_lease():
    from pymongo.errors import NetworkTimeout

    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 3, "items": [1]}

    async def timing_out(flt, update):
        raise NetworkTimeout("timed out")
    real_update, coll.update_one = coll.update_one, timing_out
    with pytest.raises(NetworkTimeout):
        await write_revisions(coll, {"d": (3, {"items": [1, 2]})})  # type: ignore[arg-type]
    assert [k for k in coll.docs if k.startswith("claim:")] == []
    coll.update_one = real_update
    assert await read_modify_write(coll, "d", append(2))  # type: ignore[arg-type]
    assert coll.docs["d"]["items"] == [1, 2]


async def test_a_document_held_by_others_is_a_transient_failure_not_a_bug():
    from shared.kafka import TransientError

    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 3, "items": [1]}
    coll.docs[claim_id("d", 4)] = {"_id": claim_id("d", 4), "claim": True, "at": datetime.now(UTC)}  # a fresh claim
    with pytest.raises(TransientError):  # retried by the consumer with backoff, past the lease
        await read_modify_write(coll, "d", append(2), attempts=3)  # type: ignore[arg-type]


async def test_a_claim_the_database_did_not_release_is_released_when_it_answers_again():
    """A connection cut between the claim and its release: the release is tried again in the
    background, so the next writer goes on as soon as the database is back, not after the lease."""
    from pymongo.errors import AutoReconnect

    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 3, "items": [1]}
    down = True
    real_update, real_delete = coll.update_one, coll.delete_one

    async def update_one(flt, update):
        if down:
            raise AutoReconnect("connection reset")
        return await real_update(flt, update)

    async def delete_one(flt):
        if down:
            raise AutoReconnect("connection reset")
        return await real_delete(flt)
    coll.update_one, coll.delete_one = update_one, delete_one
    with pytest.raises(AutoReconnect):
        await write_revisions(coll, {"d": (3, {"items": [1, 2]})}, lease_s=30)  # type: ignore[arg-type]
    assert claim_id("d", 4) in coll.docs  # left behind while the database is away
    with pytest.raises(ContentionError):  # another writer cannot have that revision yet
        await read_modify_write(coll, "d", append(2), attempts=2)  # type: ignore[arg-type]
    down = False
    await asyncio.sleep(1.5)  # the background release retries every second
    assert claim_id("d", 4) not in coll.docs
    assert await read_modify_write(coll, "d", append(2), attempts=2)  # type: ignore[arg-type]
    assert coll.docs["d"] == {"_id": "d", "rev": 4, "items": [1, 2]}


async def test_a_release_deletes_only_its_own_claim():
    """A delete that timed out may have been applied and the revision claimed again by another
    writer: releasing it again must not delete that writer's claim."""
    coll = FerretLikeCollection()
    coll.docs["d"] = {"_id": "d", "rev": 3, "items": [1]}
    real_update = coll.update_one

    async def update_one(flt, update):
        # Our claim vanished meanwhile (as if a late release of ours had been applied) and
        # another writer claimed the same revision.
        coll.docs[claim_id("d", 4)] = {"_id": claim_id("d", 4), "claim": True, "at": datetime.now(UTC), "owner": "other"}
        return await real_update({"_id": "d", "rev": 99}, update)  # and our write does not match
    coll.update_one = update_one
    assert await write_revisions(coll, {"d": (3, {"items": [1, 2]})}) == set()  # type: ignore[arg-type]
    assert coll.docs[claim_id("d", 4)]["owner"] == "other"
