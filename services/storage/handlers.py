"""Storage's handlers: version-guarded article writes, precomputed listings, then "stored".

Two entry points with the same guarantees:

- :func:`handle_batch` (the service's normal path) stores a whole fetched batch with few
  database round trips: new articles are inserted with ``insert_many`` (an insert never
  overwrites anything: an ``_id`` that exists already fails with a duplicate-key error and takes
  the version-guarded path below), every version goes to ``article_versions`` with
  ``insert_many``, and the listing changes of the whole batch are merged, so each touched bucket
  and listing index is written once per batch instead of once per article (new listing
  documents with one ``insert_many``, existing ones read concurrently and updated one by one,
  each under a claim on the revision it writes, see :func:`shared.mongo.write_revisions`).
- :func:`handle_ingested` stores one message; the runner falls back to it when a batch fails, so
  a poison message is isolated and dead-lettered on its own.

Both: stale versions change nothing but the history: a version that arrives after a newer one
(an upstream source re-sending after an outage can reorder them) is still recorded in
``article_versions``, so every accepted version is kept, while the article, its listings and
its events stay at the newest; a re-delivery of the stored version re-applies the
idempotent steps (versions, listings) and re-publishes; "stored" events are published only after
every write; the offset is committed by the runner after the events are acknowledged.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.storage.settings import StorageSettings
from shared.events import Article, ArticleStored, IngestedEvent, StoredEvent, teaser_of
from shared.kafka import Message, Publisher, decode_event
from shared.listings import (BUCKET_MAX_ITEMS, HOME_KEY, MAX_BUCKETS, TIME_KEY_LEN, bucket_id, bucket_of, child_of,
                             index_id, sort_items)
from shared.mongo import (ARTICLES, FRONTS, VERSIONS, WRITE_BATCH, ContentionError, insert_new, insert_once,
                          read_modify_write, versioned_upsert, write_revisions)
from shared.packed import pack, unpack

log = structlog.get_logger("storage")


def fronts_of(doc: dict[str, Any] | None, tag_limit: int) -> dict[tuple[str, str], dict[str, str]]:
    """The listings an article appears in: {(listing key, bucket): kind/slug/name}."""
    if not doc or doc.get("pub_status") != "usable":
        return {}
    published = doc["first_created"]
    keys = {HOME_KEY: {"kind": "home", "slug": "home", "name": "Home"}}
    section = doc.get("section")
    if section:
        keys[f"section:{section['slug']}"] = {"kind": "section", **section}
    for tag in (doc.get("tags") or [])[:tag_limit]:
        keys[f"tag:{tag['slug']}"] = {"kind": "tag", **tag}
    return {(key, bucket_of(key, published)): meta for key, meta in keys.items()}


def article_document(article: Article, previous: dict[str, Any] | None, *, history_size: int, now: datetime) -> dict[str, Any]:
    """The page-shaped article document (``_id`` = article id), without ``_id``/``version``."""
    history = [h for h in (previous or {}).get("history", []) if h.get("version") != article.version]
    history.append({"version": article.version, "version_created": article.version_created, "pub_status": article.pub_status})
    history = sorted(history, key=lambda h: h["version"])[-history_size:]
    base = {
        "uri": article.uri,
        "pub_status": article.pub_status,
        "slug": article.slug,
        "content_hash": article.content_hash,
        "history": history,
        "stored_at": now,
    }
    if article.pub_status == "canceled":
        # A kill is a takedown: the page answers 410 and nothing of the content is kept here.
        return {**base, "killed_at": now, "first_created": (previous or {}).get("first_created"), "headline": None, "body_html": "", "body_text": "", "standfirst": None,
                "lead_image": None, "section": (previous or {}).get("section"), "tags": (previous or {}).get("tags", [])}
    fields = article.model_dump(mode="python", exclude={"id", "version"})
    return {**fields, **base, "killed_at": None}


def version_document(article: Article, now: datetime) -> dict[str, Any]:
    """The immutable ``article_versions`` entry of one accepted version."""
    return {"_id": f"{article.id}:{article.version}", "article_id": article.id,
            **article.model_dump(mode="python", exclude={"id"}), "stored_at": now}


# --- listings ---------------------------------------------------------------------------------
def _place(items: list[dict[str, Any]], teaser: dict[str, Any] | None, article_id: str) -> list[dict[str, Any]] | None:
    """New item list with the article placed (or removed when teaser is None); None = unchanged."""
    rest = [i for i in items if i.get("id") != article_id]
    if teaser is None:
        return rest if len(rest) != len(items) else None
    if any(i.get("id") == article_id and i == teaser for i in items):
        return None
    return sort_items([*rest, teaser])


@dataclass(frozen=True, slots=True)
class ListingChange:
    """Place (``teaser``) or remove (``teaser`` None) one article in one bucket of one listing."""

    key: str
    bucket: str
    meta: dict[str, str]
    article_id: str
    teaser: dict[str, Any] | None
    published_at: datetime | None = None  # where the article sits (a split bucket's child); default: the teaser's

    def child(self, bucket: str) -> str | None:
        """The child slot of a split ``bucket`` that this change goes to."""
        published = self.published_at or (self.teaser or {}).get("published_at")
        return child_of(bucket, published) if published is not None else None


def apply_to_bucket(items: list[dict[str, Any]], changes: Sequence[ListingChange]) -> list[dict[str, Any]] | None:
    """A bucket's items after ``changes`` in order (the same as :func:`_place` for each change,
    sorted once); None = unchanged."""
    by_id = {i.get("id"): i for i in items}
    for change in changes:
        if change.teaser is None:
            by_id.pop(change.article_id, None)
        else:
            by_id[change.article_id] = change.teaser
    if len(by_id) == len(items) and all(by_id.get(i.get("id")) is i or by_id.get(i.get("id")) == i for i in items):
        return None
    return sort_items(list(by_id.values()))


def apply_to_index(current: dict[str, Any] | None, key: str, non_empty: dict[str, bool], meta: dict[str, str],
                   sections: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any] | None:
    """New fields of a listing's index document after its buckets changed; None = unchanged.

    ``non_empty`` maps each touched bucket to whether it holds items now; ``meta`` is the
    listing's kind/slug/name; ``sections`` are the sections of the teasers placed (home only).
    """
    original = list((current or {}).get("buckets", []))
    buckets = list(original)
    for bucket, filled in non_empty.items():
        if filled and bucket not in buckets:
            if any(b.startswith(bucket) for b in buckets):
                continue  # it was split meanwhile: its children are listed (a late write from another replica)
            # A split parent listed still (this is one of its children) goes.
            buckets = sorted([*(b for b in buckets if not bucket.startswith(b)), bucket], reverse=True)[:MAX_BUCKETS]
        elif not filled and bucket in buckets:
            buckets = [b for b in buckets if b != bucket]
    fields: dict[str, Any] = {}
    if buckets != original:
        fields["buckets"] = buckets
    if current is None or any(current.get(k) != v for k, v in meta.items()):
        if current is None and not any(non_empty.values()):
            return None
        fields.update(meta)
    if key == HOME_KEY and sections:
        known = list((current or {}).get("sections", []))
        added = False
        for section in sections:
            if section not in known:
                known.append(section)
                added = True
        if added:
            fields["sections"] = sorted(known, key=lambda s: s["name"])
    if fields:
        fields["updated_at"] = now
    return fields or None


class KnownDocuments:
    """Ids of listing documents seen to exist (bounded; oldest forgotten first): a known id
    skips the insert attempt and goes straight to read-modify-write. Only a hint: listing
    documents are not deleted while storage runs (an emptied bucket stays, with no items), and
    should one be missing after all, the read finds nothing and the document is inserted."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._ids: dict[str, None] = {}
        # Bucket documents seen split: a split is never undone, so this is a fact, not a hint.
        self.split: dict[str, None] = {}

    def add_split(self, doc_id: str) -> None:
        self._remember(self.split, doc_id)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._ids

    def add(self, doc_id: str) -> None:
        self._remember(self._ids, doc_id)

    def _remember(self, ids: dict[str, None], doc_id: str) -> None:
        ids.pop(doc_id, None)
        ids[doc_id] = None
        if len(ids) > self.capacity:
            del ids[next(iter(ids))]


Change = Callable[[dict[str, Any] | None], dict[str, Any] | None]


async def read_all(coll: AsyncCollection, doc_ids: Sequence[str], *, in_flight: int = 8) -> list[dict[str, Any] | None]:
    """The documents ``doc_ids`` (None where missing), ``in_flight`` ``_id`` reads at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def read(doc_id: str) -> dict[str, Any] | None:
        async with gate:
            return await coll.find_one({"_id": doc_id})

    return await asyncio.gather(*(read(doc_id) for doc_id in doc_ids))


async def write_documents(coll: AsyncCollection, changes: dict[str, Change], known: KnownDocuments, *,
                          reads_in_flight: int = 8) -> int:
    """Apply ``change`` functions to documents (rev-guarded, safe with several writers), with
    as few round trips as possible: documents not known to exist are first offered as new ones
    in one ``insert_many`` (an existing one fails with a duplicate key and nothing is
    overwritten); the others are read concurrently, then updated one by one, each guarded by the
    ``rev`` it was read at (a lost race re-reads that document). ``change`` gets the current
    document or None and returns the new fields, or None for "nothing to change"; it may be
    called more than once. Returns the number of documents written."""
    written = 0
    offered = []
    for doc_id, change in changes.items():
        if doc_id not in known:
            fields = change(None)
            if fields is not None:
                offered.append({"_id": doc_id, "rev": 1, **fields})
    inserted = await insert_new(coll, offered)
    for doc in offered:
        known.add(doc["_id"])
    written += len(inserted)
    rest = [doc_id for doc_id in changes if doc_id not in inserted]
    if not rest:
        return written
    currents = await read_all(coll, rest, in_flight=reads_in_flight)
    updates: dict[str, tuple[int, dict[str, Any]]] = {}
    slow: list[str] = []
    for doc_id, current in zip(rest, currents):
        change = changes[doc_id]
        fields = change(current)
        if fields is None:
            if current is not None:
                known.add(doc_id)
            continue
        if current is None:
            try:
                await coll.insert_one({"_id": doc_id, "rev": 1, **fields})
                known.add(doc_id)
                written += 1
                continue
            except DuplicateKeyError:
                slow.append(doc_id)
        else:
            known.add(doc_id)
            updates[doc_id] = (int(current.get("rev", 0)), fields)
    done = await write_revisions(coll, updates)
    written += len(done)
    slow.extend(doc_id for doc_id in updates if doc_id not in done)
    for doc_id in slow:
        written += await read_modify_write(coll, doc_id, changes[doc_id])  # lost a race: the slow, safe way
    return written


async def apply_listing_changes(db: AsyncDatabase, changes: Sequence[ListingChange], known: KnownDocuments | None = None, *,
                                max_items: int = BUCKET_MAX_ITEMS, max_rounds: int = 60) -> int:
    """Apply listing changes: each touched bucket is written once (split when it outgrows
    ``max_items``), then each touched listing index. Returns the number of documents written.

    Safe with several writers (storage replicas): a bucket is written only at the revision it
    was read at (:func:`shared.mongo.write_revisions`), else read again in the next round. A
    split writes the children first, with exactly the items the bucket held, then marks the
    bucket split at the revision read; a writer that finds a bucket split moves its changes to
    the children. Nothing is lost when a writer stops between the steps: until the bucket is
    marked, its items are still in it and the next split rewrites the children."""
    known = known if known is not None else KnownDocuments()
    fronts = db[FRONTS]
    now = datetime.now(UTC)
    written = 0
    todo: dict[tuple[str, str], list[ListingChange]] = {}

    for change in changes:  # past the buckets known to be split, to the slot that holds the article
        bucket = change.bucket
        while bucket_id(change.key, bucket) in known.split and (child := change.child(bucket)) is not None:
            bucket = child
        todo.setdefault((change.key, bucket), []).append(change)
    non_empty: dict[str, dict[str, bool]] = {}
    metas: dict[str, dict[str, str]] = {}
    sections: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        metas[change.key] = change.meta
        if change.key == HOME_KEY and change.teaser and change.teaser.get("section"):
            sections.setdefault(change.key, []).append(change.teaser["section"])

    for _ in range(max_rounds):
        if not todo:
            break
        groups, todo = todo, {}
        # 1. Buckets not known to exist are offered as new documents (an existing one fails with
        #    a duplicate key and nothing is overwritten).
        offered = []
        for (key, bucket), group in groups.items():
            doc_id = bucket_id(key, bucket)
            if doc_id not in known:
                placed = apply_to_bucket([], group)
                if placed and len(placed) <= max_items:
                    offered.append({"_id": doc_id, "rev": 1, "items": pack(placed), "updated_at": now})
        inserted = await insert_new(fronts, offered)
        for doc in offered:
            known.add(doc["_id"])
        written += len(inserted)
        rest: list[tuple[str, str]] = []
        for kb in groups:
            if bucket_id(*kb) in inserted:
                non_empty.setdefault(kb[0], {})[kb[1]] = True
            else:
                rest.append(kb)
        # 2. The others are read (concurrently), changed, and written at the revision read.
        currents = await read_all(fronts, [bucket_id(*kb) for kb in rest])
        updates: dict[str, tuple[int, dict[str, Any]]] = {}
        outcome: dict[str, tuple[tuple[str, str], dict[str, bool]]] = {}  # doc id -> (bucket, index changes if written)
        for kb, current in zip(rest, currents):
            key, bucket = kb
            doc_id = bucket_id(key, bucket)
            group = groups[kb]
            if current is not None:
                known.add(doc_id)
            if current is not None and current.get("split"):
                known.add_split(doc_id)
                for change in group:  # someone split it: the changes go one slot finer
                    child = change.child(bucket)
                    if child is None:
                        raise ValueError(f"listing change for {change.article_id} has no publication time to place it in {doc_id}")
                    todo.setdefault((key, child), []).append(change)
                continue
            items = unpack((current or {}).get("items"))
            placed = apply_to_bucket(items, group)
            if placed is None:
                if current is not None:
                    non_empty.setdefault(key, {})[bucket] = bool(items)
                continue
            children = _split_items(bucket, placed, max_items)
            if children is None:
                fields: dict[str, Any] = {"items": pack(placed), "updated_at": now}
                flags = {bucket: bool(placed)}
                if current is None and not placed:
                    continue
            else:
                # The children first, with exactly these items; then the bucket is marked split.
                n, leaves = await _write_children(fronts, key, children, known, now, max_items)
                written += n
                fields = {"items": pack([]), "split": True, "children": sorted(children, reverse=True), "updated_at": now}
                flags = {bucket: False, **{leaf: True for leaf in leaves}}
            if current is None:
                try:
                    await fronts.insert_one({"_id": doc_id, "rev": 1, **fields})
                except DuplicateKeyError:
                    todo.setdefault(kb, []).extend(group)  # created meanwhile: read it next round
                    continue
                known.add(doc_id)
                written += 1
                _record(non_empty, key, flags, known, doc_id, split=children is not None)
                continue
            updates[doc_id] = (int(current.get("rev", 0)), fields)
            outcome[doc_id] = (kb, flags)
        done = await write_revisions(fronts, updates)
        written += len(done)
        for doc_id, (kb, flags) in outcome.items():
            if doc_id in done:
                _record(non_empty, kb[0], flags, known, doc_id, split="split" in updates[doc_id][1])
            else:
                todo.setdefault(kb, []).extend(groups[kb])  # lost a race: read it again
        if todo:
            await asyncio.sleep(random.uniform(0.002, 0.02))  # let the winner finish
    else:
        raise ContentionError(f"listing buckets kept changing under this writer: {sorted(todo)[:5]}")

    def index_change(key: str) -> Change:
        return lambda current: apply_to_index(current, key, non_empty[key], metas[key], sections.get(key, []), datetime.now(UTC))

    written += await write_documents(fronts, {index_id(key): index_change(key) for key in non_empty}, known)
    return written


def _record(non_empty: dict[str, dict[str, bool]], key: str, flags: dict[str, bool], known: KnownDocuments,
            doc_id: str, *, split: bool) -> None:
    non_empty.setdefault(key, {}).update(flags)
    if split:
        known.add_split(doc_id)


async def _write_children(fronts: AsyncCollection, key: str, children: dict[str, list[dict[str, Any]]],
                          known: KnownDocuments, now: datetime, max_items: int) -> tuple[int, list[str]]:
    """Write a split bucket's children with exactly ``children``' items, a child that is itself
    too large split the same way first (a child left by an interrupted split is overwritten:
    nothing reads it until its parent is marked split). Returns (documents written, the leaf
    buckets that hold the items)."""
    written = 0
    leaves: list[str] = []
    docs: dict[str, dict[str, Any]] = {}
    for child, items in children.items():
        grand = _split_items(child, items, max_items)
        if grand is None:
            docs[bucket_id(key, child)] = {"items": pack(sort_items(items)), "updated_at": now}
            leaves.append(child)
        else:
            n, grand_leaves = await _write_children(fronts, key, grand, known, now, max_items)
            written += n
            leaves += grand_leaves
            docs[bucket_id(key, child)] = {"items": pack([]), "split": True, "children": sorted(grand, reverse=True), "updated_at": now}
    inserted = await insert_new(fronts, [{"_id": doc_id, "rev": 1, **fields} for doc_id, fields in docs.items()])
    written += len(inserted)
    for doc_id, fields in docs.items():
        known.add(doc_id)
        if doc_id not in inserted:
            written += await read_modify_write(fronts, doc_id, lambda _current, fields=fields: fields)
        if fields.get("split"):
            known.add_split(doc_id)
    return written, leaves


def _split_items(bucket: str, items: list[dict[str, Any]], max_items: int) -> dict[str, list[dict[str, Any]]] | None:
    """A too-large bucket's items by child slot (None: small enough, or already the finest slot)."""
    if len(items) <= max_items or len(bucket) >= TIME_KEY_LEN:
        return None
    children: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        children.setdefault(child_of(bucket, item["published_at"]) or bucket, []).append(item)
    return children


# --- one stored version -------------------------------------------------------------------------
@dataclass(slots=True)
class Outcome:
    """What storing one version did: drives the listings and the "stored" event."""

    msg: Message | None
    event: IngestedEvent
    previous: dict[str, Any] | None  # the document it replaced (None: new, or a re-delivery)
    new_state: dict[str, Any]

    @property
    def article(self) -> Article:
        return self.event.payload.article


def listing_changes(outcome: Outcome, tag_limit: int) -> list[ListingChange]:
    """The listing changes of one stored version, in the order they must be applied."""
    article = outcome.article
    old_fronts = fronts_of(outcome.previous, tag_limit)
    new_fronts = fronts_of(outcome.new_state, tag_limit)
    teaser = teaser_of(article).model_dump(mode="python") if article.pub_status == "usable" else None
    new_time = outcome.new_state.get("first_created")
    old_time = (outcome.previous or {}).get("first_created")
    changes = [ListingChange(key, bucket, meta, article.id, teaser, new_time) for (key, bucket), meta in new_fronts.items()]
    changes += [ListingChange(key, bucket, meta, article.id, None, old_time)
                for (key, bucket), meta in old_fronts.items() if (key, bucket) not in new_fronts]
    if article.pub_status != "usable" and new_time:
        # Killed/withheld: make sure it leaves the lists it was in (also on a re-delivery).
        changes += [ListingChange(key, bucket, meta, article.id, None, new_time)
                    for (key, bucket), meta in fronts_of({**outcome.new_state, "pub_status": "usable"}, tag_limit).items()]
    return changes


def stored_event(outcome: Outcome) -> StoredEvent:
    article = outcome.article
    earlier = [h["version"] for h in outcome.new_state.get("history", []) if h["version"] < article.version]
    if article.pub_status == "canceled":
        change = "killed"
    elif article.pub_status == "withheld":
        change = "withheld"
    else:
        change = "updated" if earlier else "created"
    return StoredEvent(
        producer="storage",
        correlation_id=outcome.event.correlation_id,
        payload=ArticleStored(article=article, change=change, previous_version=max(earlier) if earlier else None),
    )


async def apply_version(articles: AsyncCollection, msg: Message | None, event: IngestedEvent,
                        previous: dict[str, Any] | None, settings: StorageSettings, now: datetime) -> Outcome | None:
    """The version-guarded write of one version against the stored ``previous``; None = nothing
    to do (stale, or conflicting content for the stored version)."""
    article = event.payload.article
    previous_version = int(previous["version"]) if previous else None
    if previous_version is not None and previous_version > article.version:
        log.info("stale_version_ignored", article_id=article.id, version=article.version, stored_version=previous_version)
        return None
    if previous_version == article.version and previous is not None and previous.get("content_hash") != article.content_hash:
        log.warning("conflicting_content_for_same_version_ignored", article_id=article.id, version=article.version)
        return None
    if previous_version != article.version:
        doc = article_document(article, previous, history_size=settings.history_size, now=now)
        if not await versioned_upsert(articles, article.id, article.version, doc):
            log.info("stale_version_ignored", article_id=article.id, version=article.version,
                     reason="a newer version was written concurrently")
            return None
        return Outcome(msg, event, previous, {**doc, "version": article.version})
    # Re-delivery of what is already stored: re-apply the idempotent steps so a crash between
    # the write and the publish loses nothing.
    return Outcome(msg, event, None, previous)  # type: ignore[arg-type]


def is_late(previous: dict[str, Any] | None, article: Article) -> bool:
    """A valid version that arrived after a newer one was stored: kept in the history only."""
    if previous is None or int(previous["version"]) <= article.version:
        return False
    log.info("late_version_recorded", article_id=article.id, version=article.version, stored_version=previous["version"])
    return True


async def handle_ingested(msg: Message, *, db: AsyncDatabase, publisher: Publisher, settings: StorageSettings,
                          known: KnownDocuments | None = None) -> None:
    """Store one message (the fallback path; see :func:`handle_batch`)."""
    event = decode_event(IngestedEvent, msg)
    article = event.payload.article
    structlog.contextvars.bind_contextvars(article_id=article.id, version=article.version, event_id=event.event_id)
    now = datetime.now(UTC)
    articles = db[ARTICLES]
    previous = await articles.find_one({"_id": article.id})
    outcome = await apply_version(articles, msg, event, previous, settings, now)
    if outcome is not None or is_late(previous, article):
        await insert_once(db[VERSIONS], version_document(article, now))
    if outcome is None:
        return
    await apply_listing_changes(db, listing_changes(outcome, settings.tag_fronts_per_article), known)
    stored = stored_event(outcome)
    await publisher.publish_event(settings.kafka.topic_stored, article.id, stored)
    log.info("stored", change=stored.payload.change)


# --- a whole batch -------------------------------------------------------------------------------
def rounds(items: Sequence[tuple[Message, IngestedEvent]]) -> list[list[tuple[Message, IngestedEvent]]]:
    """Split a batch so that each round holds an article at most once, in arrival order
    (round 1: first occurrences, round 2: second ones, ...): versions of one article are
    stored and announced in the order they came."""
    seen: dict[str, int] = {}
    out: list[list[tuple[Message, IngestedEvent]]] = []
    for item in items:
        article_id = item[1].payload.article.id
        n = seen.get(article_id, 0)
        seen[article_id] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(item)
    return out


async def store_round(items: Sequence[tuple[Message, IngestedEvent]], *, db: AsyncDatabase, publisher: Publisher,
                      settings: StorageSettings, known: KnownDocuments | None = None) -> list[Outcome]:
    """Store a round (each article at most once), then publish its "stored" events."""
    now = datetime.now(UTC)
    articles = db[ARTICLES]
    # 1. Insert-first: an article that does not exist yet needs no read and no update.
    fresh = {event.payload.article.id: article_document(event.payload.article, None, history_size=settings.history_size, now=now)
             for _, event in items}
    inserted = await insert_new(articles, [{"_id": event.payload.article.id, "version": event.payload.article.version,
                                            **fresh[event.payload.article.id]} for _, event in items])
    outcomes: list[Outcome] = []
    late: list[Article] = []
    for msg, event in items:
        article = event.payload.article
        if article.id in inserted:
            outcomes.append(Outcome(msg, event, None, {**fresh[article.id], "version": article.version}))
            continue
        # 2. It exists: the version-guarded path (stale, re-delivery, or a newer version).
        previous = await articles.find_one({"_id": article.id})
        outcome = await apply_version(articles, msg, event, previous, settings, now)
        if outcome is not None:
            outcomes.append(outcome)
        elif is_late(previous, article):
            late.append(article)
    # 3. Every accepted version, late ones included (immutable, keyed by id:version; already there = done).
    await insert_new(db[VERSIONS], [version_document(a, now) for a in [*(o.article for o in outcomes), *late]])
    if not outcomes:
        return outcomes
    # 4. Listings: each touched bucket, then each touched index, written once for the whole round.
    await apply_listing_changes(db, [c for o in outcomes for c in listing_changes(o, settings.tag_fronts_per_article)], known)
    # 5. Only now announce them.
    for o in outcomes:
        stored = stored_event(o)
        await publisher.publish_event(settings.kafka.topic_stored, o.article.id, stored)
        log.info("stored", change=stored.payload.change, article_id=o.article.id, version=o.article.version,
                 event_id=o.event.event_id, correlation_id=o.event.correlation_id,
                 **({"topic": o.msg.topic, "partition": o.msg.partition, "offset": o.msg.offset} if o.msg else {}))
    return outcomes


async def handle_batch(items: Sequence[tuple[Message, IngestedEvent]], *, db: AsyncDatabase, publisher: Publisher,
                       settings: StorageSettings, known: KnownDocuments | None = None) -> int:
    """Store a fetched batch of decoded messages (see the module docstring). Idempotent as a
    whole: when it fails midway, running it again (or each message on its own) is safe.
    Returns the number of versions stored."""
    stored = 0
    for round_items in rounds(items):
        stored += len(await store_round(round_items, db=db, publisher=publisher, settings=settings, known=known))
    return stored
