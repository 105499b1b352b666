"""MongoDB access shared by the services (PyMongo's asyncio API).

Rules (fast on MongoDB and on FerretDB alike):
- request-path reads are single ``_id`` lookups of documents shaped for the page;
- writes are single-document and version-guarded: ``{_id, version: {$lt: v}}`` + upsert, and a
  DuplicateKeyError means the stored document is as new or newer (stale write, ignored);
- documents with several writers (listings, subscribers) are read-modify-written under a
  revision claim (:func:`write_revisions`), a compare-and-swap on MongoDB and FerretDB alike;
- batches hold at most :data:`WRITE_BATCH` operations;
- every call carries a client-side timeout (``timeoutMS`` on the client).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError, OperationFailure, PyMongoError

from shared import metrics
from shared.kafka import TransientError
from shared.settings import MongoSettings

# Collections and their single writers.
ARTICLES = "articles"          # storage: page-shaped article documents, _id = article id
VERSIONS = "article_versions"  # storage: every accepted version, _id = "<id>:<version>"
FRONTS = "fronts"              # storage: precomputed listings, _id = "front:home", "front:section:<slug>"
RELATED = "related"            # linking: related list with teasers embedded, _id = article id

SUBSCRIBERS = "subscribers"    # newsletter: one document per address, _id = subscriber id
COLLECTIONS = (ARTICLES, VERSIONS, FRONTS, RELATED, SUBSCRIBERS, "audio", "audio_chunks")  # audio: narration, see shared/audio.py

# Operations per batch (insert_many, deletes): FerretDB v1 stalls on large write batches.
WRITE_BATCH = 32
DUPLICATE_KEY = 11000
# A revision claim older than this, on a document still at the revision before it, was left by a
# writer that died between its claim and its write: that revision number is skipped.
CLAIM_LEASE_S = 30.0


def make_client(settings: MongoSettings, *, app_name: str,
                listeners: Sequence[monitoring.CommandListener] = ()) -> AsyncMongoClient:
    credentials: dict[str, Any] = {}
    if settings.username:
        credentials = {"username": settings.username, "authSource": settings.auth_source,
                       "password": settings.password.get_secret_value() if settings.password else None}
    return AsyncMongoClient(
        settings.url,
        appname=f"kazpost-{app_name}",
        timeoutMS=settings.timeout_ms,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
        tz_aware=True,
        maxPoolSize=20,
        event_listeners=[DbMetrics(app_name), *listeners],
        **credentials,
    )


def database(client: AsyncMongoClient, settings: MongoSettings) -> AsyncDatabase:
    return client[settings.database]


class DbMetrics(monitoring.CommandListener):
    """Database latency per command for the metrics endpoint (PyMongo command monitoring)."""

    def __init__(self, service: str) -> None:
        self.service = service

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        metrics.DB_SECONDS.labels(self.service, event.command_name).observe(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        metrics.DB_SECONDS.labels(self.service, f"{event.command_name}_failed").observe(event.duration_micros / 1e6)


async def versioned_upsert(coll: AsyncCollection, doc_id: str, version: int, fields: dict[str, Any]) -> bool:
    """Write ``fields`` if ``version`` is newer than the stored one. True = applied, False = stale."""
    try:
        await coll.update_one(
            {"_id": doc_id, "version": {"$lt": version}},
            {"$set": {**fields, "version": version}},
            upsert=True,
        )
        return True
    except DuplicateKeyError:
        return False


async def insert_once(coll: AsyncCollection, doc: dict[str, Any]) -> bool:
    """Insert a document whose ``_id`` makes it immutable. False = it was already there."""
    try:
        await coll.insert_one(doc)
        return True
    except DuplicateKeyError:
        return False


async def insert_new(coll: AsyncCollection, docs: Sequence[dict[str, Any]]) -> set[Any]:
    """``insert_many`` in chunks of :data:`WRITE_BATCH`, unordered; returns the ``_id`` of the
    documents inserted. An ``_id`` that exists already is skipped (duplicate key); any other
    write error is raised."""
    inserted: set[Any] = set()
    for start in range(0, len(docs), WRITE_BATCH):
        chunk = docs[start:start + WRITE_BATCH]
        try:
            await coll.insert_many(chunk, ordered=False)
            inserted.update(d["_id"] for d in chunk)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            failed = {e["index"] for e in errors}
            inserted.update(d["_id"] for i, d in enumerate(chunk) if i not in failed)
    return inserted


class ContentionError(TransientError):
    """Other writers kept changing the document (or held its next revision): retried later, like
    any transient failure, not dead-lettered."""


_owner = ""
# Claims whose release the database did not confirm, deleted again in the background.
_releasing: set[asyncio.Task[None]] = set()


def claim_owner() -> str:
    """This process's mark on the claims it makes: a release deletes only its own claim (a
    delete that timed out may have been applied, and the revision claimed again by another)."""
    global _owner
    if not _owner:
        _owner = uuid.uuid4().hex
    return _owner


async def _release_later(coll: AsyncCollection, claim: dict[str, Any], until: float) -> None:
    """Keep deleting ``claim`` (a filter) while the database does not answer, until ``until``
    (monotonic; the lease would end then anyway): once the connection is back, the next writer
    need not wait for the lease."""
    while time.monotonic() < until:
        await asyncio.sleep(1.0)
        try:
            await coll.delete_one(claim)
            return
        except PyMongoError:
            continue


def claim_id(doc_id: str, rev: int) -> str:
    """The ``_id`` of the claim on revision ``rev`` of ``doc_id`` (kept in the document's own
    collection, so each collection keeps its single writer)."""
    return f"claim:{doc_id}@{rev}"


def _age_s(doc: dict[str, Any] | None, now: datetime) -> float:
    at = (doc or {}).get("at")
    if not isinstance(at, datetime):
        return 0.0
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (now - at).total_seconds()


async def claim_revisions(coll: AsyncCollection, read_at: dict[str, int], *, lease_s: float = CLAIM_LEASE_S,
                          abandoned: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
    """Claim the next revision of each document, read at the revision given; returns the
    revision won per document (documents another writer got first are left out).

    A claim is the insert of a small document whose ``_id`` names the document and the revision:
    a unique ``_id`` is the one guard that MongoDB and FerretDB v1 both enforce atomically. (An
    update filtered on ``rev`` alone is a compare-and-swap on MongoDB, but FerretDB v1 reads the
    matching documents, then writes them back by ``_id``, so two writers could both match.) A
    claim older than ``lease_s`` belongs to a writer that died before writing: the next revision
    number is tried instead (at most twice), and the claim is put in ``abandoned`` (claim id →
    the filter that deletes just that claim)."""
    won: dict[str, int] = {}
    targets = {doc_id: rev + 1 for doc_id, rev in read_at.items()}
    for _ in range(3):
        if not targets:
            break
        now = datetime.now(UTC)
        inserted = await insert_new(coll, [{"_id": claim_id(d, t), "claim": True, "at": now, "owner": claim_owner()}
                                           for d, t in targets.items()])
        retry: dict[str, int] = {}
        for doc_id, target in targets.items():
            if claim_id(doc_id, target) in inserted:
                won[doc_id] = target
                continue
            held = await coll.find_one({"_id": claim_id(doc_id, target)})
            if held is not None and _age_s(held, now) > lease_s:
                retry[doc_id] = target + 1  # abandoned: skip that revision
                if abandoned is not None:
                    abandoned[held["_id"]] = {"_id": held["_id"], "at": held.get("at")}
            # else: another writer holds it, or wrote it and moved on: the caller re-reads
        targets = retry
    return won


async def write_revisions(coll: AsyncCollection, updates: dict[str, tuple[int, dict[str, Any]]], *,
                          lease_s: float = CLAIM_LEASE_S, writes_in_flight: int = 4, deletes_in_flight: int = 4) -> set[str]:
    """Compare-and-swap of several documents: ``updates`` maps a document id to the ``rev`` it
    was read at and the fields to set. Each document is written only if no other writer changed
    it since (see :func:`claim_revisions`); returns the ids written. The others must be read
    again. Claims are removed once their write is done (the ``rev`` filter then guards).
    Up to ``writes_in_flight`` single-document updates run at once (each its own document)."""
    if not updates:
        return set()
    started = time.monotonic()
    abandoned: dict[str, dict[str, Any]] = {}
    won = await claim_revisions(coll, {doc_id: rev for doc_id, (rev, _) in updates.items()}, lease_s=lease_s,
                                abandoned=abandoned)
    written: set[str] = set()
    try:
        writers = asyncio.Semaphore(writes_in_flight)

        async def write(doc_id: str, target: int) -> None:
            async with writers:
                if time.monotonic() - started > lease_s / 2:
                    return  # too slow: others may take these claims for abandoned ones; re-read instead
                rev, fields = updates[doc_id]
                result = await coll.update_one({"_id": doc_id, "rev": rev}, {"$set": {**fields, "rev": target}})
                if result.matched_count == 1:
                    written.add(doc_id)

        # Every write ends (written or failed) before the claims go; the first failure is raised.
        results = await asyncio.gather(*(write(d, t) for d, t in won.items()), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
    finally:
        # Written, not written, or failed (a timeout): the claims go, so that nobody waits for
        # a lease to end. A document not written is still at the revision read (re-read it).
        gate = asyncio.Semaphore(deletes_in_flight)
        owner = claim_owner()

        async def release(cid: str) -> None:
            async with gate:
                # Ours, or one we found abandoned (as we found it: not a newer one of that id).
                claim = abandoned.get(cid) or {"_id": cid, "owner": owner}
                try:
                    await coll.delete_one(claim)
                except PyMongoError:  # the database is away: again in the background, else the lease ends it
                    task = asyncio.get_running_loop().create_task(_release_later(coll, claim, time.monotonic() + lease_s))
                    _releasing.add(task)
                    task.add_done_callback(_releasing.discard)

        await asyncio.shield(asyncio.gather(*(release(claim_id(doc_id, r)) for doc_id, target in won.items()
                                              for r in range(updates[doc_id][0] + 1, target + 1))))
    return written


async def read_modify_write(
    coll: AsyncCollection,
    doc_id: str,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    *,
    attempts: int = 50,
    lease_s: float = CLAIM_LEASE_S,
) -> bool:
    """Optimistic update of one document guarded by its ``rev`` (safe with several writers).

    ``change`` gets the current document (or None) and returns the new fields (without ``_id``
    and ``rev``) or None for "nothing to change". Returns True if something was written.
    """
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(random.uniform(0.002, 0.02) * min(attempt, 10))  # let the winner finish
        current = await coll.find_one({"_id": doc_id})
        fields = change(current)
        if fields is None:
            return False
        if current is None:
            try:
                await coll.insert_one({"_id": doc_id, "rev": 1, **fields})
                return True
            except DuplicateKeyError:
                continue
        if doc_id in await write_revisions(coll, {doc_id: (int(current.get("rev", 0)), fields)}):
            return True
    raise ContentionError(f"read_modify_write on {doc_id!r} kept losing the race")


async def init_database(db: AsyncDatabase) -> None:
    """Create every collection (so the PostgreSQL GIN step can index them). Idempotent.

    All request-path reads are ``_id`` lookups, served by MongoDB's built-in ``_id`` index, so no
    secondary index is needed for them.
    """
    existing = set(await db.list_collection_names())
    for name in COLLECTIONS:
        if name not in existing:
            try:
                await db.create_collection(name)
            except CollectionInvalid:
                pass
            except OperationFailure as exc:
                if exc.code != 48:  # NamespaceExists: another service created it meanwhile
                    raise


async def ping(db: AsyncDatabase) -> None:
    """A ping and a real query: the database answers and can read."""
    await db.command("ping")
    await db[FRONTS].find_one({"_id": "front:home"})
