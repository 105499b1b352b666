"""MongoDB access shared by the services (PyMongo's asyncio API).

Rules (fast on MongoDB and on FerretDB alike):
- request-path reads are single ``_id`` lookups of documents shaped for the page;
- writes are single-document and version-guarded: ``{_id, version: {$lt: v}}`` + upsert, and a
  DuplicateKeyError means the stored document is as new or newer (stale write, ignored);
- every call carries a client-side timeout (``timeoutMS`` on the client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure

from shared import metrics
from shared.settings import MongoSettings

# Collections and their single writers.
ARTICLES = "articles"          # storage: page-shaped article documents, _id = article id
VERSIONS = "article_versions"  # storage: every accepted version, _id = "<id>:<version>"
FRONTS = "fronts"              # storage: precomputed listings, _id = "front:home", "front:section:<slug>"
RELATED = "related"            # linking: related list with teasers embedded, _id = article id

SUBSCRIBERS = "subscribers"    # newsletter: one document per address, _id = subscriber id
COLLECTIONS = (ARTICLES, VERSIONS, FRONTS, RELATED, SUBSCRIBERS, "audio", "audio_chunks")  # audio: narration, see shared/audio.py


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


async def read_modify_write(
    coll: AsyncCollection,
    doc_id: str,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    *,
    attempts: int = 50,
) -> bool:
    """Optimistic update of one document guarded by its ``rev`` (safe with several writers).

    ``change`` gets the current document (or None) and returns the new fields (without ``_id``
    and ``rev``) or None for "nothing to change". Returns True if something was written.
    """
    for _ in range(attempts):
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
        rev = int(current.get("rev", 0))
        result = await coll.update_one({"_id": doc_id, "rev": rev}, {"$set": {**fields, "rev": rev + 1}})
        if result.matched_count == 1:
            return True
    raise RuntimeError(f"read_modify_write on {doc_id!r} kept losing the race")


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
