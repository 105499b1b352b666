"""The gateway's side of "Listen to this article", against the real database and broker: the
player appears when audio of the page's version exists (announced by an ``article.narrated``
event), the audio is served with Range, ETag and caching, and disappears with a kill.

The audio documents are written here exactly as the narration service writes them (the
contract in ``shared/audio.py``); the narration service's own tests cover making them."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime

import pytest
from bson import Binary

from shared.audio import AUDIO, AUDIO_CHUNKS, CHUNK_SIZE, CONTENT_TYPE, chunk_id, etag_of, split_chunks
from shared.events import ArticleNarrated, NarratedEvent, article_id_for
from tests.integration.helpers import eventually, ninjs, publish

pytestmark = pytest.mark.integration


async def write_audio(db, producer, topic: str, article_id: str, version: int, data: bytes, language: str) -> dict:
    chunks = split_chunks(data)
    await db[AUDIO_CHUNKS].insert_many([
        {"_id": chunk_id(article_id, version, n), "data": Binary(piece)} for n, piece in enumerate(chunks)])
    digest = hashlib.sha256(data).hexdigest()
    meta = {"version": version, "language": language, "content_type": CONTENT_TYPE, "duration_s": 83.4,
            "size": len(data), "chunk_size": CHUNK_SIZE, "chunks": len(chunks), "sha256": digest,
            "etag": etag_of(digest), "created_at": datetime.now(UTC), "words": 200}
    await db[AUDIO].update_one({"_id": article_id}, {"$set": meta}, upsert=True)
    event = NarratedEvent(producer="narration", correlation_id=uuid.uuid4().hex, payload=ArticleNarrated(
        article_id=article_id, version=version, status="ready", language=language, duration_s=83.4, size=len(data),
        content_type=CONTENT_TYPE))
    await producer.send_and_wait(topic, event.to_bytes(), key=article_id.encode())
    return meta


async def test_player_range_requests_and_kill(pipeline, db, producer):
    uri = f"urn:test:audio:{uuid.uuid4().hex}"
    article_id = article_id_for(uri)
    # German: the narration service speaks kk, ru and en only, so the audio here is ours alone.
    await publish(producer, pipeline.kafka.topic_upstream, ninjs(uri, headline="Audio article", language="de"))
    page = await eventually(lambda: _page(pipeline, article_id), what="the article page")
    assert "<audio" not in page  # no audio yet: no player

    data = os.urandom(CHUNK_SIZE * 2 + 1234)  # three chunks, the last one short
    meta = await write_audio(db, producer, pipeline.kafka.topic_narrated, article_id, 1, data, "de")
    page = await eventually(lambda: _page(pipeline, article_id, containing="<audio"), what="the player")
    url = f"/audio/{article_id}/1.opus"
    assert f'src="{url}"' in page and 'datetime="PT1M23S"' in page and ">1:23<" in page
    assert '<span lang="de">de</span>' in page

    status, body, headers = await _get(pipeline, url)
    assert status == 200 and body == data
    assert headers["Content-Type"] == CONTENT_TYPE and headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] == meta["etag"] and "immutable" in headers["Cache-Control"]
    cases = {
        "bytes=0-99": (0, 99),
        f"bytes={CHUNK_SIZE - 10}-{CHUNK_SIZE + 9}": (CHUNK_SIZE - 10, CHUNK_SIZE + 9),  # across a chunk boundary
        f"bytes={CHUNK_SIZE * 2}-": (CHUNK_SIZE * 2, len(data) - 1),
        "bytes=-500": (len(data) - 500, len(data) - 1),
        f"bytes=10-{len(data) + 1000}": (10, len(data) - 1),  # the end is clamped
    }
    for header, (start, end) in cases.items():
        status, body, headers = await _get(pipeline, url, Range=header)
        assert status == 206, header
        assert body == data[start:end + 1], header
        assert headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
        assert int(headers["Content-Length"]) == end - start + 1
    status, _, headers = await _get(pipeline, url, Range=f"bytes={len(data)}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    status, body, _ = await _get(pipeline, url, Range="bytes=0-9", **{"If-Range": '"another"'})
    assert status == 200 and body == data  # the client's copy is stale: the whole file
    status, body, _ = await _get(pipeline, url, **{"If-None-Match": meta["etag"]})
    assert status == 304 and body == b""
    async with pipeline.http.head(pipeline.base_url + url) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
    assert (await _get(pipeline, f"/audio/{article_id}/2.opus"))[0] == 404  # no such version
    status, body, _ = await _get(pipeline, f"/api/v1/articles/{article_id}")
    assert status == 200 and b'"duration_s": 83' in body

    # A correction: the page shows no player until audio of the new version exists.
    await publish(producer, pipeline.kafka.topic_upstream, ninjs(uri, version=2, headline="Audio article, corrected", language="de"))
    page = await eventually(lambda: _page(pipeline, article_id, containing="corrected"), what="the correction")
    assert "<audio" not in page
    assert (await _get(pipeline, url))[0] == 404

    # A kill: the audio answers 410 like the page.
    await publish(producer, pipeline.kafka.topic_upstream, ninjs(uri, version=3, status="canceled"))
    await eventually(lambda: _status(pipeline, f"/articles/{article_id}/x", 410), what="the kill")
    assert (await _get(pipeline, url))[0] == 410


async def _get(pipeline, path: str, **headers) -> tuple[int, bytes, dict]:
    async with pipeline.http.get(pipeline.base_url + path, headers=headers, allow_redirects=True) as r:
        return r.status, await r.read(), r.headers.copy()


async def _page(pipeline, article_id: str, containing: str = "") -> str | None:
    status, text, _ = await pipeline.get(f"/articles/{article_id}")
    return text if status == 200 and containing in text else None


async def _status(pipeline, path: str, expected: int) -> bool:
    return (await pipeline.get(path, allow_redirects=False))[0] == expected
