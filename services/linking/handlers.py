"""Linking's handler: keep the in-memory index current, write related lists, publish "linked"."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from services.linking.relatedness import Doc, RelatedIndex
from services.linking.settings import LinkingSettings
from shared.events import Article, ArticleLinked, LinkedEvent, RelatedItem, StoredEvent, Teaser, teaser_of
from shared.kafka import Message, Publisher, TransientError, decode_event
from shared.mongo import ARTICLES, RELATED, versioned_upsert

log = structlog.get_logger("linking")


@dataclass
class LinkingState:
    """The index plus the teasers it hands out (kept as compact JSON bytes)."""

    index: RelatedIndex
    teasers: dict[str, bytes] = field(default_factory=dict)
    # Hash of the related list last written per article: unchanged lists are not rewritten.
    written: dict[str, int] = field(default_factory=dict)

    def teaser(self, article_id: str) -> Teaser | None:
        raw = self.teasers.get(article_id)
        return Teaser.model_validate_json(raw) if raw else None

    def add(self, article: Article) -> list[str]:
        """Index the article; returns the ids whose related lists may need rewriting."""
        teaser = teaser_of(article).model_dump_json().encode("utf-8")
        previous = self.teasers.get(article.id)
        self.teasers[article.id] = teaser
        affected = self.index.upsert(doc_of(article))
        if previous is not None and previous != teaser:
            # Same text but a new headline, time or embargo: lists that embed the teaser change.
            affected = [*affected, *self.index.listed_by(article.id)]
        # Its near-duplicates now show it as "also reported by".
        return list(dict.fromkeys([*affected, *self.index.duplicates(article.id)]))

    def remove(self, article_id: str) -> list[str]:
        self.teasers.pop(article_id, None)
        duplicates = self.index.duplicates(article_id)
        return list(dict.fromkeys([*self.index.remove(article_id), *duplicates]))

    def signature(self, items: list[tuple[str, float]], duplicates: list[str]) -> int:
        return hash((tuple((i, round(score, 3), self.teasers.get(i)) for i, score in items), tuple(duplicates)))


def doc_of(article: Article) -> Doc:
    text = "\n".join(p for p in (article.standfirst, article.body_text) if p)
    return Doc(
        id=article.id,
        language=article.language,
        title=article.headline,
        text=text,
        published_at=article.first_created.timestamp(),
        section=article.section.slug if article.section else None,
    )


def _rev() -> int:
    return time.time_ns()


async def write_related(article_id: str, *, state: LinkingState, db: AsyncDatabase, publisher: Publisher,
                        settings: LinkingSettings, correlation_id: str, force: bool = False) -> bool:
    """Recompute and store one related list; returns False when it had not changed."""
    matches = []
    duplicates: list[str] = []
    if article_id in state.index:
        matches = [m for m in state.index.related(article_id, settings.k) if m.id in state.teasers]
        duplicates = state.index.duplicates(article_id)
    signature = state.signature([(m.id, m.score) for m in matches], duplicates)
    if not force and state.written.get(article_id) == signature:
        return False
    items = [
        RelatedItem(teaser=state.teaser(m.id), score=round(m.score, 4), cross_language=m.cross_language)  # type: ignore[arg-type]
        for m in matches
    ]
    rev = _rev()
    doc: dict[str, Any] = {
        "items": [i.model_dump(mode="python") for i in items],
        "duplicates": duplicates,
        # The same story republished elsewhere: shown as "also reported by" on the page.
        "also_reported": [t.model_dump(mode="python") for d in duplicates if (t := state.teaser(d)) is not None],
        "updated_at": datetime.now(UTC),
    }
    await versioned_upsert(db[RELATED], article_id, rev, doc)
    event = LinkedEvent(
        producer="linking",
        correlation_id=correlation_id,
        payload=ArticleLinked(article_id=article_id, rev=rev, related=items, duplicates=duplicates),
    )
    await publisher.publish_event(settings.kafka.topic_linked, article_id, event)
    if article_id in state.index:
        state.written[article_id] = signature
    else:
        state.written.pop(article_id, None)
    return True


class Follower(Protocol):
    async def wait_past(self, partition: int, offset: int, timeout: float = 30.0) -> None: ...
    def affected(self, article_id: str, version: int) -> list[str]: ...


async def handle_stored(msg: Message, *, state: LinkingState, follower: Follower, db: AsyncDatabase,
                        publisher: Publisher, settings: LinkingSettings) -> None:
    """Write the related lists that one stored article changes.

    The index itself is kept by the follower (every replica indexes every partition); this
    handler waits until the follower has applied the message, then writes the article's own
    list and those of the back-link candidates the follower recorded.
    """
    event = decode_event(StoredEvent, msg)
    article = event.payload.article
    structlog.contextvars.bind_contextvars(article_id=article.id, version=article.version, event_id=event.event_id)
    try:
        await follower.wait_past(msg.partition, msg.offset)
    except TimeoutError:
        raise TransientError("the index follower has not reached this message yet") from None
    affected = follower.affected(article.id, article.version)
    targets = [article.id, *[a for a in affected if a != article.id]]
    rewritten = 0
    for target in targets:
        # The article's own list is always written (at-least-once: a re-delivery re-publishes).
        rewritten += await write_related(target, state=state, db=db, publisher=publisher, settings=settings,
                                         correlation_id=event.correlation_id, force=target == article.id)
    log.info("linked", change=event.payload.change, candidates=len(targets) - 1, rewritten=rewritten)


async def rebuild_from_database(state: LinkingState, db: AsyncDatabase, *, batch_size: int) -> int:
    """Fill the index from the stored articles (start-up; off the request path)."""
    count = 0
    cursor = db[ARTICLES].find({"pub_status": "usable"}, batch_size=batch_size)
    async for raw in cursor:
        try:
            article = Article.model_validate({**raw, "id": raw["_id"]})
        except ValidationError:
            log.warning("rebuild_skipped_invalid", article_id=raw.get("_id"))
            continue
        state.add(article)
        count += 1
    return count


def search(state: LinkingState, query: str, *, language: str | None, limit: int, offset: int) -> dict[str, Any]:
    total, matches = state.index.search(query, language=language, limit=limit, offset=offset)
    hits = []
    for m in matches:
        raw = state.teasers.get(m.id)
        if raw is not None:
            hits.append({"teaser": json.loads(raw), "score": round(m.score, 4)})
    return {"total": total, "hits": hits, "terms": state.index.highlight_terms(query)}
