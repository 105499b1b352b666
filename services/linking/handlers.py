"""Linking's handler: keep the in-memory index current, write related lists, publish "linked"."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from services.linking.idmap import IdValues
from services.linking.relatedness import Doc, RelatedIndex
from services.linking.settings import LinkingSettings
from services.linking.teasers import Teasers
from shared.events import Article, ArticleLinked, LinkedEvent, RelatedItem, StoredEvent, Teaser, teaser_of
from shared.kafka import Message, Publisher, TransientError, decode_event
from shared.mongo import ARTICLES, RELATED, versioned_upsert
from shared.packed import pack

log = structlog.get_logger("linking")


@dataclass
class LinkingState:
    """The index plus the teasers it hands out (compact JSON bytes, kept packed)."""

    index: RelatedIndex
    teasers: Teasers = field(default_factory=Teasers)
    # Hash of the related list last written per article: unchanged lists are not rewritten.
    written: IdValues = field(default_factory=IdValues)
    # Back-link rewrites waiting for their time: article id -> (due, monotonic; correlation id).
    # An older article that several new ones change within the delay is rewritten once.
    pending: dict[str, tuple[float, str]] = field(default_factory=dict)
    # One writer of related lists at a time (the batch handler and the pending flusher).
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def teaser(self, article_id: str) -> Teaser | None:
        raw = self.teasers.get(article_id)
        return Teaser.model_validate_json(raw) if raw else None

    def add(self, article: Article) -> list[str]:
        """Index the article; returns the ids whose related lists may need rewriting."""
        replaced = self.teasers.put(article.id, teaser_of(article).model_dump_json().encode("utf-8"))
        affected = self.index.upsert(doc_of(article))
        if replaced:
            # Same text but a new headline, time or embargo: lists that embed the teaser change.
            affected = [*affected, *self.index.listed_by(article.id)]
        # Its near-duplicates now show it as "also reported by".
        return list(dict.fromkeys([*affected, *self.index.duplicates(article.id)]))

    def remove(self, article_id: str) -> list[str]:
        self.teasers.pop(article_id, None)
        duplicates = self.index.duplicates(article_id)
        return list(dict.fromkeys([*self.index.remove(article_id), *duplicates]))

    def signature(self, items: list[tuple[str, bool]], duplicates: list[str]) -> int:
        """What a reader sees of a related list: which articles, in which order, as which
        teasers. Scores are left out: they drift a little with every article indexed (term
        weights change), and rewriting a list for that alone would rewrite lists all the time."""
        return hash((tuple((i, cross, self.teasers.digest(i)) for i, cross in items),
                     tuple((d, self.teasers.digest(d)) for d in duplicates)))


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
    signature = state.signature([(m.id, m.cross_language) for m in matches], duplicates)
    if not force and state.written.get(article_id) == signature:
        return False
    items = [
        RelatedItem(teaser=state.teaser(m.id), score=round(m.score, 4), cross_language=m.cross_language)  # type: ignore[arg-type]
        for m in matches
    ]
    rev = _rev()
    doc: dict[str, Any] = {
        # Teaser lists are stored as JSON strings (shared/packed.py).
        "items": pack([i.model_dump(mode="python") for i in items]),
        "duplicates": duplicates,
        # The same story republished elsewhere: shown as "also reported by" on the page.
        "also_reported": pack([t.model_dump(mode="python") for d in duplicates if (t := state.teaser(d)) is not None]),
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


async def handle_stored_batch(items: Sequence[tuple[Message, StoredEvent]], *, state: LinkingState,
                              follower: Follower, db: AsyncDatabase, publisher: Publisher,
                              settings: LinkingSettings) -> int:
    """Write the related lists that a fetched batch of stored articles changes, each list once.

    The same result as :func:`handle_stored` message by message (the runner falls back to it
    when a batch fails), with fewer writes and no waiting on one write before the next: a list
    that several articles of the batch change (recent articles are the back-link candidates of
    many new ones) is computed and written once, from the index as it stands after the whole
    batch, and up to ``write_concurrency`` single-document writes are in flight at once.
    Returns the number of lists rewritten."""
    last: dict[int, int] = {}
    for msg, _ in items:
        last[msg.partition] = max(last.get(msg.partition, -1), msg.offset)
    try:
        for partition, offset in last.items():
            await follower.wait_past(partition, offset)
    except TimeoutError:
        raise TransientError("the index follower has not reached this batch yet") from None
    # Target id -> (forced, correlation id of the first article that changed it). The articles'
    # own lists are always written (at-least-once: a re-delivery re-publishes); back-link
    # candidates only when their list changed.
    targets: dict[str, tuple[bool, str]] = {}
    candidates: dict[str, int] = {}
    for _, event in items:
        targets[event.payload.article.id] = (True, event.correlation_id)
    for _, event in items:
        article = event.payload.article
        affected = [a for a in follower.affected(article.id, article.version) if a != article.id]
        candidates[article.id] = len(affected)
        for target in affected:
            targets.setdefault(target, (False, event.correlation_id))
    now = time.monotonic()
    if settings.backlink_delay_s > 0:
        # Own lists now (the article is readable with them); back-links when their time comes.
        for target, (force, corr) in list(targets.items()):
            if not force:
                due = state.pending.get(target, (now + settings.backlink_delay_s, corr))
                state.pending[target] = due
                del targets[target]
        for _, event in items:
            state.pending.pop(event.payload.article.id, None)  # written now from the newest index
    async with state.write_lock:
        results = await _write_all(targets, state=state, db=db, publisher=publisher, settings=settings)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]  # every write has ended: the retried batch starts from a quiet state
    for msg, event in items:
        article = event.payload.article
        log.info("linked", change=event.payload.change, article_id=article.id, version=article.version,
                 event_id=event.event_id, correlation_id=event.correlation_id, topic=msg.topic,
                 partition=msg.partition, offset=msg.offset, candidates=candidates.get(article.id, 0))
    rewritten = sum(1 for r in results if r is True)
    log.info("batch_linked", articles=len(items), lists=len(targets), rewritten=rewritten, pending=len(state.pending))
    return rewritten


async def _write_all(targets: dict[str, tuple[bool, str]], *, state: LinkingState, db: AsyncDatabase,
                     publisher: Publisher, settings: LinkingSettings) -> list[bool | BaseException]:
    """Write each target's list, up to ``write_concurrency`` at once; every write has ended when
    this returns (failures are returned, not raised)."""
    gate = asyncio.Semaphore(settings.write_concurrency)

    async def write(target: str, force: bool, correlation_id: str) -> bool:
        async with gate:
            return await write_related(target, state=state, db=db, publisher=publisher, settings=settings,
                                       correlation_id=correlation_id, force=force)

    return await asyncio.gather(*(write(t, force, corr) for t, (force, corr) in targets.items()),
                                return_exceptions=True)


async def flush_pending(*, state: LinkingState, db: AsyncDatabase, publisher: Publisher, settings: LinkingSettings,
                        everything: bool = False) -> int:
    """Rewrite the back-links whose time has come (all of them with ``everything``, at
    shutdown), then wait for their events' acknowledgements. Returns the lists rewritten; a
    list whose write failed stays pending.

    New articles' own lists come first: the back-links are written in chunks of
    ``backlink_chunk``, and the batch handler, waiting for the write lock, gets it between two
    chunks (the lock is first come, first served) instead of after the whole flush. A large
    flush (a burst of articles changed many lists at once) is also paced: after each chunk it
    pauses as long as the chunk took, so that it never takes more than half of the database's
    attention from new articles (not at shutdown)."""
    now = time.monotonic()
    limit = float("inf") if everything else now
    due = [(t, corr) for t, (at, corr) in state.pending.items() if at <= limit]
    rewritten = 0
    took = 0.0  # the previous chunk's writing time
    for start in range(0, len(due), settings.backlink_chunk):
        if took and not everything:
            await asyncio.sleep(took)
        # Written by the handler meanwhile (a new version of it), or due later now: skipped.
        chunk = {t: (False, corr) for t, corr in due[start:start + settings.backlink_chunk]
                 if state.pending.get(t, (float("inf"), ""))[0] <= limit}
        took = 0.0
        if not chunk:
            continue
        async with state.write_lock:
            started = time.monotonic()
            results = await _write_all(chunk, state=state, db=db, publisher=publisher, settings=settings)
            await publisher.drain()
            took = time.monotonic() - started
        for target, result in zip(chunk, results):
            if isinstance(result, BaseException):
                log.warning("backlink_write_failed", article_id=target, error=repr(result)[:300])
                continue
            if state.pending.get(target, (0.0, ""))[0] <= limit:
                state.pending.pop(target, None)
            rewritten += result
    return rewritten


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
