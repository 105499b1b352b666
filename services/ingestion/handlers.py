"""Ingestion's message handler: a plain async function with its dependencies as arguments."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

import structlog

from services.ingestion.normalise import Rejected, article_from_bytes
from services.ingestion.settings import IngestionSettings
from shared.events import ArticleIngested, IngestedEvent
from shared.kafka import Message, PermanentError, Publisher

log = structlog.get_logger("ingestion")


class RecentlySeen:
    """Bounded LRU of (article id, version) → content hash, to drop exact re-deliveries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, int], str] = OrderedDict()

    def is_repeat(self, key: tuple[str, int], content_hash: str) -> bool:
        if self._size <= 0:
            return False
        previous = self._seen.get(key)
        if previous == content_hash:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = content_hash
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return False


async def handle_upstream(
    msg: Message, *, publisher: Publisher, settings: IngestionSettings, seen: RecentlySeen, now: datetime | None = None
) -> None:
    """Validate, sanitise and normalise one upstream ninjs item, then publish it.

    Invalid input raises :class:`PermanentError` (the runner dead-letters the original bytes
    with the reason). Nothing is written before validation passes.
    """
    try:
        article = article_from_bytes(
            msg.value,
            now=now or datetime.now(UTC),
            max_bytes=settings.max_message_bytes,
            max_clock_skew_s=settings.max_clock_skew_s,
            words_per_minute=settings.words_per_minute,
        )
    except Rejected as exc:
        raise PermanentError(str(exc)) from None
    structlog.contextvars.bind_contextvars(article_id=article.id, version=article.version)
    if seen.is_repeat((article.id, article.version), article.content_hash):
        log.info("duplicate_skipped")
        return
    event = IngestedEvent(
        producer="ingestion",
        correlation_id=msg.correlation_id,
        payload=ArticleIngested(article=article),
    )
    await publisher.publish_event(settings.kafka.topic_ingested, article.id, event)
    log.info("ingested", pub_status=article.pub_status, language=article.language)
