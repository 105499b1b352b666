"""Storage's handler: version-guarded article writes, precomputed listings, then "stored"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from services.storage.settings import StorageSettings
from shared.events import Article, ArticleStored, IngestedEvent, StoredEvent, Teaser, teaser_of
from shared.kafka import Message, Publisher, decode_event
from shared.listings import HOME_KEY, MAX_BUCKETS, bucket_id, bucket_of, index_id, sort_items
from shared.mongo import ARTICLES, FRONTS, VERSIONS, insert_once, read_modify_write, versioned_upsert

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


def _place(items: list[dict[str, Any]], teaser: dict[str, Any] | None, article_id: str) -> list[dict[str, Any]] | None:
    """New item list with the article placed (or removed when teaser is None); None = unchanged."""
    rest = [i for i in items if i.get("id") != article_id]
    if teaser is None:
        return rest if len(rest) != len(items) else None
    if any(i.get("id") == article_id and i == teaser for i in items):
        return None
    return sort_items([*rest, teaser])


async def update_listing(db: AsyncDatabase, key: str, bucket: str, meta: dict[str, str], article_id: str,
                         teaser: Teaser | None) -> None:
    """Place (or remove) one teaser in one bucket, then keep the listing's index in step."""
    teaser_doc = teaser.model_dump(mode="python") if teaser else None
    remaining: list[int] = []

    def change_bucket(current: dict[str, Any] | None) -> dict[str, Any] | None:
        items = list((current or {}).get("items", []))
        placed = _place(items, teaser_doc, article_id)
        remaining.append(len(placed if placed is not None else items))
        if placed is None or (current is None and not placed):
            return None
        return {"items": placed, "updated_at": datetime.now(UTC)}

    await read_modify_write(db[FRONTS], bucket_id(key, bucket), change_bucket)
    non_empty = remaining[-1] > 0

    def change_index(current: dict[str, Any] | None) -> dict[str, Any] | None:
        buckets = list((current or {}).get("buckets", []))
        fields: dict[str, Any] = {}
        if non_empty and bucket not in buckets:
            fields["buckets"] = sorted([*buckets, bucket], reverse=True)[:MAX_BUCKETS]
        elif not non_empty and bucket in buckets:
            fields["buckets"] = [b for b in buckets if b != bucket]
        if current is None or any(current.get(k) != v for k, v in meta.items()):
            if current is None and not non_empty:
                return None
            fields.update(meta)
        if key == HOME_KEY and teaser_doc is not None and teaser_doc.get("section"):
            sections = list((current or {}).get("sections", []))
            if teaser_doc["section"] not in sections:
                fields["sections"] = sorted([*sections, teaser_doc["section"]], key=lambda s: s["name"])
        if fields:
            fields["updated_at"] = datetime.now(UTC)
        return fields or None

    await read_modify_write(db[FRONTS], index_id(key), change_index)


async def handle_ingested(msg: Message, *, db: AsyncDatabase, publisher: Publisher, settings: StorageSettings) -> None:
    event = decode_event(IngestedEvent, msg)
    article = event.payload.article
    structlog.contextvars.bind_contextvars(article_id=article.id, version=article.version, event_id=event.event_id)
    now = datetime.now(UTC)
    articles = db[ARTICLES]

    previous = await articles.find_one({"_id": article.id})
    previous_version = int(previous["version"]) if previous else None
    if previous_version is not None and previous_version > article.version:
        log.info("stale_version_ignored", stored_version=previous_version)
        return
    if previous_version == article.version and previous is not None and previous.get("content_hash") != article.content_hash:
        log.warning("conflicting_content_for_same_version_ignored", stored_version=previous_version)
        return
    if previous_version != article.version:
        doc = article_document(article, previous, history_size=settings.history_size, now=now)
        if not await versioned_upsert(articles, article.id, article.version, doc):
            log.info("stale_version_ignored", reason="a newer version was written concurrently")
            return
        new_state = {**doc, "version": article.version}
    else:
        # Re-delivery of what is already stored: re-apply the idempotent steps below so a crash
        # between the write and the publish loses nothing.
        new_state = previous
        previous = None

    await insert_once(db[VERSIONS], {"_id": f"{article.id}:{article.version}", "article_id": article.id,
                                     **article.model_dump(mode="python", exclude={"id"}), "stored_at": now})

    old_fronts = fronts_of(previous, settings.tag_fronts_per_article)
    new_fronts = fronts_of(new_state, settings.tag_fronts_per_article)
    teaser = teaser_of(article) if article.pub_status == "usable" else None
    for (key, bucket), meta in new_fronts.items():
        await update_listing(db, key, bucket, meta, article.id, teaser)
    for (key, bucket), meta in old_fronts.items():
        if (key, bucket) not in new_fronts:
            await update_listing(db, key, bucket, meta, article.id, None)
    if article.pub_status != "usable" and new_state is not None and new_state.get("first_created"):
        # Killed/withheld: make sure it leaves the lists it was in (also on a re-delivery).
        for (key, bucket), meta in fronts_of({**new_state, "pub_status": "usable"}, settings.tag_fronts_per_article).items():
            await update_listing(db, key, bucket, meta, article.id, None)

    earlier = [h["version"] for h in new_state.get("history", []) if h["version"] < article.version]
    if article.pub_status == "canceled":
        change = "killed"
    elif article.pub_status == "withheld":
        change = "withheld"
    else:
        change = "updated" if earlier else "created"
    stored = StoredEvent(
        producer="storage",
        correlation_id=event.correlation_id,
        payload=ArticleStored(article=article, change=change, previous_version=max(earlier) if earlier else None),
    )
    await publisher.publish_event(settings.kafka.topic_stored, article.id, stored)
    log.info("stored", change=change)
