"""Narration's handler: speech audio for each usable stored article, removed on kill or withhold.

Write order for a new version: every chunk first (``insert_many``; a chunk already there is
checked and kept), then the metadata with a version-guarded upsert, then the previous version's
chunks are deleted by ``_id``, then ``article.narrated`` (``ready``) is published. A re-delivery
of the version already narrated re-applies the deletion and the publish only; an older version
is ignored. A new version whose narrated text (and voice settings) did not change copies the
stored audio instead of speaking it again (``text_sha256``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from bson import Binary
from prometheus_client import Counter, Histogram
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.narration.settings import NarrationSettings
from services.narration.tts import NarrationFailed, Speech, Synthesizer, narration_text, stream_serial, voice_for
from shared.audio import (
    AUDIO, AUDIO_CHUNKS, CHUNK_SIZE, CONTENT_TYPE, AudioUnavailable, chunk_ids, etag_of, read_meta, read_range,
    split_chunks,
)
from shared.events import Article, ArticleNarrated, NarratedEvent, StoredEvent
from shared.kafka import Message, Publisher, decode_event
from shared.mongo import ARTICLES, WRITE_BATCH, versioned_upsert

log = structlog.get_logger("narration")

SERVICE = "narration"
NARRATION_SECONDS = Histogram(
    "kazpost_narration_seconds", "Wall time of one narration (espeak-ng + opusenc)", ["language"],
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)
AUDIO_SECONDS = Counter("kazpost_narration_audio_seconds_total", "Seconds of audio produced", ["language"])
AUDIO_BYTES = Counter("kazpost_narration_audio_bytes_total", "Bytes of audio produced", ["language"])
FAILURES = Counter("kazpost_narration_failures_total", "Narrations that failed (each attempt)", ["language"])
REUSED = Counter("kazpost_narration_reused_total", "New versions whose narrated text was unchanged (audio copied)")
DELETE_BATCH = WRITE_BATCH  # ids per delete_many: at most 32, like every other batch


async def delete_chunks(db: AsyncDatabase, article_id: str, version: int, count: int) -> None:
    ids = chunk_ids(article_id, version, count)
    for i in range(0, len(ids), DELETE_BATCH):
        await db[AUDIO_CHUNKS].delete_many({"_id": {"$in": ids[i:i + DELETE_BATCH]}})


async def write_chunks(db: AsyncDatabase, article_id: str, version: int, chunks: list[bytes]) -> None:
    """Insert every chunk; one already there (an interrupted earlier attempt) is kept if it holds
    the same bytes and replaced otherwise (nobody reads a version before its metadata exists)."""
    ids = chunk_ids(article_id, version, len(chunks))
    coll = db[AUDIO_CHUNKS]
    try:
        await coll.insert_many([{"_id": i, "data": Binary(c)} for i, c in zip(ids, chunks)], ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors) or not errors:
            raise
        there = [ids[e["index"]] for e in errors]
        stored = {d["_id"]: bytes(d["data"]) async for d in coll.find({"_id": {"$in": there}})}
        wanted = dict(zip(ids, chunks))
        for cid in there:
            if stored.get(cid) != wanted[cid]:
                await coll.replace_one({"_id": cid}, {"data": Binary(wanted[cid])}, upsert=True)


def metadata(article: Article, data: bytes, *, duration_s: float, words: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The ``audio`` document (without ``_id``/``version``) of freshly made audio."""
    digest = hashlib.sha256(data).hexdigest()
    replaces = None
    if previous is not None and int(previous["version"]) != article.version:
        replaces = {"version": int(previous["version"]), "chunks": int(previous["chunks"])}
    return {
        "language": article.language,
        "content_type": CONTENT_TYPE,
        "duration_s": round(duration_s, 3),
        "size": len(data),
        "chunk_size": CHUNK_SIZE,
        "chunks": len(split_chunks(data)),
        "sha256": digest,
        "etag": etag_of(digest),
        "created_at": datetime.now(UTC),
        "words": words,
        "embargoed_until": article.embargoed_until,
        "replaces": replaces,
    }


def text_fingerprint(paragraphs: list[str], voice: str, settings: NarrationSettings) -> str:
    """What the audio is made from: the text, the voice and the settings that change the sound."""
    made_of = [paragraphs, voice, settings.words_per_minute, settings.paragraph_pause_ms, settings.bitrate_kbps,
               settings.complexity]
    return hashlib.sha256(json.dumps(made_of, ensure_ascii=False).encode("utf-8")).hexdigest()


async def reuse(db: AsyncDatabase, meta: dict[str, Any], fingerprint: str) -> Speech | None:
    """The stored audio again, if it was made from the same text (a correction of the tags, the
    section or the picture only): copying it is much cheaper than speaking it again."""
    if meta.get("text_sha256") != fingerprint:
        return None
    try:
        data = await read_range(db, meta, 0, int(meta["size"]) - 1)
    except AudioUnavailable:
        return None
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        return None
    log.info("audio_reused", from_version=meta["version"])
    return Speech(data=data, duration_s=float(meta["duration_s"]), words=int(meta["words"]), seconds=0.0)


async def _publish(publisher: Publisher, settings: NarrationSettings, event: StoredEvent, payload: ArticleNarrated) -> None:
    await publisher.publish_event(settings.kafka.topic_narrated, payload.article_id, NarratedEvent(
        producer=SERVICE, correlation_id=event.correlation_id, payload=payload))


async def _publish_ready(publisher: Publisher, settings: NarrationSettings, event: StoredEvent, meta: dict[str, Any]) -> None:
    await _publish(publisher, settings, event, ArticleNarrated(
        article_id=meta["_id"], version=int(meta["version"]), status="ready", language=meta["language"],
        duration_s=meta["duration_s"], size=meta["size"], content_type=meta["content_type"]))


async def remove_audio(db: AsyncDatabase, article: Article, *, publisher: Publisher, settings: NarrationSettings,
                       event: StoredEvent, always_publish: bool) -> None:
    """Delete an article's audio (chunks first, then the metadata) unless it is newer than
    ``article``; publish ``deleted`` if something was removed or ``always_publish``."""
    meta = await read_meta(db, article.id)
    if meta is not None and int(meta["version"]) > article.version:
        log.info("stale_version_ignored", audio_version=meta["version"])
        return
    if meta is not None:
        await delete_chunks(db, article.id, int(meta["version"]), int(meta["chunks"]))
        if meta.get("replaces"):
            await delete_chunks(db, article.id, int(meta["replaces"]["version"]), int(meta["replaces"]["chunks"]))
        await db[AUDIO].delete_one({"_id": article.id, "version": meta["version"]})
        log.info("audio_deleted", audio_version=meta["version"])
    if meta is not None or always_publish:
        await _publish(publisher, settings, event, ArticleNarrated(
            article_id=article.id, version=article.version, status="deleted"))


async def narrate(db: AsyncDatabase, article: Article, *, synth: Synthesizer, publisher: Publisher,
                  settings: NarrationSettings, event: StoredEvent) -> None:
    meta = await read_meta(db, article.id)
    if meta is not None and int(meta["version"]) > article.version:
        log.info("stale_version_ignored", audio_version=meta["version"])
        return
    current = await db[ARTICLES].find_one({"_id": article.id}, {"version": 1})
    if current is not None and int(current["version"]) > article.version:
        # A newer version is stored and its event follows on this partition: narrate that one.
        log.info("superseded_version_skipped", stored_version=current["version"])
        return
    if meta is not None and int(meta["version"]) == article.version:
        # Already narrated (a re-delivery): finish what a crash may have interrupted.
        if meta.get("replaces"):
            await delete_chunks(db, article.id, int(meta["replaces"]["version"]), int(meta["replaces"]["chunks"]))
        await _publish_ready(publisher, settings, event, meta)
        return

    if meta is not None and meta.get("replaces"):
        await delete_chunks(db, article.id, int(meta["replaces"]["version"]), int(meta["replaces"]["chunks"]))
    voice = voice_for(article.language, settings.voices)
    paragraphs = narration_text(article, settings.max_chars)
    if voice is None or not paragraphs:
        log.info("not_narrated", reason="no voice for the language" if voice is None else "no text")
        await remove_audio(db, article, publisher=publisher, settings=settings, event=event, always_publish=False)
        return
    fingerprint = text_fingerprint(paragraphs, voice, settings)
    speech = await reuse(db, meta, fingerprint) if meta is not None else None
    if speech is None:
        try:
            speech = await synth.synthesize(paragraphs, voice, title=article.headline, language=article.language,
                                            serial=stream_serial(article.id, article.version))
        except NarrationFailed:
            FAILURES.labels(article.language).inc()
            raise
        NARRATION_SECONDS.labels(article.language).observe(speech.seconds)
        AUDIO_SECONDS.labels(article.language).inc(speech.duration_s)
        AUDIO_BYTES.labels(article.language).inc(len(speech.data))
    else:
        REUSED.inc()

    await write_chunks(db, article.id, article.version, split_chunks(speech.data))
    doc = metadata(article, speech.data, duration_s=speech.duration_s, words=speech.words, previous=meta)
    doc["text_sha256"] = fingerprint
    if not await versioned_upsert(db[AUDIO], article.id, article.version, doc):
        now = await read_meta(db, article.id)
        if now is None or int(now["version"]) != article.version:
            # A newer version won meanwhile (or the audio was deleted): ours are orphans.
            await delete_chunks(db, article.id, article.version, doc["chunks"])
            log.info("stale_version_ignored", reason="newer audio was written concurrently")
            return
        doc = now  # the same version was written concurrently: it stands
    if doc.get("replaces"):
        await delete_chunks(db, article.id, doc["replaces"]["version"], doc["replaces"]["chunks"])
    log.info("narrated", seconds=round(speech.seconds, 2), duration_s=round(speech.duration_s, 1),
             size=len(speech.data), words=speech.words, voice=voice)
    await _publish_ready(publisher, settings, event, {"_id": article.id, "version": article.version, **doc})


async def handle_stored(msg: Message, *, db: AsyncDatabase, publisher: Publisher, synth: Synthesizer,
                        settings: NarrationSettings) -> None:
    event = decode_event(StoredEvent, msg)
    article = event.payload.article
    structlog.contextvars.bind_contextvars(article_id=article.id, version=article.version, event_id=event.event_id)
    if event.payload.change in ("killed", "withheld") or article.pub_status != "usable":
        await remove_audio(db, article, publisher=publisher, settings=settings, event=event, always_publish=True)
    else:
        await narrate(db, article, synth=synth, publisher=publisher, settings=settings, event=event)
